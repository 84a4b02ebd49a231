"""Scoped API tokens against the real API: a read-only token reads and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.security.api_proc import start_api
from tests.support.procs import Mosquitto, Proc


def test_a_read_only_token_reads_and_a_control_token_changes(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto, settings={"control": {"enabled": True}})
    with api.login() as owner:
        read = owner.post("/api/auth/tokens", json={"name": "dashboard"}).json()
        control = owner.post("/api/auth/tokens", json={"name": "night", "scope": "control"}).json()
        assert (read["scope"], control["scope"]) == ("read", "control")
        listed = {t["name"]: t["scope"] for t in owner.get("/api/auth/tokens").json()}
        assert listed == {"dashboard": "read", "night": "control"}
    with httpx.Client(base_url=api.base, timeout=10) as script:
        reader = {"Authorization": f"Bearer {read['token']}"}
        assert script.get("/api/packs", headers=reader).status_code == 200
        assert script.get("/api/settings", headers=reader).status_code == 200
        # fmt: off
        writes = [
            script.post("/api/services/restart", json={"service": "reader-0"}, headers=reader),
            script.put("/api/settings/file", json={"yaml": "log_level: DEBUG\n"}, headers=reader),
            script.post("/api/packs/x/tunnel", json={"action": "open"}, headers=reader),
            script.post("/api/packs/x/commands", json={"action": "set_charge_mos", "value": False},
                        headers=reader),
        ]
        # fmt: on
        for got in writes:
            assert got.status_code == 403, (got.request.url, got.text)
            assert got.json()["detail"] == "the API token 'dashboard' may only read"
        controller = {"Authorization": f"Bearer {control['token']}"}
        got = script.post("/api/services/restart", json={"service": "reader-0"}, headers=controller)
        assert got.status_code == 202
        # neither kind makes tokens
        assert (
            script.post("/api/auth/tokens", json={"name": "x"}, headers=controller).status_code
            == 401
        )
    stored = json.loads((tmp_path / "data" / "api" / "tokens.json").read_text())
    assert {row["name"]: row["scope"] for row in stored} == {
        "dashboard": "read",
        "night": "control",
    }
    assert "restart of reader-0, asked by token 'night'" in api.proc.log()

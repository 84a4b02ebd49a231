"""Viewer accounts (api.viewers): an end user's login that reads only the packs chosen for it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bmsgate_api.auth import hash_password
from bmsgate_common import topics
from bmsgate_common.models import PackState, utcnow
from tests.security.api_proc import Api, start_api
from tests.support.procs import Mosquitto, Proc, wait_until

ANNA = "anna-phone-password"


def publish_state(broker: Mosquitto, pack: str) -> None:
    """A retained state of ``pack`` on the backbone, as a reader publishes it."""
    state = PackState(
        pack=pack,
        name=pack.title(),
        protocol="jk_pb",
        ts=utcnow(),
        pack_voltage=53.1,
        current=2.0,
        power=106.2,
        soc=70,
        cell_voltages=[3.3] * 16,
        cell_count=16,
    )
    # fmt: off
    subprocess.run(
        ["mosquitto_pub", "-p", str(broker.port), "-r", "-q", "1",
         "-t", topics.STATE.topic(pack), "-m", state.model_dump_json()],
        check=True, timeout=10,
    )
    # fmt: on


def live_text(http: httpx.Client, pack: str) -> str:
    """What the live stream sends ``http`` until it names ``pack`` (at most 5 s)."""
    seen = ""
    with http.stream("GET", "/api/events", timeout=10) as live:
        started = time.monotonic()
        for text in live.iter_text():
            seen += text
            if f'"pack":"{pack}"' in seen or time.monotonic() - started > 5:
                break
    return seen


def two_packs_and_an_api(workdir: Path, procs: list[Proc], broker: Mosquitto, **kw: Any) -> Api:
    """Packs east and west on the backbone, and the API once it has both."""
    for pack in ("east", "west"):
        publish_state(broker, pack)
    api = start_api(workdir, procs, broker, **kw)
    with api.login() as owner:
        wait_until(lambda: len(owner.get("/api/packs").json()) == 2, timeout=20)
    return api


def test_a_viewer_reads_only_its_packs_and_changes_nothing(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    viewers = [{"name": "anna", "password_hash": hash_password(ANNA), "packs": ["east"]}]
    api = two_packs_and_an_api(tmp_path, procs, mosquitto, api={"viewers": viewers})
    with httpx.Client(base_url=api.base, timeout=10) as phone:
        wrong = phone.post("/api/auth/login", json={"user": "anna", "password": "not hers!"})
        assert wrong.status_code == 401
        nobody = phone.post("/api/auth/login", json={"user": "bob", "password": ANNA})
        assert nobody.status_code == 401
        # the owner's password is not a viewer's, and a viewer's is not the owner's
        assert phone.post("/api/auth/login", json={"password": ANNA}).status_code == 401
        login = phone.post("/api/auth/login", json={"user": "anna", "password": ANNA})
        assert login.status_code == 204
        status = phone.get("/api/auth/status").json()
        assert status["viewer"] == "anna" and status["logged_in"] and status["can_read"]
        assert [p["pack"] for p in phone.get("/api/packs").json()] == ["east"]
        assert [v["pack"] for v in phone.get("/api/overview").json()] == ["east"]
        assert phone.get("/api/packs/east/state").status_code in (200, 503)
        for path in (
            "/api/packs/west/state",
            "/api/packs/west/daily",
            "/api/sniff/buses",
            "/api/packs/west/csv/2026-01-02",
        ):
            got = phone.get(path)
            assert got.status_code == 403 and "anna may read only its packs" in got.text, path
        for path in ("/api/settings", "/api/auth/tokens", "/api/setup/ports", "/api/auth/viewers"):
            got = phone.get(path)
            assert got.status_code == 403 and "anna may read only its packs" in got.text, path
        assert phone.get("/api/setup/status").json()["config_file"] is None
        changes = [
            phone.post("/api/services/restart", json={"service": "all"}),
            phone.post("/api/packs/east/commands", json={"action": "set_charge_mos", "value": 0}),
            phone.post("/api/auth/tokens", json={"name": "mine"}),
            phone.post("/api/auth/password", json={"old_password": ANNA, "new_password": "x" * 9}),
        ]
        assert [c.status_code for c in changes] == [403] * 4, [c.text for c in changes]
        seen = live_text(phone, "east")  # the live stream carries only her pack
        assert '"pack":"east"' in seen and '"west"' not in seen, seen[:300]
        assert phone.post("/api/auth/logout").status_code == 204
        assert phone.get("/api/packs").status_code == 401
    assert "Traceback" not in api.proc.log()


def test_a_viewer_logs_in_on_the_login_page(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto, browser_context: Any
) -> None:
    publish_state(mosquitto, "east")
    viewers = [{"name": "anna", "password_hash": hash_password(ANNA), "packs": ["east"]}]
    api = start_api(tmp_path, procs, mosquitto, api={"viewers": viewers})
    page = browser_context.new_page()
    page.goto(f"{api.base}/login.html")
    page.fill("#user", "anna")
    page.fill("#password", ANNA)
    page.click("#submit")
    wait_until(lambda: [c for c in browser_context.cookies() if c["name"] == "bmsgate_session"])
    check = browser_context.new_page()  # the login page goes on to other pages by itself
    check.goto(f"{api.base}/healthz")
    status = check.evaluate("fetch('/api/auth/status').then(r => r.json())")
    assert status["viewer"] == "anna"

"""What the API shows without a login, what it loads from elsewhere, and who a change is logged as."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from bmsgate_api.app import STATIC
from tests.security.api_proc import start_api
from tests.support.procs import Mosquitto, Proc, wait_until

EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)


def test_no_page_loads_anything_from_elsewhere_and_docs_are_off(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    pages = sorted(STATIC.glob("*.html"))
    assert len(pages) > 5
    for page in pages:
        assert not EXTERNAL.findall(page.read_text()), page.name
    api = start_api(tmp_path, procs, mosquitto)
    with httpx.Client(base_url=api.base, timeout=5) as http:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            got = http.get(path)
            assert got.status_code == 404 and "cdn" not in got.text.lower(), path
        assert http.get("/openapi.json").json()["info"]["title"] == "bmsgate"


def test_setup_status_names_no_path_without_a_login_and_changes_are_logged_with_who(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto)
    with httpx.Client(base_url=api.base, timeout=5) as stranger:
        shown = stranger.get("/api/setup/status").json()
        assert shown["config_file"] is None and str(tmp_path) not in str(shown)
    with api.login() as owner:
        assert owner.get("/api/setup/status").json()["config_file"] == str(api.config)
        # a token's default scope only reads; restarting a service needs a control token
        made = owner.post(
            "/api/auth/tokens", json={"name": "night script", "scope": "control"}
        ).json()
        assert owner.post("/api/services/restart", json={"service": "history"}).status_code == 202
    with httpx.Client(base_url=api.base, timeout=5) as script:
        bearer = {"Authorization": f"Bearer {made['token']}"}
        got = script.post("/api/services/restart", json={"service": "reader-0"}, headers=bearer)
        assert got.status_code == 202
    lines = wait_until(lambda: [x for x in api.proc.log().splitlines() if "asked by" in x])
    wait_until(lambda: len([x for x in api.proc.log().splitlines() if "asked by" in x]) >= 3)
    lines = [x for x in api.proc.log().splitlines() if "asked by" in x]
    assert any(
        "API token 'night script'" in x and "owner's session from 127.0.0.1" in x for x in lines
    ), lines
    assert any("restart of history" in x and "owner's session from 127.0.0.1" in x for x in lines)
    assert any(
        "restart of reader-0" in x and "token 'night script' from 127.0.0.1" in x for x in lines
    ), lines
    assert made["token"] not in api.proc.log()

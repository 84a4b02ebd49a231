"""Cross-origin writes: a page on another port of the same host drives the owner's browser.

The owner is logged in (SameSite=Strict cookie, which a same-site page on another port still
gets); the attacker's page posts forms and no-cors fetches at the API. Nothing may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.security.api_proc import PASSWORD, Api, start_api
from tests.support.procs import Mosquitto, Proc, wait_until
from tests.support.receiver import json_server

EVIL_YAML = "api:\n  public_read: always\n"


def attacker_page(api: str) -> str:
    """Forms of every simple type a page may send without CORS, plus a no-cors fetch."""
    return f"""<!doctype html><html><body>
<form id="plain" method="post" enctype="text/plain" action="{api}/api/settings/restore"
      target="sink"><input name="api:&#10;  public_read: always&#10;#" value="x"></form>
<form id="urlenc" method="post" action="{api}/api/settings/restore" target="sink">
  <input name="yaml" value="x"></form>
<form id="multi" method="post" enctype="multipart/form-data" target="sink"
      action="{api}/api/services/restart"><input name="service" value="all"></form>
<iframe name="sink"></iframe>
<script>
  document.getElementById("plain").submit();
  setTimeout(() => document.getElementById("urlenc").submit(), 300);
  setTimeout(() => document.getElementById("multi").submit(), 600);
  fetch("{api}/api/settings/restore", {{method: "POST", mode: "no-cors",
        credentials: "include", body: {EVIL_YAML!r}}});
  setTimeout(() => fetch("{api}/api/auth/logout", {{method: "POST", mode: "no-cors",
             credentials: "include"}}), 900);
</script></body></html>"""


def test_a_page_of_another_port_cannot_change_anything(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto, browser_context: Any
) -> None:
    api: Api = start_api(tmp_path, procs, mosquitto)
    with json_server(attacker_page(api.base), html=True) as (port, _):
        attacked(api, browser_context, port)
    assert "refused POST /api/settings/restore from 127.0.0.1" in api.proc.log()


def attacked(api: Api, browser_context: Any, port: int) -> None:
    """The owner logs in, then visits the attacker's page on ``port``: every write is 403."""
    before = api.config.read_text()
    owner = browser_context.new_page()
    owner.goto(f"{api.base}/login.html")
    owner.fill("#password", PASSWORD)
    owner.click("#submit")
    wait_until(lambda: [c for c in browser_context.cookies() if c["name"] == "bmsgate_session"])
    refused: list[tuple[str, int]] = []
    evil = browser_context.new_page()  # another tab of the same browser, cookies and all
    evil.on("response", lambda r: refused.append((r.url, r.status)) if "/api/" in r.url else 0)
    evil.goto(f"http://127.0.0.1:{port}/")
    evil.wait_for_timeout(1500)
    posts = [(url, code) for url, code in refused if "restore" in url or "restart" in url]
    assert posts and all(code == 403 for _, code in posts), refused
    assert api.config.read_text() == before
    # the owner's own session is still alive (the forged logout was refused too)
    owner = browser_context.new_page()  # the login page goes on to other pages by itself
    owner.goto(f"{api.base}/healthz")
    status = owner.evaluate("fetch('/api/auth/status').then(r => r.json())")
    assert status["logged_in"] is True
    # and the owner's own page still saves (same origin, JSON)
    saved = owner.evaluate(
        """fetch('/api/settings/restore', {method: 'POST', body: 'api: {public_read: never}\\n',
           headers: {'Content-Type': 'application/yaml'}}).then(r => r.status)"""
    )
    assert saved == 200


def test_a_state_changing_request_needs_its_json_or_yaml_type(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto)
    with api.login() as http:
        forms = {
            "application/x-www-form-urlencoded": "yaml=x",
            "text/plain": EVIL_YAML,
            "multipart/form-data; boundary=b": "--b--",
        }
        for ctype, body in forms.items():
            got = http.post("/api/settings/restore", content=body, headers={"Content-Type": ctype})
            assert got.status_code == 415, (ctype, got.text)
            assert "application/yaml" in got.json()["detail"]
        got = http.post(
            "/api/services/restart", content="service=all", headers={"Content-Type": "text/plain"}
        )
        assert got.status_code == 415 and "application/json" in got.json()["detail"]
        other = http.post(
            "/api/services/restart", json={"service": "all"}, headers={"Origin": "http://evil:1"}
        )
        assert other.status_code == 403 and "http://evil:1" in other.json()["detail"]
        site = http.post(
            "/api/services/restart",
            json={"service": "all"},
            headers={"Sec-Fetch-Site": "same-site"},
        )
        assert site.status_code == 403
    assert "Traceback" not in api.proc.log()


def test_an_allowed_origin_behind_a_proxy_may_write(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(
        tmp_path, procs, mosquitto, api={"allowed_origins": ["https://bms.example.org"]}
    )
    with api.login() as http:
        ok = http.post("/api/auth/logout", headers={"Origin": "https://bms.example.org"})
        assert ok.status_code == 204
    assert (
        httpx.post(
            f"{api.base}/api/auth/logout", headers={"Origin": "https://evil.example.org"}
        ).status_code
        == 403
    )

"""Accounts made on the Accounts page: viewers and pack-limited tokens, against the real API."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx

from bmsgate_api.app import STATIC
from bmsgate_api.auth import hash_password
from bmsgate_api.deps import VIEWER_PAGES
from tests.security.api_proc import PASSWORD
from tests.security.test_api_viewers import live_text, two_packs_and_an_api
from tests.support.browser import UNLINKED_PAGES
from tests.support.procs import Mosquitto, Proc, wait_until

ANNA = "anna-phone-password"
# the pages of the owner only: every page of the web UI but a viewer's (the server's one list);
# a viewer gets 403 for each, and none is in its menu
OWNER_PAGES = sorted(path.name for path in STATIC.glob("*.html") if path.name not in VIEWER_PAGES)


def test_the_owner_makes_and_deletes_a_viewer_and_its_session_ends(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    configured = [
        {"name": "ivo", "password_hash": hash_password("ivo-password"), "packs": ["west"]}
    ]
    api = two_packs_and_an_api(
        tmp_path,
        procs,
        mosquitto,
        api={"viewers": configured},
        settings={"control": {"enabled": True}},
    )
    with api.login() as owner:
        made = owner.post(
            "/api/auth/viewers", json={"name": "anna", "password": ANNA, "packs": ["east"]}
        )
        assert made.status_code == 201, made.text
        assert made.json()["packs"] == ["east"] and not made.json()["configured"]
        refused = [
            owner.post(
                "/api/auth/viewers", json={"name": "anna", "password": ANNA, "packs": ["east"]}
            ),
            owner.post(
                "/api/auth/viewers", json={"name": "ivo", "password": ANNA, "packs": ["east"]}
            ),
            owner.post(
                "/api/auth/viewers", json={"name": "bob", "password": "short", "packs": ["east"]}
            ),
            owner.post(
                "/api/auth/viewers", json={"name": "bob", "password": ANNA, "packs": ["north"]}
            ),
            owner.post(
                "/api/auth/viewers", json={"name": "Bob!", "password": ANNA, "packs": ["east"]}
            ),
            owner.post("/api/auth/viewers", json={"name": "bob", "password": ANNA, "packs": []}),
        ]
        assert [r.status_code for r in refused] == [409, 409, 400, 422, 422, 422], [
            r.text for r in refused
        ]
        assert "packs: unknown north" in refused[3].text
        listed = {
            v["name"]: (v["packs"], v["configured"]) for v in owner.get("/api/auth/viewers").json()
        }
        assert listed == {"ivo": (["west"], True), "anna": (["east"], False)}
        assert owner.delete("/api/auth/viewers/ivo").status_code == 409  # in the configuration
    kept = tmp_path / "data" / "api" / "viewers.json"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert ANNA not in kept.read_text() and "scrypt$" in kept.read_text()

    with httpx.Client(base_url=api.base, timeout=10) as phone:
        login = phone.post("/api/auth/login", json={"user": "anna", "password": ANNA})
        assert login.status_code == 204
        # the web UI learns her pages from the server's list; the owner's answer has none
        status = phone.get("/api/auth/status").json()
        assert status["viewer"] == "anna" and status["pages"] == sorted(VIEWER_PAGES), status
        with api.login() as owner:
            assert owner.get("/api/auth/status").json()["pages"] is None
        assert [p["pack"] for p in phone.get("/api/packs").json()] == ["east"]
        assert phone.get("/api/packs/west/state").status_code == 403
        # the owner's routes: 403 with one line, nothing sent
        owners = [
            phone.get("/api/settings"),
            phone.get("/api/auth/viewers"),
            phone.get("/api/packs/east/settings"),
            phone.get("/api/packs/east/tunnel"),
            phone.get("/api/sniff/buses"),
            phone.post(
                "/api/packs/east/commands", json={"action": "set_charge_mos", "value": False}
            ),
            phone.post("/api/packs/east/commands", json={"action": "set_soc", "value": 50}),
            phone.put("/api/packs/east/settings/cell_ovp", json={"value": 3.6}),
            phone.post("/api/packs/east/tunnel", json={"action": "open"}),
            phone.post("/api/packs/east/raw", json={"data": "a5 40 90 08"}),
            phone.post("/api/sniff/buses/reader-0", json={"enabled": True}),
            phone.post("/api/services/restart", json={"service": "all"}),
            phone.post(
                "/api/auth/viewers", json={"name": "eve", "password": ANNA, "packs": ["west"]}
            ),
            phone.delete("/api/auth/viewers/anna"),
        ]
        for got in owners:
            assert got.status_code == 403, (got.request.method, got.request.url, got.text)
            assert got.json()["detail"] == "anna may read only its packs", got.text
        assert {"settings.html", "tokens.html", "control.html", "setup.html"} <= set(OWNER_PAGES)
        for page in OWNER_PAGES:
            got = phone.get(f"/{page}")
            assert got.status_code == 403 and "anna may see only" in got.text, page
        for page in VIEWER_PAGES:
            assert phone.get(f"/{page}").status_code == 200, page

        with api.login() as owner:
            assert owner.delete("/api/auth/viewers/anna").status_code == 204
            assert owner.delete("/api/auth/viewers/anna").status_code == 404
            assert (
                owner.get("/control.html").status_code == 200
            )  # the owner's pages are the owner's
        # deleted: her open session ends at once, her password no longer logs in
        assert phone.get("/api/packs").status_code == 401
        again = phone.post("/api/auth/login", json={"user": "anna", "password": ANNA})
        assert again.status_code == 401
    log = api.proc.log()
    assert (
        "viewer account 'anna' (packs east) made, asked by the owner's session from 127.0.0.1"
        in log
    )
    assert "viewer account 'anna' deleted, asked by the owner's session from 127.0.0.1" in log
    assert ANNA not in log and "Traceback" not in log


def test_a_token_limited_to_packs_reads_only_those(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = two_packs_and_an_api(tmp_path, procs, mosquitto, settings={"control": {"enabled": True}})
    with api.login() as owner:
        made = owner.post("/api/auth/tokens", json={"name": "anna's app", "packs": ["east"]})
        assert made.status_code == 201 and made.json()["packs"] == ["east"], made.text
        control = owner.post(
            "/api/auth/tokens", json={"name": "x", "scope": "control", "packs": ["east"]}
        )
        assert control.status_code == 422 and "control token sees every pack" in control.text
        unknown = owner.post("/api/auth/tokens", json={"name": "x", "packs": ["north"]})
        assert unknown.status_code == 422
        listed = {t["name"]: t["packs"] for t in owner.get("/api/auth/tokens").json()}
        assert listed == {"anna's app": ["east"]}
    token: dict[str, Any] = made.json()
    with httpx.Client(
        base_url=api.base, timeout=10, headers={"Authorization": f"Bearer {token['token']}"}
    ) as app:
        assert [p["pack"] for p in app.get("/api/packs").json()] == ["east"]
        assert [v["pack"] for v in app.get("/api/overview").json()] == ["east"]
        assert app.get("/api/packs/east/state").status_code in (200, 503)
        assert app.get("/api/setup/status").json()["config_file"] is None
        for got in (
            app.get("/api/packs/west/state"),
            app.get("/api/settings"),
            app.get("/api/sniff/buses"),
            app.get("/api/export/homeassistant.json"),
            app.post("/api/services/restart", json={"service": "all"}),
        ):
            assert got.status_code == 403, (got.request.url, got.text)
            assert got.json()["detail"] == 'the API token "anna\'s app" may read only its packs'
        seen = live_text(app, "east")  # the live stream carries only its pack
        assert '"pack":"east"' in seen and '"west"' not in seen, seen[:300]
    stored = json.loads((tmp_path / "data" / "api" / "tokens.json").read_text())
    assert [row["packs"] for row in stored] == [["east"]]
    assert 'API token "anna\'s app"' in api.proc.log() and "packs east) made" in api.proc.log()


def test_a_viewer_made_on_the_accounts_page_sees_only_its_pages_in_a_browser(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto, browser_context: Any
) -> None:
    api = two_packs_and_an_api(tmp_path, procs, mosquitto, settings={"control": {"enabled": True}})
    page = browser_context.new_page()
    # no bus is configured here: the owner's pages would lead to the setup page first
    page.add_init_script("sessionStorage.setItem('bmsgate-setup-later', '1')")
    page.goto(f"{api.base}/login.html?next=tokens.html")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/tokens.html")
    page.wait_for_selector("input[data-viewer-pack][value=east]")
    page.fill("#viewer-name", "anna")
    page.fill("#viewer-password", ANNA)
    page.check("input[data-viewer-pack][value=east]")
    page.click("#create-viewer")
    page.wait_for_selector("tr[data-viewer=anna]")
    assert "Account anna made" in page.inner_text("#viewer-msg")
    assert "east" in page.inner_text("tr[data-viewer=anna]")
    page.click("#login-button")  # log out
    page.wait_for_url("**/login.html*")

    page.goto(f"{api.base}/login.html")
    page.fill("#user", "anna")
    page.fill("#password", ANNA)
    page.click("#submit")
    page.wait_for_url("**/index.html")
    page.wait_for_selector("header nav a")
    menu = page.locator("header nav a").all_inner_texts()
    assert menu == ["Status", "Energy", "Battery", "Monitor", "History", "Health"], menu
    # exactly the server's list (the login page aside: no link leads to it)
    links = page.eval_on_selector_all("header nav a", "as => as.map(a => a.getAttribute('href'))")
    assert set(links) == set(VIEWER_PAGES) - set(UNLINKED_PAGES), links
    wait_until(lambda: "East" in page.inner_text("main"), timeout=20)
    assert "West" not in page.inner_text("main")
    page.wait_for_selector("footer #version")
    assert "upgrade" not in page.inner_text("footer")
    for name in OWNER_PAGES:
        answer = page.goto(f"{api.base}/{name}")
        assert answer is not None and answer.status == 403, name
        assert "anna may see only the pages of its packs" in page.inner_text("body")
    page.goto(f"{api.base}/history.html")
    page.wait_for_selector("#pack option", state="attached")
    assert page.locator("#pack option").all_inner_texts() == ["East"]
    assert "Traceback" not in api.proc.log()

"""Who is local: behind a plain reverse proxy on this machine, a client is not "local".

``public_read: local`` (the default) lets this machine read without a login. A reverse proxy on
the same machine connects from 127.0.0.1 for every client it forwards; the API must not take
those clients for this machine (row 8 of the attack review), and must believe forwarded
addresses only from ``api.trusted_proxies``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.security.api_proc import start_api
from tests.support.procs import Mosquitto, Proc


def test_a_request_forwarded_by_an_unknown_proxy_is_not_local(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto, api={"public_read": "local"})
    with httpx.Client(base_url=api.base, timeout=10) as here:
        assert here.get("/api/packs").status_code == 200  # this machine itself reads
        for headers in (
            {"X-Forwarded-For": "203.0.113.5"},  # nginx, Caddy: a LAN or internet client
            {"X-Forwarded-For": "127.0.0.1"},  # the same, claiming to be local
            {"Forwarded": "for=203.0.113.5"},
        ):
            got = here.get("/api/packs", headers=headers)
            assert got.status_code == 401, (headers, got.text)
            assert not here.get("/api/auth/status", headers=headers).json()["can_read"]
    assert "Traceback" not in api.proc.log()


def test_a_trusted_proxy_names_the_client_and_it_is_not_local(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(
        tmp_path, procs, mosquitto, api={"public_read": "local", "trusted_proxies": ["127.0.0.1"]}
    )
    with httpx.Client(base_url=api.base, timeout=10) as proxy:
        client = {"X-Forwarded-For": "203.0.113.5"}
        assert proxy.get("/api/packs", headers=client).status_code == 401
        wrong = proxy.post("/api/auth/login", json={"password": "a guess"}, headers=client)
        assert wrong.status_code == 401
        # the proxy's own requests (none forwarded) are still this machine's
        assert proxy.get("/api/packs").status_code == 200
    log = api.proc.log()
    assert "failed login from 203.0.113.5" in log and "failed login from 127.0.0.1" not in log

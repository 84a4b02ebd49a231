"""The API as a real process for the security tests: its own config, data dir and log."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bmsgate.broker import free_port
from bmsgate_api.auth import hash_password
from tests.support.procs import Mosquitto, Proc, wait_until, write_config

PASSWORD = "owner-password-1"
HASH = hash_password(PASSWORD)


@dataclass
class Api:
    """A running API: its base URL, process and configuration file."""

    base: str
    proc: Proc
    config: Path
    port: int

    @contextmanager
    def login(self, password: str = PASSWORD, **kw: Any) -> Iterator[httpx.Client]:
        """A client logged in with the owner's password."""
        with httpx.Client(base_url=self.base, timeout=10, **kw) as http:
            http.post("/api/auth/login", json={"password": password}).raise_for_status()
            yield http


def start_api(
    workdir: Path,
    procs: list[Proc],
    broker: Mosquitto,
    *,
    api: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    wrap: list[str] | None = None,
    env: dict[str, str] | None = None,
    name: str = "api",
) -> Api:
    """``python -m bmsgate_api`` on a free loopback port, its backbone on ``broker``.

    ``wrap`` goes before the command (``prlimit ...``); the owner's password is PASSWORD.
    """
    port = free_port()
    # fmt: off
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "api": {"host": "127.0.0.1", "port": port, "mdns": False, "password_hash": HASH,
                "public_read": "never", **(api or {})},
        "data_dir": str(workdir / "data"),
        **(settings or {}),
    }
    # fmt: on
    config = write_config(workdir, data, f"{name}.yaml")
    argv = [*(wrap or []), sys.executable, "-m", "bmsgate_api", "--config", str(config)]
    proc = Proc(name, argv, workdir, env=env)
    procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, timeout=30)
    return Api(base, proc, config, port)

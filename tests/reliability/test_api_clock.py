"""Setting the API's wall clock neither ends a browser session nor stretches or ends a lockout.

The API runs as a process under the LD_PRELOAD shim of test_clock_steps.py (only its
CLOCK_REALTIME moves). One client is logged in; another is locked out after three wrong
passwords. The clock is set an hour back, then 400 days forward. Before, sessions and lockouts
were measured on the wall clock: an hour back ended every session (issued "in the future") and
made the locked-out client wait 3,895 s instead of 300 s; a step forward ended the lockout.
Now both count on bmsgate_api.auth.CLOCK (the wall clock at start, advanced by the monotonic one).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from bmsgate.broker import free_port
from tests.reliability.counts import COUNTS
from tests.reliability.test_clock_steps import build_shim
from tests.support.procs import Mosquitto, Proc, write_config

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not shutil.which("gcc"), reason="gcc")]
PASSWORD = "the right password"
WINDOW = 300  # [s] api.login_window: how long a locked-out client waits


async def up(base: str, proc: Proc) -> None:
    deadline = time.monotonic() + 40
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while True:
            assert proc.alive() and time.monotonic() < deadline, proc.log()[-2000:]
            try:
                if (await http.get("/api/auth/status")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)


async def test_a_wall_clock_step_keeps_sessions_and_lockouts(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    lib = build_shim(tmp_path)
    shift = tmp_path / "wall-offset"
    shift.write_text("0\n")
    port = free_port()
    config = {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "api": {
            "host": "127.0.0.1",
            "port": port,
            "session_hours": 1,
            "login_attempts": 3,
            "login_window": WINDOW,
        },
        "data_dir": str(tmp_path / "data"),
    }
    path = write_config(tmp_path, config)
    env = {"LD_PRELOAD": str(lib), "WALLSHIFT_FILE": str(shift)}
    proc = Proc("api", [sys.executable, "-m", "bmsgate_api", "--config", str(path)], tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    waits: list[int] = []
    try:
        await up(base, proc)
        async with (
            httpx.AsyncClient(base_url=base, timeout=5) as owner,
            httpx.AsyncClient(base_url=base, timeout=5) as guesser,
        ):
            assert (await owner.post("/api/auth/setup", json={"password": PASSWORD})).is_success
            assert (await owner.get("/api/auth/tokens")).status_code == 200  # logged in
            for i in range(3):
                wrong = await guesser.post("/api/auth/login", json={"password": f"guess {i}!"})
                assert wrong.status_code == 401
            for offset in (0, -3600, 400 * 86_400):
                shift.write_text(f"{offset}\n")
                await asyncio.sleep(0.6)  # the shim reads the file again every 0.2 s
                session = await owner.get("/api/auth/tokens")
                assert session.status_code == 200, (offset, session.status_code)
                locked = await guesser.post("/api/auth/login", json={"password": PASSWORD})
                assert locked.status_code == 429, (offset, locked.status_code)
                waits.append(int(locked.headers["Retry-After"]))
                assert 0 < waits[-1] <= WINDOW, (offset, waits)
    finally:
        proc.stop()
    text = proc.log()
    assert "Traceback" not in text, text[-3000:]
    assert "the wall clock was set forward" in text, text[-3000:]  # the shim reached the API
    COUNTS["api clock: Retry-After [s] at 0, -1 h, +400 d (each <= 300)"] = max(waits)

"""The notifier's target secrets in real log lines: `bmsgate run` (every service in one process)
and the notifier alone (as in its container), at DEBUG, with the real Apprise library sending to
a local receiver.

The target is ``json://bms:PASSWORD@127.0.0.1:PORT/TOKEN``: Apprise and urllib3 print the URL
while sending, from Apprise's worker threads. Neither the password nor the token may appear in any
line; the host is no secret, so the web API's audit line for a MOS switch, logged in the same
process, still says who asked and from which address.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_api.auth import hash_password
from tests.support.notify import alarm
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config
from tests.support.receiver import receiver
from tests.support.tree import bmsgate_run

pytestmark = pytest.mark.integration

PASSWORD = "pw-Target-8c4d"  # the target's, in the URL's user info
TOKEN = "hook-5b9e7f3a1c"  # a webhook's secret path
UI_PASSWORD = "the web password"


def target(port: int) -> dict[str, str]:
    return {"name": "hook", "url": f"json://bms:{PASSWORD}@127.0.0.1:{port}/{TOKEN}"}


def sent_lines(log: str, service: str) -> list[str]:
    """Apprise's lines about the POST it made, as ``service`` logged them."""
    return [s for s in log.splitlines() if "JSON POST URL" in s and f"[{service}]" in s]


async def until(
    ask: Callable[[], Awaitable[httpx.Response]],
    good: Callable[[httpx.Response], bool],
    seconds: float = 60,
) -> httpx.Response:
    """The first answer that is ``good``; fails after ``seconds`` (the tree starts meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.TransportError):
            answer = await ask()
            if good(answer):
                return answer
        assert time.monotonic() < deadline, "no good answer in time"
        await asyncio.sleep(0.2)


async def test_bmsgate_run_masks_the_notifiers_secrets_and_leaves_the_audit_line_readable(
    tmp_path: Path, daly_pty: str
) -> None:
    with receiver() as (got, rport):
        http = free_port()
        config = write_config(
            tmp_path,
            {
                "log_level": "DEBUG",
                "buses": [
                    {"port": daly_pty, "protocol": "daly_classic", "packs": [{"id": "garage"}]}
                ],
                "api": {
                    "host": "127.0.0.1",
                    "port": http,
                    "password_hash": hash_password(UI_PASSWORD),
                },
                "modbus": {"host": "127.0.0.1", "port": free_port()},
                "control": {"enabled": True},
                "notifier": {"gather": 0.2, "targets": [target(rport)]},
                "timezone": "UTC",
                "data_dir": str(tmp_path / "data"),
            },
        )
        log_path = tmp_path / "run.log"
        async with bmsgate_run(config, log_path):
            base = f"http://127.0.0.1:{http}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as ui:
                await until(lambda: ui.get("/healthz"), lambda r: r.json()["backbone"])
                login = await ui.post("/api/auth/login", json={"password": UI_PASSWORD})
                login.raise_for_status()
                state = "/api/packs/garage/state"  # the reader's first state
                await until(lambda: ui.get(state), lambda r: r.status_code == 200)
                mos = {"action": "set_charge_mos", "value": False}
                switched = await ui.post("/api/packs/garage/commands", json=mos)
                assert switched.status_code == 200, switched.text
                test = await until(  # 503 until the API has seen the notifier online
                    lambda: ui.post("/api/setup/notify-test", json={"target": "hook"}),
                    lambda r: r.status_code != 503,
                )
                assert test.json() == {"result": "sent"}, test.text
        assert got.on(f"/{TOKEN}"), "the test message did not arrive"
    log = log_path.read_text()
    assert PASSWORD not in log and TOKEN not in log
    [sent] = sent_lines(log, "notifier")  # from Apprise's worker thread, tied to the notifier
    assert f"http://127.0.0.1:{rport}/****" in sent
    [audit] = [s for s in log.splitlines() if "command set_charge_mos False to garage" in s]
    assert "[api] bmsgate_api.audit:" in audit and "****" not in audit
    assert audit.endswith("asked by the owner's session from 127.0.0.1")


async def test_the_notifier_alone_masks_its_secrets(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    with receiver() as (got, rport):
        config = write_config(
            tmp_path,
            {
                "log_level": "DEBUG",
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                "notifier": {"gather": 0.2, "targets": [target(rport)]},
                "data_dir": str(tmp_path / "data"),
                "api": {"port": free_port()},
            },
        )
        proc = start_service(tmp_path, "notifier", config)
        procs.append(proc)
        await asyncio.to_thread(wait_until, lambda: "notifier running" in proc.log(), 30)
        raised = alarm(ts=datetime.now(UTC))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/garage/alarm", raised.model_dump_json(), qos=1)
        await asyncio.to_thread(wait_until, lambda: got.on(f"/{TOKEN}"), 20)
        assert proc.stop() == 0
    log = proc.log()
    assert PASSWORD not in log and TOKEN not in log
    [sent] = [s for s in log.splitlines() if "JSON POST URL" in s]
    assert f"http://127.0.0.1:{rport}/****" in sent and "[notifier]" in sent

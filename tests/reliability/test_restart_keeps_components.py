"""After `bmsgate run` restarts, Home Assistant keeps every entity it was told about before.

The publisher reads the pack's discovery config the user's broker kept from before: a component
this version still has stays announced (its value null until the pack reports it), one it no
longer has is removed as Home Assistant documents (a component with only its platform).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bmsgate.broker import wait_for_port
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto, wait_until
from tests.support.tree import bmsgate_run, run_argv, with_target

pytestmark = pytest.mark.integration

CONFIG = "homeassistant/device/bmsgate_sim-1/config"


def last_config(seen: Listener) -> dict[str, Any] | None:
    found = [m.payload for m in seen.messages if m.topic == CONFIG and isinstance(m.payload, dict)]
    return found[-1] if found else None


async def test_a_restart_keeps_the_components_announced_before(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    before = {
        "dev": {"ids": ["bmsgate_sim-1"], "name": "Simulated pack 1"},
        "o": {"name": "bmsgate"},
        "cmps": {
            # the simulated DALY reports no state of health: announced before all the same
            "state_of_health": {
                "p": "sensor",
                "uniq_id": "bmsgate_sim-1_state_of_health",
                "name": "State of health",
                "stat_t": "bmsgate/sim-1/state",
            },
            "cell_min_mv": {"p": "sensor", "uniq_id": "bmsgate_sim-1_cell_min_mv", "name": ""},
        },
    }
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        await c.publish(CONFIG, json.dumps(before).encode(), qos=1, retain=True)
    config = with_target(tmp_path, mosquitto.port)
    async with (
        listen(mosquitto.port, CONFIG, "bmsgate/sim-1/state") as seen,
        bmsgate_run(config, tmp_path / "run.log"),
    ):

        def settled(s: Listener) -> bool:
            cfg = last_config(s)
            return cfg is not None and "voltage" in cfg["cmps"]

        await seen.wait_for(settled, within=60)
        await seen.wait_for(
            lambda s: any(m.topic.endswith("/state") for m in s.messages), within=30
        )
    cfg = last_config(seen)
    assert cfg is not None
    ours = [m.payload for m in seen.messages if m.topic == CONFIG][1:]  # after the retained one
    assert ours and all("state_of_health" in c["cmps"] for c in ours)  # never dropped
    assert all(c["cmps"]["cell_min_mv"] == {"p": "sensor"} for c in ours)  # removed
    state = [m.payload for m in seen.messages if m.topic.endswith("/state")][-1]
    assert state["state_of_health"] is None


async def test_its_own_configs_coming_back_are_not_commands(tmp_path: Path) -> None:
    """A target on the backbone as docs/publisher.md shows it: the broker sends the publisher's
    own discovery configs back on its subscription, without the retain flag; they are neither
    commands nor worth a warning (there was one per config sent)."""
    config = tmp_path / "bmsgate.yaml"
    target = {"name": "ha", "topic_prefix": "bmsgate/out", "homeassistant": {"enabled": True}}
    config.write_text(json.dumps({"timezone": "UTC", "publisher": {"targets": [target]}}))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = run_argv(
            *("--simulate-packs", "1", "--only", "reader", "--only", "publisher"),
            *("--data-dir", tmp_path / "data"),
            config=config,
        )
        proc = subprocess.Popen(run, stdout=out, stderr=out)  # noqa: ASYNC220
        try:
            users = tmp_path / "data" / "run" / "mosquitto" / "users.json"
            wait_until(users.exists, timeout=30)
            broker = json.loads(users.read_text())
            assert wait_for_port("127.0.0.1", broker["port"], 30)
            sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker["port"]), "-t", CONFIG]
            sub += ["-u", "viewer", "-P", broker["users"]["viewer"], "-C", "1", "-W", "40"]
            got = await asyncio.to_thread(subprocess.run, sub, capture_output=True)
            assert got.stdout, got.stderr  # the config was sent (and came back to it)
            await asyncio.sleep(2)  # an echo is handled within milliseconds
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log.read_text()
    assert "target ha connected" in text
    assert "not a command topic" not in text

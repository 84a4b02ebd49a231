"""After `bmsgate run` restarts, Home Assistant keeps every entity it was told about before.

The publisher reads the pack's discovery config the user's broker kept from before: a component
this version still has stays announced (its value null until the pack reports it), one it no
longer has is removed as Home Assistant documents (a component with only its platform).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto
from tests.support.tree import bmsgate_run, with_target

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

"""The reader killed between two saves of its energy counters: its totals still never step down.

The counter file is written at the first poll and then every few minutes (SD-card wear), so a
reader killed with SIGKILL after counting a while has a file behind what it already published.
Restarted, it must go on from its packs' last published (retained) states, or Home Assistant
sees the ``total_increasing`` values fall: a meter reset.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.support.mqtt import Listener, listen
from tests.support.procs import (
    Mosquitto,
    Proc,
    garage_config,
    start_service,
    start_simulator,
)

pytestmark = pytest.mark.integration
TOTALS = ("energy_in", "energy_out", "charge_in", "charge_out")


def states(seen: Listener, since: int = 0) -> list[dict[str, float]]:
    """The live (not retained) states received from message ``since`` on."""
    return [m.payload for m in seen.messages[since:] if m.topic.endswith("/state") and not m.retain]


def test_a_killed_reader_goes_on_from_its_published_totals_not_its_older_file(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    sim, link = start_simulator(tmp_path, "daly_classic", "--speed", "600")
    procs.append(sim)
    data = tmp_path / "data"
    config = garage_config(tmp_path, mosquitto.port, link, bus={"poll_interval": 0.2}, heartbeat=1)
    saved_file = data / "reader" / "energy-garage.json"

    async def scenario() -> tuple[dict[str, float], dict[str, float], dict[str, float], str]:
        async with listen(mosquitto.port, "bmsgate/bms/garage/state") as seen:
            reader = start_service(tmp_path, "reader", config)
            procs.append(reader)
            # counting for a while: the totals move past what the first poll saved
            await seen.wait_for(
                lambda s: (
                    len(states(s)) > 5
                    and states(s)[-1]["charge_in"] + states(s)[-1]["charge_out"]
                    > states(s)[0]["charge_in"] + states(s)[0]["charge_out"] + 0.05
                ),
                30,
            )
            reader.stop(signal.SIGKILL)
            last = states(seen)[-1]
            saved = json.loads(saved_file.read_text())
            restart = len(seen.messages)
            again = start_service(tmp_path, "reader", config)
            procs.append(again)
            await seen.wait_for(lambda s: states(s, restart), 30)
            return last, saved, states(seen, restart)[0], reader.log() + again.log()

    last, saved, first, log = asyncio.run(scenario())
    # the case at hand: the file is behind what was published before the kill
    assert any(saved[k] < last[k] for k in TOTALS), (saved, last)
    for key in TOTALS:
        assert first[key] >= last[key], (key, first[key], last[key], saved[key])
    assert "go on from the last published state" in log, log
    assert "not all read" not in log and "Traceback" not in log, (
        log
    )  # never a wait for the timeout, not even with nothing retained (the first start)

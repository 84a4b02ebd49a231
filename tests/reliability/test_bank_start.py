"""After `bmsgate run` starts, a bank is never published as a bank of the members heard so far.

Two simulated DALY boards on two buses (a reader each), one bank of both, a Home Assistant target
on a second Mosquitto that records everything the publisher sends from its first message. The
second board sleeps through the tree's start (its reader gets no answer, not yet often enough
to call it offline) and wakes a few seconds after the first pack is live. Before, the bank was
published as the first pack alone (16 cells, half the capacity) until the second answered.
Now nothing of the bank goes out until every member has either sent a fresh state or been
judged out by the liveness rule (bmsgate_common.liveness.Arrivals.undecided).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from tests.reliability.counts import COUNTS
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto
from tests.support.tree import bmsgate_run, write_config

pytestmark = pytest.mark.integration
CELLS = 16


def config(work: Path, east: str, west: str, target: int) -> Path:
    bus: dict[str, Any] = {"protocol": "daly_classic", "poll_interval": 1.0}
    # fmt: off
    data: dict[str, Any] = {
        "buses": [
            {**bus, "port": east, "packs": [{"id": "east"}]},
            # asleep through the start, not for offline_after polls: it is not judged out
            {**bus, "port": west, "offline_after": 30, "packs": [{"id": "west"}]},
        ],
        "banks": [{"id": "house", "packs": ["east", "west"]}],
        "publisher": {"targets": [{"name": "home", "host": "127.0.0.1", "port": target,
                                   "homeassistant": {"enabled": True}}]},
    }
    # fmt: on
    return write_config(work, data)


async def test_a_bank_is_first_published_whole(tmp_path: Path, mosquitto: Mosquitto) -> None:
    east_bus = make_bus("daly_classic", cells=CELLS, seed=1)
    west_bus = make_bus("daly_classic", cells=CELLS, seed=7)
    async with (
        PtyServer(east_bus, tmp_path / "ttyEAST") as east,
        PtyServer(west_bus, tmp_path / "ttyWEST") as west,
        listen(mosquitto.port, "bmsgate/#") as seen,
    ):
        west.doze()
        path = config(tmp_path, east.port, west.port, mosquitto.port)
        async with bmsgate_run(path, tmp_path / "run.log"):
            await seen.wait_for(lambda s: b"online" in s.on("/east/availability"), within=60)
            # the publisher's 2 s hold is over and east has been live for seconds: a bank of
            # the members heard so far would be out by now
            await asyncio.sleep(4.0)
            before_wake = len(seen.on("bmsgate/house"))
            west.wake()
            await seen.wait_for(lambda s: s.on("bmsgate/house"), within=30)
            await asyncio.sleep(3.0)  # a few more ticks of the bank
    packets = [p for p in seen.on("bmsgate/house") if isinstance(p, dict)]
    states = [p for p in seen.on("bmsgate/house/state") if isinstance(p, dict)]
    assert before_wake == 0, seen.on("bmsgate/house")[:2]
    cells = [len(p["bat"]) for p in packets]  # the dongle packet: every cell of the bank
    assert cells and set(cells) == {2 * CELLS}, cells
    assert states and all(s["cell_min_pack"] in ("east", "west") for s in states)
    text = (tmp_path / "run.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    COUNTS["bank start: bank packets before every member was heard"] = before_wake
    COUNTS["bank start: bank packets, all with both members' cells"] = len(packets)

"""Polling that respects the wire: a DALY classic's slow commands go out every slow_every polls.

Two simulated boards on one pty, served from this process so the test counts every request the
boards hear; the reader runs as a process and publishes on a real Mosquitto. The packs discharge
while the test runs, so a value kept from a slow read differs from one read now.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms import daly_classic as daly
from bmsgate_bms.polling import FAST, SLOW, tagged
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.models import PackState
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto, start_service, write_config

pytestmark = pytest.mark.integration

EVERY = 4  # slow_every of the bus under test
STATES = 14  # per pack, before the counts are taken


async def poll_two_packs(broker: int, work: Path) -> tuple[dict[str, list[PackState]], Any]:
    """Run the reader until each pack published STATES states; the states and the boards' bus."""
    sim = make_bus("daly_classic", boards=2)
    for board in sim.boards:
        board.model.profile = False
        board.model.demand = -40.0  # [A] discharging: the cells move, the direction does not
    async with PtyServer(sim, work / "tty-wire") as pty, listen(broker, "bmsgate/bms/#") as seen:
        moving = asyncio.create_task(sim.run_time(speed=60.0, tick=0.05))
        config = write_config(
            work,
            {
                "mqtt": {"host": "127.0.0.1", "port": broker},
                "buses": [
                    {
                        "port": pty.port,
                        "protocol": "daly_classic",
                        "poll_interval": 0.2,
                        "slow_every": EVERY,
                        "packs": [{"id": "a", "address": 1}, {"id": "b", "address": 2}],
                    }
                ],
                "data_dir": str(work / "data"),
            },
        )
        reader = start_service(work, "reader", config)
        try:
            await seen.wait_for(lambda s: all(len(s.on(f"/{p}/state")) >= STATES for p in "ab"), 60)
            heard = dict(sim.heard)  # no await until the states are taken: nothing arrives
            states = {
                p: [PackState.model_validate(m) for m in seen.on(f"/{p}/state")] for p in "ab"
            }
        finally:
            reader.stop()
            moving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await moving
        assert "Traceback" not in reader.log()
    return states, heard


def test_slow_commands_go_out_every_n_polls_and_states_say_their_age(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    states, heard = asyncio.run(poll_two_packs(mosquitto.port, tmp_path))
    for board, pack in ((1, "a"), (2, "b")):
        got = states[pack]
        fast = {cmd: heard.get(daly.request(cmd, board), 0) for cmd in tagged(daly.POLL, FAST)}
        slow = {cmd: heard.get(daly.request(cmd, board), 0) for cmd in tagged(daly.POLL, SLOW)}
        polls = fast[daly.SOC]
        # every poll asks every fast command (0x93 signs the current, so it is one of them);
        # the last poll may be on the wire but not yet published
        assert set(fast.values()) == {polls} and len(got) <= polls <= len(got) + 1
        # the slow ones once, then every EVERY polls (plus when the MOSFETs or alarms change,
        # which they do not here); a state read with them says age 0
        fresh = [s for s in got if s.ages.get("cell_voltages") == 0.0]
        assert len(set(slow.values())) == 1 and slow[daly.CELLS] in (len(fresh), len(fresh) + 1)
        assert polls / EVERY - 1 <= slow[daly.CELLS] <= polls / EVERY + 2, (fast, slow)

        last: PackState | None = None
        for state in got:
            # complete in every state: cells, temperatures, cycles and balancing are there
            assert state.cell_count == 16 and len(state.cell_voltages) == 16
            assert state.temperatures and state.cycles is not None and state.balancing is not None
            assert state.current < 0  # discharging: the sign comes from 0x93 at every poll
            ages = state.ages
            assert {
                "cell_voltages",
                "cell_count",
                "temperatures",
                "cycles",
                "balancing",
                "balancing_cells",
            } <= ages.keys()
            assert "pack_voltage" not in ages and "current" not in ages and "alarms" not in ages
            assert len(set(ages.values())) == 1  # one slow read: one age
            if ages["cell_voltages"] == 0.0:
                last = state
                continue
            assert last is not None, "the first state reads everything"
            # a kept value is the one read then, and its age is the time since then
            assert state.cell_voltages == last.cell_voltages
            assert state.temperatures == last.temperatures and state.cycles == last.cycles
            since = (state.ts - last.ts).total_seconds()
            assert ages["cell_voltages"] == pytest.approx(since, abs=0.15)
        # the fast values move on between slow reads (0x93's remaining capacity, in mAh)
        assert len({s.remaining_capacity for s in got}) > len(fresh) + 2

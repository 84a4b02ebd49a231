"""When the slow reads are due, and the ages they leave in a snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from bmsgate_bms import daly_classic, jbd, seplos_v2
from bmsgate_bms.errors import LinkTimeout
from bmsgate_bms.polling import MAX_AGE, SlowReads
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.link import SimLink


def due_polls(
    slow: SlowReads, polls: int, every_s: float = 1.0, signal: object = "same"
) -> list[int]:
    """The polls (from 1) that read the slow commands, each read succeeding."""
    out = []
    for n in range(1, polls + 1):
        now = n * every_s
        if slow.due(now, signal):
            slow.keep({"cycles": n}, now)
            out.append(n)
    return out


def test_every_n_polls_after_the_first() -> None:
    assert due_polls(SlowReads(every=4), 12) == [1, 4, 8, 12]


def test_every_1_reads_everything_and_lists_no_ages() -> None:
    slow = SlowReads()
    assert due_polls(slow, 3) == [1, 2, 3]
    assert slow.ages(3.5) == {}


def test_the_phase_spreads_the_boards_of_a_bus() -> None:
    firsts = [due_polls(SlowReads(every=4, phase=p), 8)[1] for p in range(4)]
    assert sorted(firsts) == [2, 3, 4, 5]


def test_no_value_older_than_max_age_however_long_the_poll() -> None:
    # a poll every 15 s with every=10 would read the slow commands every 150 s
    assert due_polls(SlowReads(every=10), 10, every_s=15.0) == [1, 5, 9, 10]
    assert MAX_AGE == 60.0


def test_a_changed_signal_reads_them_at_once() -> None:
    slow = SlowReads(every=10)
    assert slow.due(0.0, ("idle", True))
    slow.keep({"cycles": 1}, 0.0)
    assert not slow.due(1.0, ("idle", True))
    assert slow.due(2.0, ("charging", True))


def test_a_failed_slow_read_is_owed_to_the_retry() -> None:
    slow = SlowReads(every=10)
    slow.due(0.0)
    slow.keep({"cycles": 1}, 0.0)
    assert [slow.due(float(n)) for n in range(1, 10)][-1]  # the tenth poll: due
    assert slow.due(9.5)  # it failed (nothing kept): the retry reads them still
    slow.keep({"cycles": 2}, 9.5)
    assert not slow.due(10.0)


def test_ages_are_the_time_since_the_slow_read() -> None:
    slow = SlowReads(every=5)
    slow.due(100.0)
    slow.keep({"cycles": 7, "cell_voltages": [3.3]}, 100.0)
    assert slow.ages(100.0) == {"cycles": 0.0, "cell_voltages": 0.0}
    slow.due(103.26)
    assert slow.ages(103.26) == {"cycles": 3.3, "cell_voltages": 3.3}


def test_a_slow_text_goes_out_every_n_polls_with_its_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """JBD on a simulated board: 0x03/0x04 at every poll, the 0x05 model at the first poll and
    every third one."""
    bus = make_bus("jbd")
    driver = jbd.Driver(SimLink(bus), 1)
    driver.slow.every = 3
    clock = iter(range(100))
    tick = SimpleNamespace(monotonic=lambda: float(next(clock)))  # a poll a second
    monkeypatch.setattr(jbd, "time", tick)
    readings = [asyncio.run(driver.read()) for _ in range(9)]
    asked = {cmd: bus.heard[jbd.request(cmd)] for cmd in jbd.POLL}
    assert asked == {jbd.BASIC: 9, jbd.CELLS: 9, jbd.HARDWARE: 4}
    assert all(r.extras["hardware_model"] for r in readings)
    assert [r.ages["hardware_model"] for r in readings] == [0, 1, 0, 1, 2, 0, 1, 2, 0]
    assert "current" not in readings[1].ages


def test_a_board_without_the_slow_read_is_asked_once() -> None:
    bus = make_bus("seplos_v2")
    bus.boards[0].answer = _without(bus.boards[0].answer, seplos_v2.VENDOR_INFO)  # type: ignore[method-assign]
    driver = seplos_v2.Driver(SimLink(bus), 1)
    driver.slow.every = 2
    for _ in range(6):
        reading = asyncio.run(driver.read())
    assert bus.heard[seplos_v2.request(seplos_v2.VENDOR_INFO, 1)] == 1
    assert "hardware_model" not in reading.extras and reading.ages == {}


def _without(answer: Callable[[bytes], list[bytes] | None], cid2: int) -> Any:
    def answering(request: bytes) -> list[bytes] | None:
        return None if request == seplos_v2.request(cid2, 1) else answer(request)

    return answering


def test_after_a_missed_poll_a_daly_classic_reads_everything_again() -> None:
    """A board that slept keeps nothing from before: the first answer after it is complete."""
    bus = make_bus("daly_classic")
    driver = daly_classic.Driver(SimLink(bus), 1)
    driver.slow.every = 10
    cells = daly_classic.request(daly_classic.CELLS, 1)

    async def polls() -> None:
        await driver.read()
        await driver.read()
        assert bus.heard[cells] == 1  # the second poll: fast commands only
        bus.faults.mode = "sleep"
        with pytest.raises(LinkTimeout):
            await driver.read()
        bus.faults.mode = "none"
        reading = await driver.read()
        assert bus.heard[cells] == 2 and reading.ages["cell_voltages"] == 0.0

    asyncio.run(polls())

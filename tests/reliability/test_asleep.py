"""A BMS asleep for an hour of polls: the reader stays quiet, keeps its memory, and wakes with it.

The reader runs as a process against a simulated DALY board on a pty and a real Mosquitto. The
board is served from this process, so the test puts it to sleep and wakes it, and knows what it
reports. Poll interval and answer timeout are short, so an hour of polling at the default
interval (720 polls of 5 s) takes about 30 s. While the board sleeps the reader must publish no
state, go offline once, log a line rather than one per poll, and not grow; once it wakes, the
first state is new (taken after the wake, the values the board reports now, not the ones from
before) and the pack's alarms are raised again. ``bench/reliability_bench.py --asleep SECONDS``
runs the same in real time at the default poll interval.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.models import utcnow
from bmsgate_common.settings import BusSettings
from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto, Proc, garage_config, rss_kb, start_service

pytestmark = pytest.mark.integration

DEFAULT_POLL = BusSettings.model_fields["poll_interval"].default  # [s] 5
HOUR_OF_POLLS = round(3600 / DEFAULT_POLL)  # 720 polls
# one request per poll while asleep (no retry), answered in ~5 ms when awake: ~25 polls a second
FAST = {"poll_interval": 0.04, "timeout": 0.04, "retries": 0, "offline_after": 3}
# [kB] RSS growth allowed over the settled part of the sleep (~650 polls): < 0.3 kB a poll
LEAK_KB = 200
STATUS = "/service/reader-0/status"
# The reader as ``python -m bmsgate_reader`` runs it, but giving free heap memory back every
# {0} s rather than every 5 minutes: glibc keeps what was freed resident (~5 MB after start-up),
# and a leak would fill that before RSS showed it.
TRIMMED = (
    "import sys, bmsgate_common.service as s; s.TRIM_EVERY = {0}; "
    "from bmsgate_reader.__main__ import main; sys.exit(main())"
)


def ts(payload: dict[str, Any]) -> datetime:
    """The time a message's payload carries."""
    return datetime.fromisoformat(payload["ts"])


@dataclass
class Sleep:
    """What the reader did while its board slept, and when it woke."""

    polls: int  # the reader's own count (its status) between the sleep's first and last status
    failures: int  # over the same statuses
    requests: int  # requests the board heard while asleep
    seconds: float  # [s] of wall time asleep
    hours: float  # of polling at the default interval that ``polls`` stand for
    states: int  # published after the first second of the sleep
    in_flight: int  # states published in the first second (a poll answered before the sleep)
    availability: list[str]  # changes while asleep
    offline_copies: int  # the offline availability republished unchanged (heartbeat)
    offline_variants: int  # distinct offline payloads
    alarms_asleep: int  # alarm events while asleep
    log_lines: list[str]
    tracebacks: int
    rss_kb: list[tuple[float, int, int]]  # (seconds into the sleep, polls, RSS [kB])
    online_after: float  # [s] from the wake to the reader's online (its own timestamp)
    seen_online_after: float  # [s] from the wake until the broker delivered it
    poll_period: float  # [s] the time one failed poll takes at least
    first_after: float  # [s] from the wake to the first state's timestamp
    first: dict[str, Any] = field(default_factory=dict)  # the first state after the wake
    last: dict[str, Any] = field(default_factory=dict)  # the last state before the sleep
    board: dict[str, Any] = field(default_factory=dict)  # what the board reports at the wake
    raised_before: list[str] = field(default_factory=list)  # alarm codes raised before the sleep
    raised_after: list[str] = field(default_factory=list)  # raised again after the wake

    @property
    def settled_growth_kb(self) -> int:
        """RSS growth from the first reading after a tenth of the sleep's polls to its end."""
        tenth = self.rss_kb[-1][1] / 10
        settled = next(kb for _, polls, kb in self.rss_kb if polls >= tenth)
        return self.rss_kb[-1][2] - settled

    def counts(self) -> dict[str, Any]:
        """The figures of the sleep, without the states themselves."""
        values = ("pack_voltage", "current", "soc")
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("first", "last", "board")},
            "rss_growth_kb": self.rss_kb[-1][2] - self.rss_kb[0][2],
            "settled_growth_kb": self.settled_growth_kb,
            "before": {k: self.last[k] for k in values},
            "first_after_wake": {k: self.first[k] for k in values},
            "board_at_wake": {k: self.board[k] for k in (*values, "alarms")},
        }


def statuses(seen: Listener) -> list[dict[str, Any]]:
    """The reader's status payloads so far (its poll counters are in ``detail``)."""
    return [p for p in seen.on(STATUS) if p.get("ts")]


async def sleep_through(
    broker_port: int,
    work: Path,
    bus: dict[str, Any],
    *,
    polls: int | None = None,
    seconds: float | None = None,
    warmup: float = 3.0,
    every: float = 5.0,
    note: Callable[[str], None] | None = None,
    trim_every: float | None = None,
) -> Sleep:
    """Put the board to sleep for ``polls`` of the reader's polls (or ``seconds``), then wake it.

    The pack has a cell at an undervoltage warning throughout, and while asleep 1 Ah (1 % of
    the pack) flows out over the time the sleep stands for, so a state from before the sleep
    differs from one after. RSS readings every ``every`` seconds go to ``note`` as they are
    taken; with ``trim_every`` the reader gives free heap memory back that often (TRIMMED).
    """
    sim = make_bus("daly_classic")
    model = sim.boards[0].model
    model.profile = False
    model.cells[0].soc = 1.8  # ~2.86 V: cell_undervoltage_warning until it recovers
    period = max(bus["poll_interval"], bus["timeout"] * (bus.get("retries", 1) + 1))
    async with (
        PtyServer(sim, work / "tty-garage") as pty,
        listen(broker_port, "bmsgate/bms/garage/#", f"bmsgate{STATUS}") as seen,
    ):
        config = garage_config(work, broker_port, pty.port, bus=bus, heartbeat=1)
        reader = (
            Proc(
                "reader",
                [sys.executable, "-c", TRIMMED.format(trim_every), "--config", str(config)],
                work,
            )
            if trim_every
            else start_service(work, "reader", config)
        )
        pid = reader.process.pid
        try:
            await seen.wait_for(
                lambda s: "online" in [a["state"] for a in s.on("/availability")], 30
            )
            await asyncio.sleep(warmup)  # the polling path's allocations made, caches filled
            await seen.wait_for(lambda s: s.on("/alarm"), 10)
            raised_before = [a["code"] for a in seen.on("/alarm") if a["active"]]
            last = seen.on("/garage/state")[-1]
            # no await from here to the switch: nothing arrives in between
            mark, lines0, r0 = len(seen.messages), len(reader.log().splitlines()), sim.requests
            readings = [(0.0, 0, rss_kb(pid))]
            asleep = utcnow()
            t0 = time.monotonic()
            sim.faults.mode = "sleep"
            stands_for = polls * DEFAULT_POLL if polls else seconds or 1.0  # [s]
            model.demand = -3600 / stands_for  # [A]
            model.step(stands_for)

            after_start = await seen.wait_for(
                lambda s: [p for p in statuses(s) if ts(p) > asleep], 30
            )
            p0, f0 = after_start[0]["detail"]["polls"], after_start[0]["detail"]["failures"]
            last_reading = time.monotonic()
            while True:
                now = statuses(seen)[-1]["detail"]
                elapsed = time.monotonic() - t0
                if time.monotonic() - last_reading >= every:
                    last_reading = time.monotonic()
                    readings.append((round(elapsed, 1), now["polls"] - p0, rss_kb(pid)))
                    if note:
                        note(
                            f"{elapsed:7.0f} s asleep: {now['polls'] - p0} polls, "
                            f"RSS {readings[-1][2]} kB"
                        )
                if (polls and now["polls"] - p0 >= polls) or (seconds and elapsed >= seconds):
                    break
                if polls and elapsed > 80:  # fail with the count, before pytest's timeout
                    raise AssertionError(f"only {now['polls'] - p0} polls in {elapsed:.0f} s")
                await asyncio.sleep(0.1)

            end = statuses(seen)[-1]
            readings.append(
                (round(time.monotonic() - t0, 1), end["detail"]["polls"] - p0, rss_kb(pid))
            )
            wake_mark, lines1, r1 = len(seen.messages), len(reader.log().splitlines()), sim.requests
            woke = utcnow()
            sim.faults.mode = "none"
            t1 = time.monotonic()
            board: dict[str, Any] = {
                "pack_voltage": model.pack_voltage,
                "current": model.current,
                "soc": model.soc,
                "cell_voltages": model.cell_voltages,
                "alarms": model.alarms,
            }
            await seen.wait_for(
                lambda s: any(
                    m.payload["state"] == "online"
                    for m in s.messages[wake_mark:]
                    if m.topic.endswith("/availability")
                ),
                60,
            )
            seen_online = time.monotonic() - t1
            await seen.wait_for(
                lambda s: (
                    {a["code"] for a in s.on("/alarm")[len(raised_before) :] if a["active"]}
                    >= set(board["alarms"])
                ),
                10,
            )
            after = seen.messages[wake_mark:]
            online = next(
                m.payload
                for m in after
                if m.topic.endswith("/availability") and m.payload["state"] == "online"
            )
            first = next(m.payload for m in after if m.topic.endswith("/state"))
            log = reader.log()
        finally:
            reader.stop()

    during = seen.messages[mark:wake_mark]
    states = [m.payload for m in during if m.topic.endswith("/state")]
    offline = [
        m.payload
        for m in during
        if m.topic.endswith("/availability") and m.payload["state"] == "offline"
    ]
    changes: list[str] = []
    was = "online"
    for m in during:
        if m.topic.endswith("/availability") and m.payload["state"] != was:
            was = m.payload["state"]
            changes.append(was)
    asleep_polls = end["detail"]["polls"] - p0
    return Sleep(
        polls=asleep_polls,
        failures=end["detail"]["failures"] - f0,
        requests=r1 - r0,
        seconds=round(t1 - t0, 1),
        hours=round((seconds or asleep_polls * DEFAULT_POLL) / 3600, 2),
        states=sum(1 for s in states if (ts(s) - asleep).total_seconds() > 1.0),
        in_flight=sum(1 for s in states if (ts(s) - asleep).total_seconds() <= 1.0),
        availability=changes,
        offline_copies=len(offline) - changes.count("offline"),
        offline_variants=len({(o["ts"], o.get("reason")) for o in offline}),
        alarms_asleep=sum(1 for m in during if m.topic.endswith("/alarm")),
        log_lines=log.splitlines()[lines0:lines1],
        tracebacks=log.count("Traceback"),
        rss_kb=readings,
        online_after=round((ts(online) - woke).total_seconds(), 3),
        seen_online_after=round(seen_online, 3),
        poll_period=period,
        first_after=round((ts(first) - woke).total_seconds(), 3),
        first=first,
        last=last,
        board=board,
        raised_before=raised_before,
        raised_after=[a["code"] for a in seen.on("/alarm")[len(raised_before) :] if a["active"]],
    )


def test_a_bms_asleep_for_an_hour_of_polls(tmp_path: Path, mosquitto: Mosquitto) -> None:
    run = asyncio.run(
        sleep_through(mosquitto.port, tmp_path, FAST, polls=HOUR_OF_POLLS, trim_every=2.0)
    )
    rss_before, rss_end = run.rss_kb[0][2], run.rss_kb[-1][2]
    print(f"asleep: {run.counts()}")
    COUNTS["asleep: polls while asleep"] += run.polls
    COUNTS["asleep: hours of polling at 5 s [h x 100]"] += round(run.hours * 100)
    COUNTS["asleep: wall time asleep [ms]"] += round(run.seconds * 1000)
    COUNTS["asleep: states while asleep"] += run.states
    COUNTS["asleep: offline transitions"] += run.availability.count("offline")
    COUNTS["asleep: offline republished unchanged"] += run.offline_copies
    COUNTS["asleep: log lines while asleep"] += len(run.log_lines)
    COUNTS["asleep: RSS before [kB]"] += rss_before
    COUNTS["asleep: RSS at the end [kB]"] += rss_end
    COUNTS["asleep: RSS growth after the first tenth [kB]"] += run.settled_growth_kb
    COUNTS["asleep: online after the wake [ms]"] += round(run.online_after * 1000)

    assert run.polls >= HOUR_OF_POLLS
    # every poll while asleep failed (a status taken mid-poll counts it, not yet its failure) ...
    assert abs(run.failures - run.polls) <= 1, run.counts()
    assert run.requests >= run.polls  # ... and each one asked the board
    # a poll answered just before the switch may still publish; nothing after it
    assert run.states == 0 and run.in_flight <= 1, run
    assert run.availability == ["offline"], run.availability
    assert run.offline_variants == 1  # the heartbeat repeats the same availability
    assert run.alarms_asleep == 0
    assert len(run.log_lines) <= 3, run.log_lines  # the offline warning, not a line per poll
    assert run.tracebacks == 0
    assert rss_end - rss_before < rss_before * 0.02, run.rss_kb
    # 1 kB a poll kept by the reader would add ~650 kB here (596 kB with one put in to check)
    assert run.settled_growth_kb < LEAK_KB, run.rss_kb
    # the first state after the wake is new: taken after it, with what the board says now
    assert run.online_after <= 3 * run.poll_period + 0.5, run.online_after
    assert run.first_after > 0, run.first_after
    assert run.first["cell_voltages"] == pytest.approx(run.board["cell_voltages"], abs=0.0015)
    assert run.first["pack_voltage"] == pytest.approx(run.board["pack_voltage"], abs=0.06)
    assert run.first["soc"] == pytest.approx(run.board["soc"], abs=0.11)
    assert run.first["current"] == pytest.approx(run.board["current"], abs=0.06)
    assert run.first["soc"] < run.last["soc"]  # not the value from before: 1 Ah went out
    assert run.board["alarms"] and run.raised_before
    assert set(run.raised_after) >= set(run.board["alarms"])

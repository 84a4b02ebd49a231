"""A bank's counters through a member outage and restarts of the publisher and of `bmsgate run`.

Real processes: Mosquitto, two simulated DALY boards on ptys (one bus each), `bmsgate run` with
its readers and the publisher. The bank's energy and charge counters, as published on the
backbone, never go down, and the bank adds no more than its members moved.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Mosquitto, Proc, start_simulator, wait_until, write_config
from tests.support.tree import run_argv

pytestmark = pytest.mark.integration
COUNTERS = ("energy_in", "energy_out", "charge_in", "charge_out")


class States:
    """Every state on the backbone, in arrival order, from mosquitto_sub."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.proc = Proc(
            "states",
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-v",
                "-t",
                "bmsgate/bms/+/state",
            ],
            workdir,
        )

    def all(self) -> list[dict[str, Any]]:
        out = []
        for line in self.proc.log_path.read_text().splitlines():
            topic, _, payload = line.partition(" ")
            if topic.startswith("bmsgate/bms/") and payload:
                out.append(json.loads(payload))
        return out

    def of(self, pack: str) -> list[dict[str, Any]]:
        return [s for s in self.all() if s["pack"] == pack]


def start_run(workdir: Path, config: Path, n: int) -> Proc:
    return Proc(
        f"run-{n}",
        # --isolate: the publisher a process of its own, so it alone can be killed
        run_argv("--isolate", "--only", "reader", "--only", "publisher", config=config),
        workdir,
    )


def publisher_pid(run: Proc) -> int | None:
    """The pid of the publisher under ``run`` (the zygote names its children bms-<service>)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in table.stdout.splitlines()]
    family, found = {run.process.pid}, None
    for _ in range(4):  # run -> zygote -> service
        for pid, ppid, comm in rows:
            if int(ppid) in family:
                family.add(int(pid))
                if comm.strip() == "bms-publisher":
                    found = int(pid)
    return found


def test_bank_counters_never_go_down_through_an_outage_and_restarts(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    sims = {
        name: start_simulator(tmp_path, "daly_classic", "--speed", "120", name=name)
        for name in ("garage", "shed")
    }
    procs += [proc for proc, _ in sims.values()]
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
            "buses": [
                {
                    "port": link,
                    "protocol": "daly_classic",
                    "poll_interval": 0.5,
                    "offline_after": 2,
                    "packs": [{"id": name}],
                }
                for name, (_, link) in sims.items()
            ],
            "banks": [{"id": "house", "packs": ["garage", "shed"]}],
            "stale_after": 5,
            "timezone": "UTC",
            "data_dir": str(tmp_path / "data"),
        },
    )
    states = States(tmp_path, mosquitto.port)
    procs.append(states.proc)
    run = start_run(tmp_path, config, 1)
    procs.append(run)

    def banked(more_than: int = 0) -> bool:
        return len(states.of("house")) > more_than

    wait_until(banked, timeout=60)
    time.sleep(4)
    phases = {"start": len(states.of("house"))}
    # a member's BMS goes away for 10 s and comes back on the same port
    sims["shed"][0].stop()
    wait_until(lambda: states.of("house")[-1]["extras"]["bank_members"] == "garage", timeout=15)
    time.sleep(10)
    sims["shed"] = start_simulator(tmp_path, "daly_classic", "--speed", "120", name="shed")
    procs.append(sims["shed"][0])
    wait_until(lambda: states.of("house")[-1]["extras"]["bank_members"] == "garage,shed", 30)
    phases["member back"] = len(states.of("house"))
    time.sleep(3)
    # the publisher is killed (no save on the way out); bmsgate run starts it again
    pid = wait_until(lambda: publisher_pid(run), timeout=10)
    subprocess.run(["kill", "-KILL", str(pid)], check=True)
    killed = len(states.of("house"))
    wait_until(lambda: publisher_pid(run) not in (None, pid), timeout=30)
    wait_until(lambda: banked(killed + 6), timeout=30)
    phases["publisher restarted"] = len(states.of("house"))
    # bmsgate run itself stops and starts again
    assert run.stop(signal.SIGTERM, timeout=20) == 0
    run = start_run(tmp_path, config, 2)
    procs.append(run)
    wait_until(lambda: banked(phases["publisher restarted"] + 10), timeout=60)
    phases["run restarted"] = len(states.of("house"))

    bank = states.of("house")
    for name in COUNTERS:
        values = [s[name] for s in bank if s[name] is not None]
        falls = [(a, b) for a, b in itertools.pairwise(values) if b < a]
        assert values and not falls, (name, falls[:3])
    # the bank adds only what its members moved, never a member's lifetime counter again
    gains = []
    for name in ("energy_in", "energy_out"):
        moved = sum(s[-1][name] - s[0][name] for s in (states.of("garage"), states.of("shed")))
        gained = bank[-1][name] - bank[0][name]
        assert 0 <= gained <= moved + 1e-6, (name, gained, moved)
        gains.append(gained)
    assert max(gains) > 0  # it counts on (the simulated packs charge or discharge)
    # from the member's return to after the publisher's crash both members count throughout:
    # the crash loses nothing (their starts were saved when they joined) and adds nothing twice
    back, after = bank[phases["member back"] - 1], bank[phases["publisher restarted"] - 1]
    for name in ("energy_in", "energy_out"):
        members = 0.0
        for pack in ("garage", "shed"):
            seen = [s for s in states.of(pack) if back["ts"] <= s["ts"] <= after["ts"]]
            members += seen[-1][name] - seen[0][name]
        gained = after[name] - back[name]
        assert abs(gained - members) <= 0.0003 + 0.05 * members, (name, gained, members)
    # the figures: the bank's energy_out against the members' lifetime sum (the former rule),
    # at every bank state, with the members counting then
    latest: dict[str, float] = {}
    lines = [f"{'n':>4} {'members':>12} {'bank energy_out':>16} {'lifetime sum':>13}"]
    n = 0
    for s in states.all():
        if s["pack"] != "house":
            latest[s["pack"]] = s["energy_out"]
            continue
        n += 1
        counting = s["extras"]["bank_members"]
        former = sum(latest.get(p, 0.0) for p in counting.split(","))
        lines.append(f"{n:>4} {counting:>12} {s['energy_out']:>16.4f} {former:>13.4f}")
    print("\n".join(lines), "\nphases (bank states so far):", phases)

"""Footprint of ``bmsgate run``: memory (PSS) per process, idle CPU, CPU per delivered sample.

Each case starts ``bmsgate run`` as a user would, lets it warm up, then for ``--seconds``:

* PSS of every process of its tree (PSS splits a shared page among the processes mapping it,
  so the sum is what the tree costs), read at the end of the window;
* CPU seconds the whole tree used (user + system, /proc, children that came and went during the
  window are missed) and the states a subscriber received on the backbone in the window;
  ms of CPU per state is the tree's CPU over the window divided by those states.

The simulated boards run in a process of their own (``bmsgate simulate --pty``), outside the
measured tree, except in ``default`` and ``ports16``, which are ``bmsgate run --simulate`` as
the user would start it (the simulators then run inside the supervisor and are counted).

Cases: ``default`` (``--simulate daly_classic``: one pack polled every 1 s, memory),
``idle`` (one DALY pack at a 5 s poll), ``daly`` and ``jk`` (one pack at a 1 s poll, CPU per
state), ``ports16`` (``--simulate jk_pb --simulate-packs 16``: 16 ports), ``reader`` (``--only
reader`` against a broker of the bench's, as an edge machine; ``reader2`` the same with two
buses, a pack on each). ``--isolate`` measures each
service in a process of its own (the layout before the services shared one process).

Run: uv run python bench/footprint.py [--cases default idle daly jk ports16 reader reader2]
     [--seconds 30] [--warmup 10] [--isolate] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bmsgate.broker import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import local_broker
from procstat import children, cpu_model, cpu_seconds, loadavg, memory_mb, tree_resident_mb
from startup_bench import label

HOST = "127.0.0.1"
CASES = ("default", "idle", "daly", "jk", "ports16", "reader", "reader2")
TARGETS = {  # what docs/performance.md holds each figure to
    "default": "PSS <= 100 MB",
    "idle": "<= 0.5 % of a core",
    "daly": "<= 5 ms per state",
    "jk": "<= 5 ms per state",
    "ports16": "PSS <= 150 MB",
    "reader": "PSS <= 30 MB",
    "reader2": "PSS <= 30 MB for one bus; two buses for comparison",
}


@contextmanager
def simulator(work: Path, protocol: str, number: int = 0) -> Iterator[Path]:
    """A simulated pack on a pty, in a process outside the measured tree; yields its path."""
    link = work / f"tty-{protocol}-{number}"
    bmsgate = Path(sys.executable).parent / "bmsgate"
    argv = [str(bmsgate), "simulate", "--protocol", protocol, "--pty", "--link", str(link)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the pty: it is open
        yield link
    finally:
        proc.terminate()
        proc.wait(10)


def config(work: Path, ports: list[Path], protocol: str, poll: float, mqtt: dict[str, Any]) -> Path:
    """A configuration file with a bus of one pack on each port; everything else as it comes."""
    path = work / "bmsgate.yaml"
    buses = [
        {
            "port": str(port),
            "protocol": protocol,
            "poll_interval": poll,
            "packs": [{"id": f"bench{i or ''}", "name": f"Bench pack {i + 1}"}],
        }
        for i, port in enumerate(ports)
    ]
    cfg = {
        "buses": buses,
        "api": {"host": HOST, "port": free_port()},
        "modbus": {"host": HOST, "port": free_port()},
        "data_dir": str(work / "data"),
        **({"mqtt": mqtt} if mqtt else {}),
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def broker_login(data: Path, mqtt: dict[str, Any], limit: float = 30.0) -> dict[str, Any]:
    """Where and how the bench subscribes: the private broker's viewer, or the bench's broker."""
    if mqtt:
        return {"hostname": HOST, "port": mqtt["port"]}
    users = data / "run" / "mosquitto" / "users.json"  # its port and users (0600)
    deadline = time.monotonic() + limit
    while not users.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    saved = json.loads(users.read_text())
    return {
        "hostname": HOST,
        "port": saved["port"],
        "username": "viewer",
        "password": saved["users"]["viewer"],
    }


async def count_states(login: dict[str, Any], warmup: float, seconds: float, tree: Any) -> Any:
    """States received during the window after ``warmup``; CPU and memory of the tree then."""
    heard: list[float] = []  # when each live state arrived

    async def hear(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.retain:
                heard.append(time.monotonic())

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with aiomqtt.Client(**login) as client:
                await client.subscribe("bmsgate/bms/+/state", qos=0)
                hearing = asyncio.create_task(hear(client))
                while not heard and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                if not heard:
                    break
                await asyncio.sleep(warmup)
                start_cpu, start_parts = tree.cpu(), tree.cpu_parts()
                start = time.monotonic()
                await asyncio.sleep(seconds)
                used, parts = tree.cpu() - start_cpu, tree.cpu_parts()
                end = time.monotonic()
                hearing.cancel()
                got = sum(1 for t in heard if start <= t < end)
                split = {
                    k: round(1000 * (v - start_parts.get(k, 0.0)), 1) for k, v in parts.items()
                }
                return got, used, end - start, (tree.memory(), tree.resident()), split
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)
    raise RuntimeError("no state on the backbone within 60 s")


class Tree:
    """The processes of one ``bmsgate run`` (its descendants looked up when read)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, float] = {}

    def pids(self) -> list[int]:
        """The root and every descendant."""
        return [self.root, *children(self.root)]

    def cpu(self) -> float:
        """CPU seconds of the processes alive now."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds of each process, and of each service's thread in the shared process."""
        parts: dict[str, float] = {}
        for pid in self.pids():
            name = label(pid)
            parts[name] = parts.get(name, 0.0) + cpu_seconds(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    comm = (task / "comm").read_text().strip()
                except OSError:
                    continue
                if task.name != str(pid) and comm.startswith("bms-"):
                    key = f"  thread {comm}"
                    parts[key] = parts.get(key, 0.0) + cpu_seconds(pid, int(task.name))
        return parts

    def resident(self) -> float | None:
        """RAM [MB] of the tree, each page once however many processes map it (root only)."""
        return tree_resident_mb(self.pids())

    def memory(self) -> list[dict[str, Any]]:
        """RSS and PSS of each process."""
        rows = []
        for pid in self.pids():
            rss, pss = memory_mb(pid)
            rows.append({"process": label(pid), "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)})
        return rows


def run_case(case: str, seconds: float, warmup: float, isolate: bool) -> dict[str, Any]:
    """Start the tree for ``case``, measure, stop it."""
    work = Path(tempfile.mkdtemp(prefix=f"bmsgate-footprint-{case}-"))
    bmsgate = str(Path(sys.executable).parent / "bmsgate")
    argv = [bmsgate, "run"] + (["--isolate"] if isolate else [])
    mqtt: dict[str, Any] = {}
    with ExitStack() as stack:
        if case in ("default", "ports16"):
            protocol = "daly_classic" if case == "default" else "jk_pb"
            argv += ["--simulate", protocol, "--data-dir", str(work / "data")]
            argv += ["--http-port", str(free_port()), "--modbus-port", str(free_port())]
            if case == "ports16":
                argv += ["--simulate-packs", "16"]
            argv += ["--config", str(work / "none.yaml")]
        else:
            protocol = "jk_pb" if case == "jk" else "daly_classic"
            if case in ("reader", "reader2"):
                broker = local_broker(work / "mosquitto")
                broker.start()
                stack.callback(broker.stop)
                mqtt = {"host": HOST, "port": broker.port}
                argv += ["--only", "reader"]
            buses = 2 if case == "reader2" else 1
            ports = [stack.enter_context(simulator(work, protocol, i)) for i in range(buses)]
            poll = 5.0 if case == "idle" else 1.0
            argv += ["--config", str(config(work, ports, protocol, poll, mqtt))]
        log = (work / "run.log").open("wb")
        load_before = loadavg()
        proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=work, start_new_session=True)
        try:
            login = broker_login(work / "data", mqtt)
            tree = Tree(proc.pid)
            states, cpu, window, (rows, resident), split = asyncio.run(
                count_states(login, warmup, seconds, tree)
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "case": case,
        "layout": (
            "a process per service"
            if isolate
            else "the lean supervisor and one reader process for every bus"
            if case in ("reader", "reader2")
            else "services share one process"
        ),
        "processes": rows,
        "pss_sum_mb": round(sum(r["pss_mb"] for r in rows), 1),
        "rss_sum_mb": round(sum(r["rss_mb"] for r in rows), 1),
        "resident_mb": round(resident, 1) if resident is not None else None,
        "window_s": round(window, 1),
        "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / window, 2),
        "states": states,
        "cpu_ms_per_state": round(1000 * cpu / states, 2) if states else None,
        "cpu_ms_by_part": split,  # over the window
        "load": f"{load_before} -> {loadavg()}",
        "log": str(work / "run.log"),
    }


def show(r: dict[str, Any]) -> None:
    """One case as lines of text."""
    per = f"{r['cpu_ms_per_state']} ms CPU per state" if r["cpu_ms_per_state"] else "no state"
    print(
        f"{r['case']:8} ({r['layout']}): PSS {r['pss_sum_mb']} MB in {len(r['processes'])} "
        f"processes ({r['resident_mb']} MB resident, each page once); "
        f"CPU {r['cpu_percent']} % of a core over {r['window_s']} s, "
        f"{r['states']} states, {per}  [target {TARGETS[r['case']]}; load {r['load']}]",
        flush=True,
    )
    for p in r["processes"]:
        print(f"    {p['process']:28} pss {p['pss_mb']:6.1f} MB  rss {p['rss_mb']:6.1f} MB")
    print(
        "    CPU ms over the window: "
        + ", ".join(f"{k.strip()} {v}" for k, v in r["cpu_ms_by_part"].items())
    )


def main() -> None:
    """Run the cases asked for and print each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seconds", type=float, default=30.0, help="[s] measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="[s] after the first state")
    parser.add_argument("--isolate", action="store_true", help="a process per service")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} cores; load {loadavg()}", flush=True)
    results = []
    for case in args.cases:
        result = run_case(case, args.seconds, args.warmup, args.isolate)
        show(result)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Memory and start-up: ``bmsgate run`` (every process) and each service alone.

* ``bmsgate run --simulate daly_classic``: seconds from start to the first state on the backbone,
  then RSS and PSS of every process in its tree (PSS splits shared pages fairly, so the PSS sum
  is the real footprint; the RSS sum counts shared libraries once per process).
* each service alone (``python -m bmsgate_<service> --config F`` against a private Mosquitto):
  RSS and PSS once it has settled, beside a bare interpreter and one that only imports the
  service's module (what the imports alone cost).

Run: uv run python bench/startup_bench.py [--settle 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bmsgate.broker import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import local_broker
from procstat import children, cmdline, comm_name, memory_mb, tree_resident_mb

HOST = "127.0.0.1"
ALONE = ("api", "publisher", "modbus", "history", "notifier", "tunnel")


def label(pid: int) -> str:
    """A short name for a process of the tree."""
    text = cmdline(pid)
    if "mosquitto" in text:
        return "mosquitto"
    comm = comm_name(pid)
    if comm.startswith("bms-"):  # forked from the zygote: its name, the zygote's command
        return comm.replace("bms-", "bmsgate_") + (" (bus)" if "reader" in comm else "")
    if "bmsgate.zygote" in text or comm == "bmsgate-zygote":  # exec'd, or forked by bmsgate run
        return "zygote"
    if m := re.search(r"-m (bmsgate_\w+)", text):
        return str(m.group(1)) + (" (bus)" if "--bus" in text else "")
    if "bmsgate run" in text or text.endswith(" run") or " run " in text:
        return "bmsgate run (supervisor)"
    return text[:40]


async def first_state(data_dir: Path, started: float, limit: float) -> float | None:
    """Seconds from ``started`` until a state is on the private broker's backbone."""
    users = data_dir / "run" / "mosquitto" / "users.json"  # its port and users (0600)
    deadline = started + limit
    while not users.exists() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if not users.exists():
        return None
    saved = json.loads(users.read_text())
    port, password = saved["port"], saved["users"]["viewer"]
    while time.perf_counter() < deadline:
        try:
            async with aiomqtt.Client(HOST, port, username="viewer", password=password) as client:
                await client.subscribe("bmsgate/bms/+/state")
                async with asyncio.timeout(deadline - time.perf_counter()):
                    async for _ in client.messages:
                        return time.perf_counter() - started
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)
        except TimeoutError:
            return None
    return None


def run_tree(settle: float) -> dict[str, Any]:
    """``bmsgate run`` with one simulated pack: start-up time and memory of each process."""
    work = Path(tempfile.mkdtemp(prefix="bmsgate-startup-"))
    bmsgate = Path(sys.executable).parent / "bmsgate"
    argv = [
        str(bmsgate),
        "run",
        "--simulate",
        "daly_classic",
        "--data-dir",
        str(work / "data"),
        "--http-port",
        str(free_port()),
        "--modbus-port",
        str(free_port()),
    ]
    log = (work / "run.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=work)
    try:
        first = asyncio.run(first_state(work / "data", started, 30))
        time.sleep(max(0.0, settle - (time.perf_counter() - started)))
        rows: list[dict[str, Any]] = []
        tree = [proc.pid, *children(proc.pid)]
        for pid in tree:
            rss, pss = memory_mb(pid)
            rows.append({"process": label(pid), "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)})
        resident = tree_resident_mb(tree)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "first_state_s": round(first, 2) if first is not None else None,
        "processes": rows,
        "rss_sum_mb": round(sum(r["rss_mb"] for r in rows), 1),
        "pss_sum_mb": round(sum(r["pss_mb"] for r in rows), 1),
        "resident_mb": round(resident, 1) if resident is not None else None,  # each page once
    }


def settled_memory(argv: list[str], settle: float) -> tuple[float, float, bool]:
    """(RSS, PSS) of a process ``settle`` seconds after start, and whether it still runs."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        alive = proc.poll() is None
        rss, pss = memory_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rss, pss, alive


def alone(settle: float) -> list[dict[str, Any]]:
    """Each service alone, beside the cost of its imports."""
    work = Path(tempfile.mkdtemp(prefix="bmsgate-alone-"))
    broker = local_broker(work / "mosquitto")
    broker.start()
    cfg = work / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": HOST, "port": broker.port},
                "buses": [{"port": "/dev/null", "protocol": "jk_pb", "packs": [{"id": "garage"}]}],
                "api": {"host": HOST, "port": free_port()},
                "modbus": {"host": HOST, "port": free_port()},
                "data_dir": str(work / "data"),
                "log_level": "WARNING",
            }
        )
    )
    py = sys.executable
    rows = []
    try:
        rss, pss, _ = settled_memory([py, "-c", "import time; time.sleep(60)"], 1.0)
        rows.append({"process": "bare python", "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)})
        for name in ALONE:
            module = f"bmsgate_{name}.service"
            imp, _, _ = settled_memory([py, "-c", f"import {module}, time; time.sleep(60)"], 3.0)
            argv = [py, "-m", f"bmsgate_{name}", "--config", str(cfg)]
            rss, pss, ok = settled_memory(argv, settle)
            rows.append(
                {
                    "process": f"bmsgate_{name}",
                    "rss_mb": round(rss, 1),
                    "pss_mb": round(pss, 1),
                    "imports_only_rss_mb": round(imp, 1),
                    "running": ok,
                }
            )
    finally:
        broker.stop()
    return rows


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--settle", type=float, default=6.0, help="[s] before memory is read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tree = run_tree(max(args.settle, 10.0))
    print(
        f"bmsgate run: first state after {tree['first_state_s']} s; RSS sum "
        f"{tree['rss_sum_mb']} MB, PSS sum {tree['pss_sum_mb']} MB, resident "
        f"{tree['resident_mb']} MB"
    )
    for r in tree["processes"]:
        print(f"  {r['process']:28} rss {r['rss_mb']:6.1f} MB  pss {r['pss_mb']:6.1f} MB")
    rows = alone(args.settle)
    for r in rows:
        extra = f"  imports only {r['imports_only_rss_mb']:6.1f} MB" if "running" in r else ""
        print(
            f"  alone {r['process']:22} rss {r['rss_mb']:6.1f} MB  pss {r['pss_mb']:6.1f} MB"
            + extra
            + ("" if r.get("running", True) else "  (exited)")
        )
    if args.json:
        args.json.write_text(json.dumps({"run": tree, "alone": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

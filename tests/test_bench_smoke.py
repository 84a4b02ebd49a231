"""The benchmark runner still runs (not a timed test: it only checks that a figure comes out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.needs import missing

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runner_quick_reader(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # fmt: off
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "reader",
         "--json", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    # fmt: on
    assert done.returncode == 0, done.stderr
    assert "snapshot / wire" in done.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    assert data["reader"]["data"][0]["ratio"] > 0


def test_resident_memory_counts_a_shared_page_once() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from procstat import PAGE, resident_pages, tree_resident_mb

    idle = [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()"]
    children = [
        subprocess.Popen(idle, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            child.stdout.readline()  # the interpreter is up and waits
        a, b = (resident_pages(child.pid) for child in children)
        if not a:
            missing("physical frame numbers need root")
        together = tree_resident_mb([children[0].pid, children[0].pid, children[1].pid])
        shared = len(a & b) * PAGE / 2**20  # the same interpreter: libpython's pages
        assert shared > 2
        assert together == pytest.approx(len(a | b) * PAGE / 2**20, abs=0.1)  # each page once
    finally:
        for child in children:
            child.communicate(b"")


def test_writes_bench_counts_the_trees_writes(tmp_path: Path) -> None:
    # fmt: off
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "writes_bench.py"), "--duration", "3",
         "--warmup", "8", "--json", str(tmp_path / "w.json")],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
        env=os.environ | {"BMSGATE_HISTORY__ARCHIVE__COMMIT_INTERVAL": "1"},
    )
    # fmt: on
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "w.json").read_text())
    assert {"history", "reader"} <= set(data["mb_per_hour"])
    assert data["mb_per_hour"]["history"] > 0  # commits every second: the bytes are seen


def test_peers_bench_measures_bmsgate_on_a_board(tmp_path: Path) -> None:
    # bmsgate alone: the peers install from PyPI, which a test does not reach
    out = tmp_path / "peers.json"
    # fmt: off
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers.py"), "--peers", "bmsgate",
         "--protocols", "jk_uart", "--seconds", "4", "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    # fmt: on
    assert done.returncode == 0, done.stderr[-2000:]
    (r,) = json.loads(out.read_text())
    assert r["program"] == "bmsgate" and r["protocol"] == "jk_uart"
    # /proc counts CPU in 10 ms ticks per process: a few samples may all fall within one tick
    assert r["samples"] >= 2 and r["cpu_ms_per_sample"] is not None and r["cpu_ms_per_sample"] >= 0
    assert r["pss_mb"] > 10 and r["processes"] >= 2  # the supervisor, its services, Mosquitto
    # the board paces its bytes at the baud rate: no reading beats the wire
    assert r["wire"]["readings"] >= 1 and r["wire"]["ratio"] >= 0.95
    assert "reading / wire" in done.stdout

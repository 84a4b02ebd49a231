"""The benchmark runner still runs (not a timed test: it only checks that a figure comes out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runner_quick_reader(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "reader",
         "--json", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "snapshot / wire" in done.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    assert data["reader"]["data"][0]["ratio"] > 0

"""SIGKILL in the middle of a write, for every writer that keeps data: the data stays intact.

Each writer runs its real code in a forked process that writes new versions as fast as it can;
the process is killed with SIGKILL after a random few milliseconds, and the real loader then reads
what is on disk: it must be a whole version (never a torn file, never a damaged-file fallback),
and never older than the last version the writer had finished before the one it was killed in.
KILLS kills per writer. The history archive has its own kill test
(services/history/tests/test_archive.py::test_committed_writes_survive_a_kill).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.counts import COUNTS

KILLS = 40
HOST = r"""
import json, os, random, signal, sys, time
from datetime import UTC, datetime
from pathlib import Path

writer, folder, kills = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
progress = folder / "progress"  # the last version the writer finished, written after it


def finished() -> int:
    try:
        return int(progress.read_text() or 0)
    except (OSError, ValueError):
        return 0


if writer == "reader counters":
    from bmsgate_reader.counters import CounterStore
    from bmsgate_reader.logic import EnergyCounter

    store = CounterStore(folder / "reader")

    def write(v):
        store.save("p", EnergyCounter(energy_in=v, energy_out=v, charge_in=v, charge_out=v,
                                      last_ts=datetime.fromtimestamp(v, UTC)))

    def load():
        c = store.load("p")  # a damaged file is renamed *.damaged and the counter restarts at 0
        assert not list((folder / "reader").glob("*.damaged")), "damaged counter file"
        assert c.energy_in == c.energy_out == c.charge_in == c.charge_out, c
        return int(c.energy_in)

elif writer == "api password file":
    from bmsgate_api.auth import PasswordStore, hash_password, verify_password
    from bmsgate_common.durable import write_durably

    hashes = [hash_password(f"password-{i}") for i in range(4)]
    path = folder / "api" / "password"

    def write(v):
        write_durably(path, (hashes[v % 4] + "\n").encode())  # what PasswordStore.set writes

    def load():
        if not path.exists():
            return 0
        encoded = PasswordStore(path=path).current()
        assert encoded is not None, "password file unreadable"
        return next(i for i in range(4) if encoded == hashes[i])

    def fits(got, done):  # four hashes take turns: the finished one or the one after it
        return got in (done % 4, (done + 1) % 4)

elif writer == "config set":
    from bmsgate_common import config_file as cf

    path = folder / "bmsgate.yaml"

    def write(v):  # what `bmsgate config set api.title vN` does
        raw = cf.assign(cf.read_raw(path), "api.title", f"v{v}")
        cf.save(path, cf.assign(raw, "history.max_gap", 100 + v))

    def load():
        if not path.exists():
            return 0
        cfg = cf.validate(cf.read_raw(path, missing_ok=False), path)
        assert cfg.api.title == f"v{int(cfg.history.max_gap) - 100}", cfg.api.title
        return int(cfg.history.max_gap) - 100

elif writer == "influx buffer":
    from bmsgate_history.influx import DiskBuffer

    path = folder / "influx-buffer.sqlite"
    BATCH = 50

    def write(v):
        DiskBuffer(path, 10**9).push([f"bms,pack=p{v} soc={i} {v * 1000 + i}" for i in range(BATCH)])

    def load():
        if not path.exists():
            return 0
        buffer = DiskBuffer(path, 10**9)
        _, lines = buffer.peek(10**9)
        buffer.close()
        assert len(lines) % BATCH == 0, f"{len(lines)} points: a torn batch"
        for n, text in enumerate(lines):
            assert text == f"bms,pack=p{n // BATCH + 1} soc={n % BATCH} {(n // BATCH + 1) * 1000 + n % BATCH}", text
        return len(lines) // BATCH

fits = globals().get("fits") or (lambda got, done: got >= done)
rng = random.Random(13)
intact = 0
for _ in range(kills):
    start = max(load(), finished()) + 1
    pid = os.fork()
    if pid == 0:
        v = start
        while True:
            write(v)
            (folder / "progress.tmp").write_text(str(v))
            os.replace(folder / "progress.tmp", progress)  # a kill leaves the old or the new
            v += 1
    time.sleep(rng.uniform(0.002, 0.06))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    done = finished()
    got = load()
    assert fits(got, done), f"version {got} on disk, but {done} had been finished"
    intact += 1
print(json.dumps({"kills": kills, "intact": intact, "last": finished()}))
"""


@pytest.mark.parametrize(
    "writer", ["reader counters", "api password file", "config set", "influx buffer"]
)
def test_data_survives_sigkill_mid_write(tmp_path: Path, writer: str) -> None:
    # fmt: off
    run = subprocess.run(
        [sys.executable, "-c", HOST, writer, str(tmp_path), str(KILLS)],
        capture_output=True, text=True, timeout=120,
    )
    # fmt: on
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    COUNTS[f"sigkill mid-write, {writer}: kills"] += result["kills"]
    COUNTS[f"sigkill mid-write, {writer}: intact after restart"] += result["intact"]
    assert result["intact"] == KILLS
    assert result["last"] > 0  # the writer made progress between kills

"""Make the data directory of bmsgate 0.1.0 with that version's own code, for the upgrade test.

    .venv/bin/python -m tests.release.make_old_data

bmsgate 0.1.0 was never tagged; it is the commit OLD_COMMIT. Its tree is taken with
``git archive`` and run with this checkout's Python environment (its source shadows the installed
packages through PYTHONPATH): a simulated DALY board on a pty, ``bmsgate run`` with a
configuration in 0.1.0's keys (``history.timezone``, ``notifier.timezone``), InfluxDB enabled but
unreachable (its disk buffer fills), a password, a login, a wrong login, an API token, a tunnel
opened and closed, for long enough that the energy counters and 1-minute buckets are written.
The directory and what the test checks against go to tests/release/fixtures/v0.1.0/ (checked in,
so the test needs neither git history nor 80 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT = "f7d7be6"  # main when releases began: bmsgate 0.1.0
OUT = ROOT / "tests" / "release" / "fixtures" / "v0.1.0"
PASSWORD = "old version password"
RUN_FOR = 75.0  # [s] past SAVE_EVERY (60 s) of the energy counters and a 1-minute bucket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def old_tree(into: Path) -> Path:
    """OLD_COMMIT's files under ``into``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_COMMIT], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def old_env(tree: Path) -> dict[str, str]:
    """The environment that runs the old code: its sources ahead of the installed packages."""
    paths = [
        tree / "src",
        *sorted(tree.glob("packages/*/src")),
        *sorted(tree.glob("services/*/src")),
    ]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "BMSGATE_CONFIG": ""}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bmsgate-old-"))
    tree = old_tree(work / "tree")
    env = old_env(tree)
    check = subprocess.run(
        [sys.executable, "-c", "import bmsgate, sys; print(bmsgate.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert check.startswith(str(tree)), check  # the old code runs, not this checkout's
    link = work / "bms0"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bmsgate.cli",
            "simulate",
            "--protocol",
            "daly_classic",
            "--pty",
            "--link",
            str(link),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    sim.stdout.readline()
    data = work / "data"
    http, tunnel = free_port(), free_port()
    # fmt: off
    config = {
        "buses": [{"port": str(link), "protocol": "daly_classic", "poll_interval": 1,
                   "packs": [{"id": "garage", "name": "Garage", "nominal_capacity": 100}]}],
        "api": {"host": "127.0.0.1", "port": http, "mdns": False},
        "modbus": {"host": "127.0.0.1", "port": free_port()},
        "control": {"enabled": True},
        "tunnel": {"host": "127.0.0.1", "port": tunnel},
        "history": {"timezone": "Europe/Berlin", "archive": {"commit_interval": 0.5},
                    "influx": {"enabled": True, "url": f"http://127.0.0.1:{free_port()}",
                               "token": "old-influx-token", "flush_interval": 1}},
        "notifier": {"timezone": "Europe/Berlin", "latitude": 52.52, "longitude": 13.40},
        "data_dir": str(data),
    }
    # fmt: on
    cfg_file = work / "bmsgate.yaml"
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False))
    run = subprocess.Popen(
        [sys.executable, "-m", "bmsgate.cli", "run", "--config", str(cfg_file)], env=env, cwd=work
    )
    base = f"http://127.0.0.1:{http}"
    started = time.monotonic()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            while True:
                try:
                    if client.get("/healthz").json()["backbone"]:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            assert client.post("/api/auth/setup", json={"password": PASSWORD}).status_code == 204
            made = client.post("/api/auth/tokens", json={"name": "grafana"})
            assert made.status_code == 201, made.text
            token = made.json()["token"]
            while client.get("/api/packs/garage/tunnel").status_code != 200:
                time.sleep(0.5)
            opened = client.post("/api/packs/garage/tunnel", json={"action": "open", "minutes": 5})
            assert opened.status_code == 200, opened.text
            with socket.create_connection(("127.0.0.1", tunnel), timeout=5) as conn:
                conn.sendall(bytes.fromhex("a540900800000000000000007d"))
                conn.recv(64)
            closed = client.post("/api/packs/garage/tunnel", json={"action": "close"})
            assert closed.status_code == 200, closed.text
            assert client.post("/api/auth/logout").status_code == 204  # a revoked session
            client.cookies.clear()
            assert client.post("/api/auth/login", json={"password": "wrong!!!"}).status_code == 401
            time.sleep(max(0.0, RUN_FOR - (time.monotonic() - started)))
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(30)
        sim.terminate()
        sim.wait(10)
    shutil.rmtree(data / "run", ignore_errors=True)  # rebuilt at every start
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    archive = sqlite3.connect(data / "history" / "archive.sqlite")
    buffer = sqlite3.connect(data / "history" / "influx-buffer.sqlite")
    # fmt: off
    facts = {
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", OLD_COMMIT],
                                 capture_output=True, text=True, check=True).stdout.strip(),
        "password": PASSWORD,
        "token": token,
        "raw_rows": archive.execute("SELECT count(*) FROM raw").fetchone()[0],
        "minute_rows": archive.execute("SELECT count(*) FROM agg_1m").fetchone()[0],
        "last_ts": archive.execute("SELECT max(ts) FROM raw").fetchone()[0],
        "kv_keys": [r[0] for r in archive.execute("SELECT key FROM kv ORDER BY key")],
        "buffered_points": buffer.execute("SELECT count(*) FROM points").fetchone()[0],
        "counter": json.loads((data / "reader" / "energy-garage.json").read_text()),
        "files": files,
    }
    # fmt: on
    archive.close()
    buffer.close()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    shutil.copytree(data, OUT / "data")
    old = yaml.safe_load(cfg_file.read_text())
    old["data_dir"] = "DATA_DIR"  # the test puts its own paths and ports in
    old["buses"][0]["port"] = "BUS_PORT"
    (OUT / "bmsgate.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    (OUT / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

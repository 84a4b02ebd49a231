"""bmsgate 0.1.0's data directory and configuration run through this version: nothing lost,
nothing refused. The directory was made by 0.1.0's own code (tests/release/make_old_data.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate_common.settings import CONFIG_VERSION
from bmsgate_history.archive import LAYOUT
from tests.support.procs import Proc, find_mosquitto, start_simulator, wait_until
from tests.support.tree import run_argv

FIXTURE = Path(__file__).parent / "fixtures" / "v0.1.0"
FACTS = json.loads((FIXTURE / "facts.json").read_text())
pytestmark = pytest.mark.integration


def one(db: Path, sql: str) -> object:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_the_0_1_0_data_directory_runs_on_this_version(tmp_path: Path, procs: list[Proc]) -> None:
    assert find_mosquitto(), "mosquitto is needed (scripts/setup.sh test installs it)"
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data)
    sim, port = start_simulator(tmp_path, "daly_classic")
    procs.append(sim)
    old = yaml.safe_load((FIXTURE / "bmsgate.yaml").read_text())
    assert (
        old["history"]["timezone"] == old["notifier"]["timezone"]
    )  # 0.1.0's keys, kept as they are
    http = free_port()
    old["data_dir"], old["buses"][0]["port"] = str(data), port
    old["api"]["port"], old["modbus"]["port"], old["tunnel"]["port"] = (
        http,
        free_port(),
        free_port(),
    )
    old["history"]["influx"]["url"] = f"http://127.0.0.1:{free_port()}"  # still away
    config = tmp_path / "bmsgate.yaml"
    config.write_text(yaml.safe_dump(old, sort_keys=False))
    written = config.read_text()

    run = Proc("run", run_argv(config=config), tmp_path)
    procs.append(run)
    base = f"http://127.0.0.1:{http}"
    with httpx.Client(base_url=base, timeout=10) as client:

        def up() -> bool:
            try:
                return bool(client.get("/healthz").json()["backbone"])
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=40)
        # the 0.1.0 password and API token still work
        token = {"Authorization": f"Bearer {FACTS['token']}"}
        assert client.get("/api/settings").status_code == 401
        assert client.get("/api/settings", headers=token).status_code == 200
        assert (
            client.post("/api/auth/login", json={"password": FACTS["password"]}).status_code == 204
        )
        assert client.get("/api/settings").json()["timezone"] == "Europe/Berlin"

        # the energy counters go on from where 0.1.0 left them
        def state() -> dict | None:  # type: ignore[type-arg]
            got = client.get("/api/packs/garage/state")
            return got.json() if got.status_code == 200 else None

        now = wait_until(state, timeout=20)
        assert now["energy_out"] >= FACTS["counter"]["energy_out"] > 0
        # new samples are archived after the old ones
        archive = data / "history" / "archive.sqlite"
        wait_until(lambda: one(archive, "SELECT max(ts) FROM raw") > FACTS["last_ts"], timeout=20)
    assert run.stop(timeout=20) == 0
    log = run.log()

    # nothing refused: every service ran, none stopped on its data or its configuration
    assert "Traceback" not in log and "not restarting" not in log and "exited with code" not in log
    assert "'history.timezone' moved to the top-level 'timezone' (Europe/Berlin)" in log
    assert "'notifier.timezone' removed: the same as 'timezone'" in log
    assert f"archive.sqlite: layout 0 -> {len(LAYOUT)}, a copy of the old file first" in log
    assert config.read_text() == written  # a start reads an old file; `config migrate` rewrites it

    # nothing lost: every 0.1.0 row is there, the files are at the current layout, copies kept
    archive, buffer = data / "history" / "archive.sqlite", data / "history" / "influx-buffer.sqlite"
    assert (
        one(archive, f"SELECT count(*) FROM raw WHERE ts <= {FACTS['last_ts']}")
        == FACTS["raw_rows"]
    )
    assert one(archive, "SELECT count(*) FROM raw") > FACTS["raw_rows"]
    assert one(archive, "SELECT count(*) FROM agg_1m") >= FACTS["minute_rows"]
    assert one(archive, "PRAGMA user_version") == len(LAYOUT)
    # its rows read by PackState's names now (layout 2), the 0.1.0 values in them
    assert (
        one(archive, f"SELECT count(cell_voltages) FROM raw WHERE ts <= {FACTS['last_ts']}")
        == (FACTS["raw_rows"])
    )
    assert one(buffer, "SELECT count(*) FROM points") >= FACTS["buffered_points"]
    assert one(buffer, "PRAGMA user_version") == 1
    copies = sorted(p.name for p in (data / "history" / "backups").iterdir())
    assert [c.split(".")[:2] for c in copies] == [
        ["archive", "layout0"],
        ["influx-buffer", "layout0"],
    ]
    assert (
        one(data / "history" / "backups" / copies[0], "SELECT count(*) FROM raw")
        == FACTS["raw_rows"]
    )
    for name in FACTS["files"]:  # every file 0.1.0 wrote is still there
        assert (data / name).is_file(), name
    sessions = (data / "tunnel" / "sessions.jsonl").read_text()
    assert sessions.startswith((FIXTURE / "data" / "tunnel" / "sessions.jsonl").read_text())

    # `bmsgate config migrate` writes the file in the current format; it loads as before
    done = Proc(
        "migrate",
        [sys.executable, "-m", "bmsgate.cli", "config", "--config", str(config), "migrate"],
        tmp_path,
    )
    assert done.process.wait(30) == 0, done.log()
    migrated = yaml.safe_load(config.read_text())
    assert migrated["version"] == CONFIG_VERSION and migrated["timezone"] == "Europe/Berlin"
    assert "timezone" not in migrated["history"] and "timezone" not in migrated["notifier"]

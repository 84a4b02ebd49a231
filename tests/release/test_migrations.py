"""Layout versions of the SQLite files and the configuration file's format: forward, never back."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bmsgate_common import config_file as cf
from bmsgate_common.config_migrate import FORMAT_1_MOVES, migrate_config
from bmsgate_common.schema_version import NewerFile, migrate, statements
from bmsgate_common.settings import CONFIG_VERSION, MOVED_KEYS, ConfigError, Settings, load_settings
from bmsgate_history.archive import LAYOUT, _schema, connect
from bmsgate_history.influx import BUFFER_LAYOUT, DiskBuffer

BMSGATE = Path(sys.executable).parent / "bmsgate"


def old_archive(path: Path, rows: int = 50) -> None:
    """An archive as bmsgate 0.1.0 left it: its tables, rows, no layout version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_schema())
    conn.execute("INSERT INTO packs (id, name) VALUES (1, 'garage')")
    conn.executemany(
        "INSERT INTO raw (pack, ts, soc) VALUES (1, ?, 50)", [(i,) for i in range(rows)]
    )
    conn.close()


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_a_new_archive_and_buffer_are_made_at_the_current_layout(tmp_path: Path) -> None:
    connect(tmp_path / "archive.sqlite").close()
    DiskBuffer(tmp_path / "buffer.sqlite", 10).close()
    assert version_of(tmp_path / "archive.sqlite") == len(LAYOUT) >= 1
    assert version_of(tmp_path / "buffer.sqlite") == len(BUFFER_LAYOUT) >= 1
    assert not (tmp_path / "backups").exists()  # nothing to keep


def test_an_old_archive_is_copied_then_migrated_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history" / "archive.sqlite"
    old_archive(path)
    with caplog.at_level(logging.WARNING):
        conn = connect(path)
    assert conn.execute("SELECT count(*) FROM raw").fetchone()[0] == 50
    conn.close()
    assert version_of(path) == len(LAYOUT)
    [copy] = (path.parent / "backups").iterdir()
    assert copy.name.startswith("archive.layout0.") and copy.suffix == ".sqlite"
    assert version_of(copy) == 0
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM raw").fetchone()[0] == 50
    assert [r.getMessage() for r in caplog.records] == [
        f"archive.sqlite: layout 0 -> {len(LAYOUT)}, a copy of the old file first: {copy}"
    ]
    connect(path).close()  # once current, nothing more happens
    assert len(list((path.parent / "backups").iterdir())) == 1


def test_a_failing_step_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "archive.sqlite"
    old_archive(path)

    def step_2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE raw ADD COLUMN extra REAL")
        conn.execute("UPDATE raw SET extra = 1")
        raise sqlite3.OperationalError("disk I/O error")  # e.g. the disk went away mid-way

    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, path, (*LAYOUT, step_2))
    assert version_of(path) == 0  # not even the first step's stamp stayed
    columns = [r[1] for r in conn.execute("PRAGMA table_info(raw)")]
    assert "extra" not in columns and conn.execute("SELECT count(*) FROM raw").fetchone()[0] == 50
    conn.close()
    assert len(list((tmp_path / "backups").iterdir())) == 1  # the copy came first


def test_statements_split_a_schema_script() -> None:
    parts = statements(_schema())
    assert len(parts) == 5 and all(p.startswith("CREATE TABLE IF NOT EXISTS") for p in parts)


def newer_archive(data: Path) -> Path:
    path = data / "history" / "archive.sqlite"
    connect(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(LAYOUT) + 1}")
    conn.commit()
    conn.close()
    return path


def test_a_downgrade_refuses_a_newer_archive_and_leaves_it_alone(tmp_path: Path) -> None:
    path = newer_archive(tmp_path)
    before = path.read_bytes()
    newer = f"layout version {len(LAYOUT) + 1}, written by a newer bmsgate; this one"
    with pytest.raises(NewerFile, match=newer):
        connect(path)
    assert path.read_bytes() == before and not (path.parent / "backups").exists()


def test_the_history_service_refuses_a_newer_archive_in_one_line(tmp_path: Path) -> None:
    newer_archive(tmp_path / "data")
    config = tmp_path / "bmsgate.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "mqtt": {"port": 1}}))
    done = subprocess.run(
        [BMSGATE, "history", "--config", config], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2  # the user's to fix: `bmsgate run` does not restart it in a loop
    assert done.stderr.count("\n") == 1, done.stderr
    assert "written by a newer bmsgate" in done.stderr and "data_dir/backups" in done.stderr


OLD_CONFIG = {
    "history": {"timezone": "Europe/Berlin", "max_gap": 60},
    "notifier": {"timezone": "Europe/Paris"},
    "log_level": "INFO",
}


def test_old_keys_are_migrated_one_line_each() -> None:
    data, changes = migrate_config(OLD_CONFIG)
    assert data == {
        "version": CONFIG_VERSION,
        "timezone": "Europe/Berlin",
        "history": {"max_gap": 60},
        "log_level": "INFO",
    }
    assert changes == [
        "'history.timezone' moved to the top-level 'timezone' (Europe/Berlin)",
        "'notifier.timezone' (Europe/Paris) removed: the top-level 'timezone' is Europe/Berlin",
    ]
    assert OLD_CONFIG["history"] == {"timezone": "Europe/Berlin", "max_gap": 60}  # untouched
    assert migrate_config(data) == (data, [])
    assert migrate_config({"log_level": "INFO"}) == ({"log_level": "INFO"}, [])


def test_every_moved_key_has_a_migration_step() -> None:
    moved = {(section, key): new for section, key, new in FORMAT_1_MOVES}
    assert moved == MOVED_KEYS  # a key moved later needs a step of its own (docs/release.md)
    data, changes = migrate_config(
        {"api": {"stale_after": 30}, "modbus": {"stale_after": 30, "port": 5020}}
    )
    assert data == {"version": CONFIG_VERSION, "stale_after": 30, "modbus": {"port": 5020}}
    assert len(changes) == 2
    load_settings_data = Settings.model_validate(data)
    assert load_settings_data.stale_after == 30


@pytest.mark.parametrize("bad", [CONFIG_VERSION + 1, -1, "one", True])
def test_a_newer_or_bad_format_is_refused_in_one_line(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "bmsgate.yaml"
    path.write_text(yaml.safe_dump({"version": bad}))
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "\n" not in str(err.value) and "version" in str(err.value)


def test_every_start_reads_an_old_file_and_logs_each_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bmsgate.yaml"
    path.write_text(yaml.safe_dump(OLD_CONFIG))
    with caplog.at_level(logging.WARNING):
        cfg = load_settings(path)
    assert cfg.timezone == "Europe/Berlin" and cfg.history.max_gap == 60
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("bmsgate config migrate writes it" in x for x in lines)
    assert yaml.safe_load(path.read_text()) == OLD_CONFIG  # a start does not rewrite the file


def test_config_migrate_writes_it_back_keeping_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "bmsgate.yaml"
    path.write_text(yaml.safe_dump(OLD_CONFIG))
    done = subprocess.run(
        [BMSGATE, "config", "--config", path, "migrate"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}: 'history.timezone' moved to the top-level 'timezone' (Europe/Berlin)",
        f"{path}: 'notifier.timezone' (Europe/Paris) removed: the top-level 'timezone' is Europe/Berlin",
        f"{path}: written in format {CONFIG_VERSION}; the old file is {path}.v0",
    ]
    assert yaml.safe_load(path.read_text())["version"] == CONFIG_VERSION
    assert yaml.safe_load((tmp_path / "bmsgate.yaml.v0").read_text()) == OLD_CONFIG
    again = subprocess.run(
        [BMSGATE, "config", "--config", path, "migrate"], capture_output=True, text=True
    )
    assert again.stdout == f"{path}: already in the current format (version {CONFIG_VERSION})\n"


def test_an_old_file_restored_or_edited_is_written_migrated(tmp_path: Path) -> None:
    path = tmp_path / "bmsgate.yaml"
    cf.save(path, dict(OLD_CONFIG))  # the web UI's "Restore a file…" with a 0.1.0 backup
    assert yaml.safe_load(path.read_text())["timezone"] == "Europe/Berlin"
    path.write_text(yaml.safe_dump(OLD_CONFIG))
    cf.save(path, cf.assign(cf.read_raw(path), "log_level", "DEBUG"))  # bmsgate config set
    written = yaml.safe_load(path.read_text())
    assert written["log_level"] == "DEBUG" and "timezone" not in written["history"]


def test_the_archive_tools_refuse_a_newer_archive_in_one_line(tmp_path: Path) -> None:
    newer_archive(tmp_path / "data")
    config = tmp_path / "bmsgate.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    done = subprocess.run(
        [BMSGATE, "history", "--config", config, "packs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "written by a newer bmsgate" in done.stderr

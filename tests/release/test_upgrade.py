"""``bmsgate upgrade`` and /api/version: the version, the way up for each install, a backup first."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from bmsgate_api.app import create_app, make_context
from bmsgate_api.store import PackStore
from bmsgate_common.settings import Settings
from bmsgate_common.upgrade import backup, how_to_upgrade, install_method
from bmsgate_common.version import VERSION

BMSGATE = Path(sys.executable).parent / "bmsgate"


@pytest.mark.parametrize(
    ("environ", "marker", "method", "command"),
    [
        ({"BMSGATE_INSTALL": "addon"}, None, "addon", None),
        ({"BMSGATE_INSTALL": "container"}, None, "container", "docker compose pull"),
        ({}, "uv-receipt.toml", "uv-tool", "uv tool upgrade bmsgate"),
        ({}, "pipx_metadata.json", "pipx", "pipx upgrade bmsgate"),
        ({}, None, "pip", "-m pip install --upgrade bmsgate"),
    ],
)
def test_the_way_it_was_installed_gives_the_way_up(
    tmp_path: Path, environ: dict[str, str], marker: str | None, method: str, command: str | None
) -> None:
    prefix = tmp_path / "venv"  # the environment, with the file its installer leaves there
    prefix.mkdir()
    if marker:
        (prefix / marker).write_text("")
    outside_git = prefix / "lib" / "site-packages" / "bmsgate_common"
    got = install_method(environ, str(prefix), outside_git)
    assert got == method
    plan = how_to_upgrade(got, python="/opt/bmsgate-venv/bin/python")
    assert plan.version == VERSION
    if command is None:
        assert not plan.commands and "Add-ons" in plan.note
    else:
        assert any(command in c for c in plan.commands), plan.commands


def test_a_checkout_is_upgraded_with_git(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    package = tmp_path / "repo" / "packages" / "common" / "src" / "bmsgate_common"
    assert install_method({}, "/repo/.venv", package) == "git"
    assert how_to_upgrade("git").commands == ("git pull --ff-only", "scripts/setup.sh run")


def data_dir(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    (data / "api").mkdir(parents=True)
    (data / "api" / "tokens.json").write_text('{"tokens": []}')
    (data / "run").mkdir()
    (data / "run" / "mosquitto.conf").write_text("rebuilt at every start")
    (data / "history").mkdir()
    conn = sqlite3.connect(data / "history" / "archive.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE raw (ts INTEGER)")
    conn.executemany("INSERT INTO raw VALUES (?)", [(i,) for i in range(1000)])
    config = tmp_path / "bmsgate.yaml"
    config.write_text("log_level: INFO\n")
    return data, config


def test_the_backup_holds_the_configuration_and_a_consistent_archive(tmp_path: Path) -> None:
    data, config = data_dir(tmp_path)
    writer = sqlite3.connect(
        data / "history" / "archive.sqlite", isolation_level=None, check_same_thread=False
    )
    writer.execute("PRAGMA journal_mode=WAL")
    stop = threading.Event()

    def write() -> None:  # the history service keeps writing while the backup is made
        n = 1000
        while not stop.is_set():
            writer.execute("INSERT INTO raw VALUES (?)", (n,))
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        folder = backup(data, config)
        second = backup(data, config)
    finally:
        stop.set()
        thread.join()
    assert folder != second and folder.parent == second.parent == data / "backups"
    assert folder.name.startswith(f"{VERSION}-")
    assert (folder / "bmsgate.yaml").read_text() == "log_level: INFO\n"
    assert (folder / "data" / "api" / "tokens.json").read_text() == '{"tokens": []}'
    assert not (folder / "data" / "run").exists() and not (folder / "data" / "backups").exists()
    copy = sqlite3.connect(folder / "data" / "history" / "archive.sqlite")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    count, top = copy.execute("SELECT count(*), max(ts) FROM raw").fetchone()
    assert count == top + 1 >= 1000  # every row up to the moment of the copy, none torn
    written = writer.execute("SELECT count(*) FROM raw").fetchone()[0]
    assert written > 1000  # the writer did write meanwhile
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_cli_upgrade_backs_up_then_tells_the_way(tmp_path: Path) -> None:
    data, config = data_dir(tmp_path)
    # fmt: off
    out = subprocess.run(
        [BMSGATE, "upgrade", "--config", config, "--data-dir", data],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    # fmt: on
    lines = out.stdout.splitlines()
    assert lines[0] == f"bmsgate {VERSION}, installed as: git"  # this checkout
    folder = Path(lines[1].split(": ", 1)[1])
    assert (folder / "bmsgate.yaml").is_file() and (folder / "data" / "history").is_dir()
    assert "  git pull --ff-only" in lines


def test_cli_upgrade_with_a_bad_configuration_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bmsgate.yaml"
    config.write_text("nonsense: 1\n")
    out = subprocess.run([BMSGATE, "upgrade", "--config", config], capture_output=True, text=True)
    assert out.returncode == 2 and not (tmp_path / "data").exists()
    assert out.stderr.count("\n") == 1 and "unknown key 'nonsense'" in out.stderr


async def test_the_api_tells_the_version_and_backs_up_for_a_logged_in_user(tmp_path: Path) -> None:
    data, config = data_dir(tmp_path)
    settings = Settings.model_validate({"data_dir": str(data)})
    ctx = make_context(PackStore(), settings, None, persist=True)
    ctx.config_file = config
    app = create_app(PackStore(), settings=settings, ctx=ctx)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        info = (await http.get("/api/version")).json()
        assert info["version"] == VERSION and info["install"] == "git"
        assert info["commands"] == ["git pull --ff-only", "scripts/setup.sh run"]
        assert app.version == VERSION
        refused = await http.post("/api/upgrade/backup")
        assert refused.status_code == 401 and not (data / "backups").exists()
        assert (
            await http.post("/api/auth/setup", json={"password": "a long password"})
        ).status_code == 204
        made = await http.post("/api/upgrade/backup")
        assert made.status_code == 200, made.text
        folder = Path(made.json()["path"])
        assert (folder / "bmsgate.yaml").is_file()
        assert (folder / "data" / "api" / "password").is_file()  # the hash, set just now

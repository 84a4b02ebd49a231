"""How this bmsgate was installed, how to get a newer one that way, and the backup made first.

Used by ``bmsgate upgrade`` and the web UI's upgrade endpoint. Installing is left to the tool that
installed bmsgate (uv, pipx, pip, git, Docker Compose, the Home Assistant Supervisor): bmsgate tells
the command and makes the backup; the new version migrates the data forward when it starts
(docs/release.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from .schema_version import copy_to
from .settings import INSTALL_ENV
from .version import VERSION

Method = Literal["addon", "container", "git", "uv-tool", "pipx", "pip"]
BACKUPS: Final = "backups"  # under data_dir
SKIPPED: Final = frozenset({BACKUPS, "run"})  # earlier backups; run/ is rebuilt at every start
SQLITE_SUFFIX: Final = ".sqlite"


@dataclass(frozen=True)
class Upgrade:
    """The installed version, how it was installed and how to upgrade it that way."""

    version: str
    method: Method
    commands: tuple[str, ...]
    note: str


def install_method(
    environ: Mapping[str, str] | None = None,
    prefix: str | None = None,
    package_dir: Path | None = None,
) -> Method:
    """How this bmsgate was installed, from the image's marker, the source path or the venv."""
    environ = os.environ if environ is None else environ
    marker = environ.get(INSTALL_ENV, "")
    if marker in ("addon", "container"):
        return marker  # type: ignore[return-value]  # checked just above
    package_dir = package_dir or Path(__file__).resolve().parent
    if any((parent / ".git").exists() for parent in package_dir.parents):
        return "git"  # an editable install of a checkout (./run.sh, scripts/setup.sh)
    where = Path(prefix or sys.prefix)
    if (where / "uv-receipt.toml").is_file():  # written by `uv tool install` into its environment
        return "uv-tool"
    if (where / "pipx_metadata.json").is_file():  # written by pipx into each of its environments
        return "pipx"
    return "pip"


def how_to_upgrade(method: Method, python: str | None = None) -> Upgrade:
    """The commands that install a newer bmsgate for ``method``, and what to know about them."""
    python = python or sys.executable
    restart = "then restart bmsgate; it migrates its data when it starts"
    plans: dict[Method, tuple[tuple[str, ...], str]] = {
        "uv-tool": (("uv tool upgrade bmsgate",), restart),
        "pipx": (("pipx upgrade bmsgate",), restart),
        "pip": ((f"{python} -m pip install --upgrade bmsgate",), restart),
        "git": (
            ("git pull --ff-only", "scripts/setup.sh run"),
            "in the checkout, then restart bmsgate (./run.sh, or systemctl restart bmsgate); "
            "it migrates its data when it starts",
        ),
        "container": (
            ("docker compose pull", "docker compose up -d --wait"),
            "in the folder of docker-compose.yml; images built from a checkout: "
            "git pull --ff-only && docker compose up -d --build --wait",
        ),
        "addon": (
            (),
            "Home Assistant: Settings → Add-ons → bmsgate → Update (tick the backup offered)",
        ),
    }
    commands, note = plans[method]
    return Upgrade(VERSION, method, commands, note)


def backup(data_dir: Path, config_file: Path | None, now: datetime | None = None) -> Path:
    """Copy the configuration file and every data file into data_dir/backups/<version>-<UTC time>.

    SQLite files go through SQLite's online backup, so a service writing them meanwhile still
    gives a consistent copy. Returns the folder; an OSError or sqlite3.Error leaves the data as
    it was (the caller names the problem).
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    (data_dir / BACKUPS).mkdir(parents=True, exist_ok=True)
    target = data_dir / BACKUPS / f"{VERSION}-{stamp}"
    n = 1
    while True:  # two backups within a second get their own folders
        try:
            target.mkdir()
            break
        except FileExistsError:
            n += 1
            target = data_dir / BACKUPS / f"{VERSION}-{stamp}-{n}"
    target.chmod(0o700)  # the configuration and the password hash are private
    if config_file is not None and config_file.is_file():
        shutil.copy2(config_file, target / config_file.name)
    if data_dir.is_dir():
        for path in sorted(data_dir.rglob("*")):
            relative = path.relative_to(data_dir)
            # the migrations' own copies (history/backups) are old data, not this version's
            if relative.parts[0] in SKIPPED or BACKUPS in relative.parts or not path.is_file():
                continue
            copy = target / "data" / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == SQLITE_SUFFIX:
                copy_sqlite(path, copy)
            elif not path.name.endswith((f"{SQLITE_SUFFIX}-wal", f"{SQLITE_SUFFIX}-shm")):
                shutil.copy2(path, copy)
    return target


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (its WAL included) while others may write it."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        copy_to(src, target)
    finally:
        src.close()

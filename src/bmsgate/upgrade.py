"""``bmsgate upgrade``: the installed version, a backup of configuration and data, the way up."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from bmsgate_common.config_file import config_path
from bmsgate_common.service import USER_ERROR
from bmsgate_common.settings import ConfigError, load_settings
from bmsgate_common.upgrade import backup, how_to_upgrade, install_method


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bmsgate upgrade``."""
    parser.add_argument("--config", help="YAML configuration file (default: $BMSGATE_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="where services keep their data")
    parser.add_argument(
        "--no-backup", action="store_true", help="only show the version and the commands"
    )


def command(args: argparse.Namespace) -> int:
    """Back up, then say how to install a newer bmsgate for the way this one was installed."""
    path = config_path(args.config)
    overrides = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    try:
        cfg = load_settings(path if path.exists() else None, **overrides)
    except ConfigError as err:
        sys.stderr.write(f"bmsgate upgrade: {err}\n")
        return USER_ERROR
    plan = how_to_upgrade(install_method())
    sys.stdout.write(f"bmsgate {plan.version}, installed as: {plan.method}\n")
    if not args.no_backup:
        try:
            folder = backup(cfg.data_dir, path if path.exists() else None)
        except (OSError, sqlite3.Error) as err:
            sys.stderr.write(f"bmsgate upgrade: the backup failed, nothing changed: {err}\n")
            return 1
        sys.stdout.write(f"backup of the configuration and data: {folder}\n")
    sys.stdout.write("to upgrade:\n")
    for line in plan.commands:
        sys.stdout.write(f"  {line}\n")
    sys.stdout.write(f"  ({plan.note})\n")
    return 0

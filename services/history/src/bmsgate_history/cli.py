"""``python -m bmsgate_history export|delete|packs``: the archive's files and deletion by hand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from bmsgate_common.schema_version import NewerFile
from bmsgate_common.service import USER_ERROR
from bmsgate_common.settings import ConfigError, load_settings
from bmsgate_common.timezones import site_zone

from .archive import Archive, Store
from .export import ExportError, check_pack, export_day, export_month
from .sample import to_ms
from .service import WriterBusy, archive_path, hold_writer

COMMANDS = ("export", "delete", "packs")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bmsgate_history")
    parser.add_argument("--config", help="YAML configuration file (default: $BMSGATE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="CSV of a day, or a zip of a month's days")
    export.add_argument("--pack", required=True)
    when = export.add_mutually_exclusive_group(required=True)
    when.add_argument("--day", type=date.fromisoformat, help="YYYY-MM-DD (local day)")
    when.add_argument("--month", help="YYYY-MM")
    export.add_argument("--out", type=Path, default=Path("."), help="folder (default: here)")
    delete = sub.add_parser("delete", help="delete a pack's data in [from, to)")
    delete.add_argument("--pack", required=True)
    delete.add_argument("--from", dest="start", required=True, help="ISO time, e.g. 2024-03-01")
    delete.add_argument("--to", dest="end", required=True, help="ISO time (exclusive)")
    delete.add_argument("--yes", action="store_true", help="really delete")
    sub.add_parser("packs", help="list the packs in the archive")
    return parser


def _instant(text: str, tz: object) -> int:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)  # type: ignore[arg-type]
    return to_ms(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and exit code 2."""
    args = _parser().parse_args(argv)
    try:
        cfg = load_settings(args.config)
    except ConfigError as err:
        sys.stderr.write(f"bmsgate history: {err}\n")
        return USER_ERROR
    tz = site_zone(cfg)
    path = archive_path(cfg)
    if not path.exists():
        sys.stderr.write(f"bmsgate history: no archive at {path}\n")
        return USER_ERROR
    try:
        if args.command == "packs":
            store = Store(path)
            sys.stdout.write("".join(f"{name}\n" for name in store.packs()))
            store.close()
        elif args.command == "export":
            check_pack(args.pack)
            if not args.out.is_dir():
                raise ExportError(f"no folder {args.out}")
            store = Store(path)
            if args.day:
                out = export_day(store, args.pack, args.day, tz, args.out)
            else:
                year, month = (int(x) for x in args.month.split("-"))
                if not 1 <= month <= 12:
                    raise ValueError("month must be 01..12")
                out = export_month(store, args.pack, year, month, tz, args.out)
            store.close()
            sys.stdout.write(f"{out}\n")
        else:
            check_pack(args.pack)
            start, end = _instant(args.start, tz), _instant(args.end, tz)
            if end <= start:
                raise ValueError("--to must be after --from")
            if not args.yes:
                sys.stderr.write("bmsgate history: add --yes to delete\n")
                return USER_ERROR
            try:
                writer = hold_writer(cfg)
            except WriterBusy:
                sys.stderr.write(
                    "bmsgate history: the history service is running and writes the archive: "
                    "delete through it (web UI, or DELETE /api/packs/<pack>/days/<day>), or stop "
                    "it first\n"
                )
                return USER_ERROR
            with writer:
                archive = Archive(path, cfg.history.archive, cfg.history.max_gap)
                n = archive.delete_range(args.pack, start, end)
                archive.close()
            sys.stdout.write(f"deleted {n} samples of {args.pack}\n")
    except (ExportError, ValueError, NewerFile) as err:
        sys.stderr.write(f"bmsgate history: {err}\n")
        return USER_ERROR
    return 0

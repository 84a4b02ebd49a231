"""``python -m bmsgate_history [--config FILE]``: the service; ``export|delete|packs``: tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings


async def _run(cfg: Settings, _: argparse.Namespace) -> None:
    from .service import run_history

    await run_history(cfg)


def _files_readable(cfg: Settings, _: argparse.Namespace) -> str | None:
    """Refuse, in one line and before connecting, files a newer bmsgate wrote (a downgrade)."""
    from bmsgate_common.schema_version import newer_problem

    from .archive import LAYOUT
    from .influx import BUFFER_LAYOUT
    from .service import archive_path, buffer_path

    return newer_problem(archive_path(cfg), LAYOUT) or newer_problem(
        buffer_path(cfg), BUFFER_LAYOUT
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service until stopped, or one archive command."""
    args = list(sys.argv[1:] if argv is None else argv)
    from .cli import COMMANDS

    if any(a in COMMANDS for a in args[:3]):
        from .cli import main as cli_main

        return cli_main(args)
    return service_main("history", _run, args, check=_files_readable)


if __name__ == "__main__":
    sys.exit(main())

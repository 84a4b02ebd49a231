"""``python -m bmsgate_reader [--config FILE] [--bus N]``: the reader container's entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bus", type=int, default=0, help="index in 'buses' (default 0)")


def _check(cfg: Settings, args: argparse.Namespace) -> str | None:
    if not 0 <= args.bus < len(cfg.buses):
        return f"no bus {args.bus} in 'buses' ({len(cfg.buses)} configured)"
    return None


async def _run(cfg: Settings, args: argparse.Namespace) -> None:
    from .service import run_reader

    await run_reader(cfg, args.bus)


def main(argv: Sequence[str] | None = None) -> int:
    """Poll the bus until stopped."""
    return service_main("reader", _run, argv, add_arguments=_arguments, check=_check)


if __name__ == "__main__":
    sys.exit(main())

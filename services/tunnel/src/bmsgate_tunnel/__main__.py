"""``python -m bmsgate_tunnel [--config FILE]``: the tunnel container's entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings

from .logic import config_problem


def _check(cfg: Settings, args: argparse.Namespace) -> str | None:
    return config_problem(cfg)


async def _run(cfg: Settings, args: argparse.Namespace) -> None:
    from .service import run_tunnel

    await run_tunnel(cfg)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Open and close a tunnel with: bmsgate tunnel open|close|status PACK"


def main(argv: Sequence[str] | None = None) -> int:
    """Keep every bus's tunnel (closed until opened) until stopped."""
    return service_main("tunnel", _run, argv, add_arguments=_arguments, check=_check)


if __name__ == "__main__":
    sys.exit(main())

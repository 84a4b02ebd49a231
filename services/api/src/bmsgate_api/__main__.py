"""``python -m bmsgate_api [--config FILE]``: the API container's entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings


async def _run(cfg: Settings, _: argparse.Namespace) -> None:
    from .service import run_api

    await run_api(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stopped."""
    return service_main("api", _run, argv)


if __name__ == "__main__":
    sys.exit(main())

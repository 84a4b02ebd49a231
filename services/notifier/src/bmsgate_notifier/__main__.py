"""``python -m bmsgate_notifier``: alarms, failures and daily reports through Apprise."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings


async def _run(cfg: Settings, _: argparse.Namespace) -> None:
    from .service import run_notifier

    await run_notifier(cfg)


def _check(cfg: Settings, _: argparse.Namespace) -> str | None:
    from .service import check_config

    return check_config(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service until stopped."""
    return service_main("notifier", _run, argv, check=_check)


if __name__ == "__main__":
    sys.exit(main())

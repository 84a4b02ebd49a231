"""``python -m bmsgate_modbus [--config FILE]``: the Modbus container's entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import USER_ERROR, service_main
from bmsgate_common.settings import Settings

from .logic import config_problem
from .server import ListenError


def _check(cfg: Settings, args: argparse.Namespace) -> str | None:
    return config_problem(cfg)


async def _run(cfg: Settings, args: argparse.Namespace) -> None:
    from .service import run_modbus

    await run_modbus(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the register map and push values until stopped.

    Exit 2 when the port can never be bound as configured (no privilege, no such address; a
    supervisor should not restart), 1 when it is in use (it may come free).
    """
    try:
        return service_main("modbus", _run, argv, check=_check)
    except ListenError as err:
        print(f"bmsgate modbus: {err}", file=sys.stderr)  # noqa: T201
        return USER_ERROR if err.lasting else 1


if __name__ == "__main__":
    sys.exit(main())

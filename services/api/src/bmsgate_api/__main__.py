"""``python -m bmsgate_api [--config FILE]``: the API; ``hash-password`` for api.password_hash."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import USER_ERROR, service_main
from bmsgate_common.settings import CONFIG_ENV, Settings


async def _run(cfg: Settings, args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from .service import run_api

    edit = args.edit_config or args.config or os.environ.get(CONFIG_ENV)
    await run_api(cfg, Path(edit) if edit else None, supervised=args.edit_config is not None)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--edit-config",
        metavar="FILE",
        help="the configuration file the settings and setup pages write (default: --config)",
    )


def hash_password_main() -> int:
    """Read a password (twice at a terminal, else one line of stdin) and print its scrypt hash."""
    from .auth import PasswordError, hash_password, read_new_password

    try:
        sys.stdout.write(hash_password(read_new_password("New password: ")) + "\n")
    except PasswordError as err:
        sys.stderr.write(f"bmsgate api: {err}\n")
        return USER_ERROR
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stopped, or print a password hash for api.password_hash."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hash-password"]:
        return hash_password_main()
    return service_main("api", _run, argv, add_arguments=_arguments)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bmsgate_api [--config FILE]``: the API; ``hash-password`` for api.password_hash."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings


async def _run(cfg: Settings, _: argparse.Namespace) -> None:
    from .service import run_api

    await run_api(cfg)


def hash_password_main() -> int:
    """Read a password (twice at a terminal, else one line of stdin) and print its scrypt hash."""
    from .auth import PasswordError, check_new_password, hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            sys.stderr.write("bmsgate api: the passwords differ\n")
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        sys.stdout.write(hash_password(check_new_password(password)) + "\n")
    except PasswordError as err:
        sys.stderr.write(f"bmsgate api: {err}\n")
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stopped, or print a password hash for api.password_hash."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hash-password"]:
        return hash_password_main()
    return service_main("api", _run, argv)


if __name__ == "__main__":
    sys.exit(main())

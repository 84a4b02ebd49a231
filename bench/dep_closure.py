"""Each service's locked dependency closure: how many packages, and their size installed.

Run: uv run python bench/dep_closure.py [--uv .tools/bin/uv]

The closure is what ``uv export --package <svc> --frozen --no-dev`` installs for that service alone
(the lockfile, not the environment). The size of a third-party package is the sum of the files its
``RECORD`` lists in this checkout's ``.venv`` (what a service image would copy into site-packages);
a workspace member counts the size of its ``src/`` tree. A service image is roughly a Python base
image plus this closure, so the difference between two closures is the difference between images.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("api", "history", "modbus", "notifier", "publisher", "reader", "tunnel")
_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
_EDITABLE = re.compile(r"^-e \./(.+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(uv: str, service: str) -> tuple[list[str], list[str]]:
    """(third-party names, workspace paths) in the locked closure of one service."""
    out = subprocess.run(
        [uv, "export", "--package", f"bmsgate-{service}", "--frozen", "--no-dev", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    third, members = [], []
    for line in out.splitlines():
        if m := _REQ.match(line):
            third.append(_norm(m.group(1)))
        elif m := _EDITABLE.match(line):
            members.append(m.group(1))
    return third, members


def installed_bytes(name: str) -> int:
    """Bytes of the files the installed distribution ``name`` lists in its RECORD."""
    dist = metadata.distribution(name)
    total = 0
    for file in dist.files or ():
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (a workspace member's source), caches excluded."""
    return sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def main() -> None:
    """Print one row per service: packages, MB installed, workspace members it pulls in."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uv", default=str(ROOT / ".tools/bin/uv"))
    args = parser.parse_args()
    print("| service | third-party packages | MB installed | workspace members |")
    print("|---|---|---|---|")
    for service in SERVICES:
        third, members = closure(args.uv, service)
        size = sum(installed_bytes(n) for n in third)
        size += sum(tree_bytes(ROOT / m / "src") for m in members)
        names = ", ".join(Path(m).name for m in members)
        print(f"| {service} | {len(third)} | {size / 1e6:.1f} | {names} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Set bmsgate's version in every pyproject.toml at once, then re-lock (docs/release.md).

Usage: .venv/bin/python scripts/set_version.py 0.2.0

Every distribution carries the same version and bmsgate pins each bmsgate-* package to it, so
``pip install --upgrade bmsgate`` (or ``uv tool upgrade``) always brings the whole set.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent


def projects() -> list[Path]:
    """The root pyproject.toml and every workspace member's."""
    return [
        ROOT / "pyproject.toml",
        *sorted(ROOT.glob("packages/*/pyproject.toml")),
        *sorted(ROOT.glob("services/*/pyproject.toml")),
    ]


def set_version(text: str, new: str) -> str:
    """``text`` (a pyproject.toml) with its project version and bmsgate-* pins set to ``new``."""
    text = re.sub(r'(?m)^version = "[^"]*"$', f'version = "{new}"', text, count=1)
    return re.sub(r'"(bmsgate-[a-z]+)==[^"]*"', rf'"\1=={new}"', text)


def main(argv: list[str]) -> int:
    """Rewrite the files, then update uv.lock."""
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        new = str(Version(argv[0]))
    except InvalidVersion:
        print(f"set_version: {argv[0]!r} is not a PEP 440 version", file=sys.stderr)
        return 2
    for path in projects():
        path.write_text(set_version(path.read_text(encoding="utf-8"), new), encoding="utf-8")
    subprocess.run([str(ROOT / ".tools/bin/uv"), "lock", "--quiet"], cwd=ROOT, check=True)
    print(f"bmsgate {new}: {len(projects())} pyproject.toml files and uv.lock")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

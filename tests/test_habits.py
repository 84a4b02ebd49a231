"""Habits kept: named errors, one name per class, the formatter's own layout (pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASS = re.compile(r"^\s*class (\w+)\b", re.MULTILINE)
SKIP = "# fmt: " + "skip"  # spelled in two parts, so a sweep of the markers leaves this file alone


def sources() -> list[Path]:
    """Every Python file git knows, this one aside (it spells what it looks for)."""
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "*.py"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / n for n in names if (ROOT / n).exists() and n != "tests/test_habits.py"]


def test_no_blanket_suppress_and_no_per_line_format_skip() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "suppress(Exception)" in line or SKIP in line
    ]
    assert not found, (
        "name the errors expected instead of suppress(Exception); let ruff format the line, or "
        "put a table of rows between '# fmt: off' and '# fmt: on':\n" + "\n".join(found)
    )


def test_each_class_name_is_defined_once_in_the_shipped_code() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        if "/tests/" in f"/{rel}" or rel.startswith(("bench/", "tests/")) or "/bench/" in rel:
            continue
        for name in CLASS.findall(path.read_text(encoding="utf-8")):
            where[name].append(rel)
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"one class name, two meanings: {twice}"

"""The configuration file's format version and the steps that bring older files forward.

A file says which format it is in with the top-level key ``version`` (absent: 0, what bmsgate
0.1.0 wrote). Every start reads an older file through these steps in memory and logs one line per
change (settings.load_settings); ``bmsgate config migrate`` writes the result back, and every
write of the file (web UI, ``bmsgate config set``, the setup wizard) writes it migrated. A file
of a newer format is refused in one line: an older bmsgate cannot know its keys.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from .settings import CONFIG_VERSION, ConfigError

Step = Callable[[dict[str, Any], list[str]], None]


def _moves(moves: tuple[tuple[str, str, str], ...]) -> Step:
    """A step moving each ``section.key`` to the top-level ``new``; the first one set wins."""

    def step(data: dict[str, Any], changes: list[str]) -> None:
        for section, key, new in moves:
            part = data.get(section)
            if not isinstance(part, dict) or key not in part:
                continue
            value = part.pop(key)
            old = f"{section}.{key}"
            if data.get(new) is None:
                data[new] = value
                changes.append(f"'{old}' moved to the top-level '{new}' ({value})")
            elif data[new] == value:
                changes.append(f"'{old}' removed: the same as '{new}'")
            else:
                changes.append(f"'{old}' ({value}) removed: the top-level '{new}' is {data[new]}")
            if not part:
                del data[section]

    return step


# format 1: settings that every service shares, set once at the top level (settings.MOVED_KEYS);
# the history's zone (its local days) and the API's staleness come first
FORMAT_1_MOVES: Final = (
    ("history", "timezone", "timezone"),
    ("notifier", "timezone", "timezone"),
    ("api", "stale_after", "stale_after"),
    ("modbus", "stale_after", "stale_after"),
    ("publisher", "stale_after", "stale_after"),
)


# STEPS[n] takes a file of format n to n + 1; len(STEPS) == CONFIG_VERSION
STEPS: Final[tuple[Step, ...]] = (_moves(FORMAT_1_MOVES),)


def file_format(raw: dict[str, Any]) -> int:
    """The format a file's data says it is in; ConfigError for a bad or newer one."""
    found = raw.get("version")
    if found is None:  # absent, or null as an export of the effective settings has it
        return 0
    if isinstance(found, bool) or not isinstance(found, int) or found < 0:
        raise ConfigError(f"bad value for 'version': a whole number (got {found!r})")
    if found > CONFIG_VERSION:
        raise ConfigError(
            f"the configuration file has format version {found}, written by a newer bmsgate; "
            f"this one reads up to {CONFIG_VERSION}: install the newer version again, or restore "
            "the file from data_dir/backups"
        )
    return found


def migrate_config(raw: dict[str, Any], *, stamp: bool = False) -> tuple[dict[str, Any], list[str]]:
    """``raw`` in the current format, and one line per change made; ``raw`` is left as it is.

    The result carries ``version`` when anything changed or ``stamp`` is given.
    """
    found = file_format(raw)
    data = copy.deepcopy(raw)
    changes: list[str] = []
    for step in STEPS[found:]:
        step(data, changes)
    if changes or stamp or data.get("version") is not None:
        data.pop("version", None)
        data = {"version": CONFIG_VERSION, **data}
    return data, changes

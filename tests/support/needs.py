"""Tests that need a tool or a file: skipped on a developer's machine, failed in CI.

A test must not pass silently in CI by being skipped: ``scripts/setup.sh test`` installs every
tool, so one missing there is a broken setup. CI is recognised by ``CI`` set to anything but
empty, ``0``, ``false`` or ``no`` (GitHub Actions, GitLab and most others set ``CI=true``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the tests run in CI."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """Stop the test because ``what`` is missing: a failure in CI, a skip elsewhere."""
    if in_ci():
        pytest.fail(f"{what}; scripts/setup.sh test provides it, and CI must not skip")
    pytest.skip(what)


def require(found: object, what: str) -> None:
    """Go on only if ``found`` is truthy (a path, an executable); else ``missing(what)``."""
    if not found:
        missing(what)


def needs(found: object, what: str) -> pytest.MarkDecorator:
    """A mark for a test that needs ``found``: checked at setup by the root conftest."""
    return pytest.mark.needs(found=bool(found), what=what)

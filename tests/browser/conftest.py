"""Fixtures of the browser tests (tests/support/browser.py has the browser's settings)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, FLAGS, WINDOW
from tests.support.needs import require


@pytest.fixture
def browser_context() -> Iterator[Any]:
    """Headless chromium with its own profile; fails in CI without chromium, else skips."""
    require(Path(CHROMIUM).exists(), "chromium is not installed")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="bmsgate-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": WINDOW[0], "height": WINDOW[1]},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)

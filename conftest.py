"""Fixtures shared by every test in the repository (see tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.needs import require
from tests.support.procs import Mosquitto, Proc, find_mosquitto, start_simulator


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto on a free port; CI fails without it, a developer's machine skips."""
    require(find_mosquitto(), "mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def daly_pty(tmp_path: Path) -> Iterator[str]:
    """A simulated DALY classic board on a pseudo-terminal; yields the port path."""
    proc, port = start_simulator(tmp_path, "daly_classic")
    yield port
    proc.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all stopped at the end, whatever happened."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@needs(found, what)`` marks: a missing tool skips here, and fails in CI."""
    for mark in item.iter_markers("needs"):
        require(mark.kwargs["found"], mark.kwargs["what"])

"""Fixtures shared by every test in the repository (see tests/support)."""

from __future__ import annotations

import subprocess
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import procs as _procs
from tests.support import tls_broker, tree, victoria
from tests.support.needs import require
from tests.support.procs import Mosquitto, Proc, find_mosquitto, start_simulator

# The fast lane (README.md, "Run the tests"): ``pytest -m pure`` runs these files only. Pure: the
# logic of one module, in this process, with no broker, process, socket, pty or browser.
PURE: frozenset[str] = frozenset(
    (
        "packages/bms/tests/test_daly_classic.py",
        "packages/bms/tests/test_daly_new.py",
        "packages/bms/tests/test_jbd.py",
        "packages/bms/tests/test_jk_pb.py",
        "packages/bms/tests/test_jk_pb_listen.py",
        "packages/bms/tests/test_jk_uart.py",
        "packages/bms/tests/test_pace.py",
        "packages/bms/tests/test_plausible.py",
        "packages/bms/tests/test_polling.py",
        "packages/bms/tests/test_requests.py",
        "packages/bms/tests/test_seplos_v2.py",
        "packages/common/tests/test_bank.py",
        "packages/common/tests/test_models.py",
        "packages/common/tests/test_timezones.py",
        "packages/common/tests/test_units.py",
        "packages/outputs/tests/test_discovery.py",
        "packages/outputs/tests/test_dongle.py",
        "packages/outputs/tests/test_pinned_output.py",
        "services/history/tests/test_daily.py",
        "services/modbus/tests/test_logic.py",
        "services/modbus/tests/test_pinned_registers.py",
        "services/modbus/tests/test_registers.py",
        "services/notifier/tests/test_events.py",
        "services/publisher/tests/test_logic.py",
        "services/reader/tests/test_logic.py",
        "services/tunnel/tests/test_logic.py",
        "tests/test_cell_stats.py",
        "tests/test_liveness.py",
        "tests/test_protocols_doc.py",
        "tests/test_publisher_settings.py",
    )
)
ROOT = Path(__file__).parent

# The unmarked lane (``-m "not integration and not reliability"``) runs in this process only. A test
# that starts anything outside it (Mosquitto, a service or the CLI as a process, a simulator on a
# pty, VictoriaMetrics, a browser) is ``integration``, marked here rather than by hand: it asks for
# one of these fixtures (directly or through another fixture) ...
STARTING_FIXTURES: frozenset[str] = frozenset(("mosquitto", "procs", "daly_pty", "browser_context"))
# ... or its module holds one of these starters. ``_lane_is_true`` fails an unmarked test that
# starts a process all the same, so the marks stay true as tests are added.
STARTERS: tuple[Any, ...] = (
    subprocess,
    _procs.Mosquitto,
    _procs.Proc,
    _procs.start_simulator,
    _procs.start_service,
    tls_broker.TlsMosquitto,
    tree.bmsgate_run,
    victoria.VictoriaMetrics,
)


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


def _is_pure(path: Path) -> bool:
    return path.resolve().relative_to(ROOT).as_posix() in PURE


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``-m pure`` does not even import the other test files (the lane stays in seconds)."""
    if config.getoption("markexpr") != "pure" or not collection_path.name.startswith("test_"):
        return None
    return not _is_pure(collection_path) or None


def _starts_processes(item: pytest.Item) -> bool:
    if STARTING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    if not isinstance(module, types.ModuleType):
        return False
    return any(any(value is starter for starter in STARTERS) for value in vars(module).values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of PURE carry the ``pure`` mark; a test that starts processes, ``integration``."""
    for item in items:
        if _is_pure(item.path):
            item.add_marker(pytest.mark.pure)
        elif _starts_processes(item):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _lane_is_true(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """An unmarked test that starts a process fails: it is ``integration`` (see STARTERS)."""
    node = request.node
    if node.get_closest_marker("integration") or node.get_closest_marker("reliability"):
        yield
        return
    started: list[str] = []
    opened = subprocess.Popen.__init__

    def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        started.append(str(args if isinstance(args, str) else next(iter(args), "")))
        opened(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    yield
    if started:
        pytest.fail(
            f"started {', '.join(started)} but is not marked integration: use a fixture of "
            "conftest.py STARTING_FIXTURES or a starter of STARTERS, or mark it"
        )

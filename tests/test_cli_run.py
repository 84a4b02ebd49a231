"""`bmsgate run`: one command starts the pipeline on a simulator, prints the URL, stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate.services import SERVICES
from tests.support.procs import find_mosquitto, wait_until

pytestmark = pytest.mark.integration


# `bmsgate run` itself, the private Mosquitto, the zygote the services are forked from, and one
# process per service (one reader here)
EXPECTED_PROCESSES = 3 + len(SERVICES)


def run_command(http: int, data: Path) -> list[str]:
    """`bmsgate run` on free ports (502 may be taken or need privileges)."""
    return [
        sys.executable, "-m", "bmsgate.cli", "run", "--http-port", str(http),
        "--modbus-port", str(free_port()), "--data-dir", str(data),
    ]  # fmt: skip


def processes_using(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (children keep their config path)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_the_simulator_and_stops_every_child(tmp_path: Path, sig: int) -> None:
    http = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        run_command(http, data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"bmsgate is running: web UI at http://127.0.0.1:{http}/"
        state = wait_until(
            lambda: (
                (
                    r := httpx.get(f"http://127.0.0.1:{http}/api/packs/sim-1/state", timeout=2)
                ).status_code
                == 200
                and r.json()
            ),
            timeout=20,
        )
        assert state["protocol"] == "daly_classic" and state["cell_count"] == 16
        assert len(processes_using(str(data))) == EXPECTED_PROCESSES
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_using(str(data)) == []
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert (data / "run" / "config.yaml").stat().st_mode & 0o077 == 0  # secrets file: owner only


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bmsgate.yaml"
    config.write_text("api:\n  prot: 80\n")
    done = subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"bmsgate run: config error in {config}: unknown key 'api.prot'"


def test_service_subcommands_run_the_container_entry_points(tmp_path: Path) -> None:
    for service in ("reader", "api"):
        done = subprocess.run(
            [sys.executable, "-m", "bmsgate.cli", service, "--config", str(tmp_path / "missing.yaml")],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.startswith(f"bmsgate {service}: config file ")


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    http = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        run_command(http, data), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("bmsgate is running")
        wait_until(lambda: len(processes_using(str(data))) == EXPECTED_PROCESSES)
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
    wait_until(lambda: processes_using(str(data)) == [], timeout=15)

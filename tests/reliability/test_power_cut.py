"""A power cut after an acknowledged change, as near as a test gets: SIGKILL of the whole tree.

`bmsgate run` is started on the simulator; the first password is set and then changed over the
API, and at a random moment after each acknowledgement every process of the tree is killed with
SIGKILL, then the tree is started again: the acknowledged password is the one in force, no
temporary file is left once the tree is up again (a cut in the middle of an energy counter
write leaves one, removed by the reader at its next start), and the reader's energy counter file exists (it is written at the first
poll, not a minute later). That the change also survives a real power cut (the directory is
fsynced after the rename) is checked on the system calls by packages/common/tests/test_durable.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_common.durable import temporary_path
from tests.reliability.counts import COUNTS
from tests.support.needs import needs
from tests.support.procs import find_mosquitto, wait_until
from tests.test_cli_run import processes_using, run_command

pytestmark = [pytest.mark.integration, needs(find_mosquitto(), "mosquitto is not installed")]
ROUNDS = 3


def pids_using(marker: str) -> list[int]:
    """Process ids whose command line mentions ``marker`` (every process of one tree)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if marker in line]


class Tree:
    """`bmsgate run` on its own ports and data folder."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.counters = data / "reader" / "energy-sim-1.json"
        self.http = free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.proc = subprocess.Popen(
            run_command(self.http, data), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def up(self) -> float:
        """Wait for the API and the simulated pack's first poll; returns the seconds it took."""
        started = time.monotonic()
        wait_until(lambda: self._get("/api/auth/status") == 200, timeout=30)
        wait_until(self.counters.exists, timeout=30)
        # none left over from a cut (the reader removes its own); a live write lasts < 1 s
        wait_until(lambda: not list(self.data.rglob("*.tmp")), timeout=30)
        return time.monotonic() - started

    def _get(self, path: str) -> int:
        try:
            return self.client.get(path).status_code
        except httpx.HTTPError:
            return 0

    def cut(self) -> None:
        """SIGKILL every process of the tree at once: nothing gets to clean up."""
        for pid in [self.proc.pid, *pids_using(str(self.data))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        self.client.close()
        wait_until(lambda: processes_using(str(self.data)) == [], timeout=15)


def test_acknowledged_password_changes_and_counters_survive_a_cut(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(22)
    passwords = [f"battery-staple-{n}" for n in range(ROUNDS + 1)]
    for n in range(ROUNDS + 1):
        tree = Tree(data)
        try:
            took = tree.up()
            if n == 0:  # the counter file exists from the first poll, not a minute later
                assert took < 20, took
                COUNTS["power cut: first start to the energy counter file on disk [s]"] = round(
                    took
                )
            if n == 0:
                r = tree.client.post("/api/auth/setup", json={"password": passwords[0]})
            else:
                login = tree.client.post("/api/auth/login", json={"password": passwords[n - 1]})
                assert login.status_code == 204, (n, login.text)  # the last acknowledged one
                old = tree.client.post("/api/auth/login", json={"password": passwords[0]})
                assert n == 1 or old.status_code == 401
                r = tree.client.post(
                    "/api/auth/password",
                    json={"old_password": passwords[n - 1], "new_password": passwords[n]},
                )
            assert r.status_code == 204, r.text  # acknowledged
            time.sleep(rng.uniform(0.0, 0.3))
            assert json.loads(tree.counters.read_text())["energy_in"] >= 0
        finally:
            tree.cut()
        COUNTS["power cut (SIGKILL of the tree) after a password change: cuts"] += 1
        counter_tmp = temporary_path(tree.counters)
        left = [p for p in data.rglob("*.tmp") if p != counter_tmp]
        assert not left, f"a temporary file was left by an acknowledged change: {left}"
        # the counter is written every few minutes whatever the user does, so the cut can always
        # land in the middle of a write: one is planted here, and the next start must remove it
        counter_tmp.write_text('{"energy_in": 1')
    final = Tree(data)
    try:
        final.up()
        assert (
            final.client.post("/api/auth/login", json={"password": passwords[-1]}).status_code
            == 204
        )
    finally:
        final.cut()

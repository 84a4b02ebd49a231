"""A real VictoriaMetrics (Debian's victoria-metrics) on a free port, for the InfluxDB writer tests.

Flags from shared/research/LIBS.md section 5: without -search.latencyOffset=0s queries hide the
newest 30 s; /internal/force_flush makes fresh points searchable at once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bmsgate.broker import free_port, wait_for_port


def find_victoria() -> str | None:
    """The victoria-metrics binary, or None."""
    return shutil.which("victoria-metrics") or (
        "/usr/bin/victoria-metrics" if Path("/usr/bin/victoria-metrics").exists() else None
    )


class VictoriaMetrics:
    """Start, stop, restart (same port and data); optionally refusing writes (basic auth)."""

    def __init__(self, workdir: Path) -> None:
        exe = find_victoria()
        if exe is None:
            raise RuntimeError(
                "victoria-metrics is not installed (apt-get install victoria-metrics)"
            )
        self.exe = exe
        self.port = free_port()  # a separate process, told its port on its command line
        self.data = workdir / "vm-data"
        self.log = workdir / "vm.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, refuse: bool = False) -> None:
        """Start; with ``refuse`` every request needs basic auth, so token writes get 401."""
        # fmt: off
        argv = [
            self.exe, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data}",
            "-retentionPeriod=1", "-search.latencyOffset=0s", "-search.disableCache",
        ]
        # fmt: on
        if refuse:
            argv += ["-httpAuth.username=u", "-httpAuth.password=p"]
        log = self.log.open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=log)
        if not wait_for_port("127.0.0.1", self.port, 15):
            raise RuntimeError(f"victoria-metrics did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        """Stop it (SIGTERM, it flushes), as a restart would."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode()

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching ``match`` (PromQL selector) with their values and ms timestamps."""
        self._get("/internal/force_flush")
        body = self._get("/api/v1/export?" + urllib.parse.urlencode({"match[]": match}))
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def wait_values(self, match: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Poll until the matching series hold ``count`` values in all."""
        deadline = time.monotonic() + timeout
        series: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            series = self.export(match)
            if sum(len(s["values"]) for s in series) >= count:
                return series
            time.sleep(0.2)
        raise AssertionError(f"{match}: wanted {count} values, have {series}")

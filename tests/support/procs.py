"""Real processes for tests: Mosquitto on a free port, the simulator, bmsgate services."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from bmsgate.broker import free_port, wait_for_port


def find_mosquitto() -> str | None:
    """The mosquitto binary, or None."""
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class Mosquitto:
    """A real broker on a free loopback port that a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()  # a separate process, told its port in its file (broker.free_port)
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) on the same port."""
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        if not wait_for_port("127.0.0.1", self.port, 10):
            raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        """Kill it, as a crash or a restart would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Proc:
    """A child process with its output in a log file the test can read."""

    def __init__(
        self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None
    ):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if name.startswith("sim") else self._log,
            stderr=self._log,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Still running."""
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal it and wait; kill after ``timeout``. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_simulator(
    workdir: Path, protocol: str = "daly_classic", *extra: str, name: str | None = None
) -> tuple[Proc, str]:
    """``bmsgate simulate --pty`` as a process; returns it and the pty path to open.

    ``name`` (default: the protocol) names its link, the same again when it is started again.
    """
    proc = Proc(
        f"sim-{name or protocol}",
        [
            sys.executable,
            "-m",
            "bmsgate.cli",
            "simulate",
            "--protocol",
            protocol,
            "--pty",
            "--link",
            str(workdir / f"tty-{name or protocol}"),
            *extra,
        ],
        workdir,
    )
    assert proc.process.stdout is not None
    line = proc.process.stdout.readline().decode().strip()
    if not line.startswith(str(workdir)):
        proc.stop()
        raise RuntimeError(f"simulator did not start: {proc.log()}")
    return proc, line


def write_config(workdir: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    """A YAML configuration file for services under test."""
    path = workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def service_config(
    workdir: Path, broker: int, *, heartbeat: float = 2, name: str = "config.yaml", **sections: Any
) -> Path:
    """A configuration file for services under test: the backbone on Mosquitto's ``broker`` port
    (``heartbeat`` [s]), the data directory ``workdir``/data, then ``sections`` (top-level keys:
    buses, api, control, ...)."""
    backbone = {"host": "127.0.0.1", "port": broker, "heartbeat": heartbeat}
    return write_config(
        workdir, {"mqtt": backbone, "data_dir": str(workdir / "data"), **sections}, name
    )


def api_config(
    workdir: Path, broker: int, api: Mapping[str, Any] | None = None, **sections: Any
) -> tuple[Path, str]:
    """``service_config`` with the API on a free loopback port, reading only after a login
    (``api`` added to its section); the file and the API's base URL."""
    http = free_port()
    section = {"host": "127.0.0.1", "port": http, "public_read": "never", **(api or {})}
    return service_config(workdir, broker, api=section, **sections), f"http://127.0.0.1:{http}"


def wait_for_api(base: str, timeout: float = 20) -> None:
    """Until the API at ``base`` answers and is on the backbone (its /healthz says so)."""
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=2).json()["backbone"], timeout)


def garage_config(
    workdir: Path,
    broker: int,
    port: str,
    *,
    bus: dict[str, Any] | None = None,
    heartbeat: float = 2,
    name: str = "config.yaml",
    **sections: Any,
) -> Path:
    """A configuration file for services under test with one pack: ``garage``, a DALY classic.

    Its serial ``port`` with ``bus`` (more of the bus's settings: poll_interval, offline_after,
    ...), the backbone on Mosquitto's ``broker`` port (``heartbeat`` [s]), the data directory
    ``workdir``/data, and ``sections`` (top-level keys: control, api, tunnel, ...) last.
    """
    one_bus = {"port": port, "protocol": "daly_classic", **(bus or {}), "packs": [{"id": "garage"}]}
    return service_config(
        workdir, broker, heartbeat=heartbeat, name=name, buses=[one_bus], **sections
    )


def start_service(
    workdir: Path, service: str, config: Path, *args: str, name: str | None = None
) -> Proc:
    """``python -m bmsgate_<service> --config FILE`` as a process, named ``name`` (default: the
    service; its log is ``workdir``/<name>.log)."""
    return Proc(
        name or service,
        [sys.executable, "-m", f"bmsgate_{service}", "--config", str(config), *args],
        workdir,
    )


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last result: {last!r}")


def start_history_and_api(
    workdir: Path, mosquitto: Mosquitto, procs: list[Proc], settings: dict[str, Any]
) -> str:
    """History (committing every 0.2 s) and the API as processes on one backbone, with
    ``settings`` added to their configuration; the API's base URL once it reaches the backbone.
    History is ``procs``' first new entry."""
    archive = {"archive": {"commit_interval": 0.2}}
    config, base = api_config(workdir, mosquitto.port, **{"history": archive, **settings})
    history = start_service(workdir, "history", config)
    procs.append(history)
    procs.append(start_service(workdir, "api", config))
    wait_until(lambda: "history running" in history.log(), 20)
    wait_for_api(base)
    return base


def rss_kb(pid: int | None = None) -> int:
    """Resident memory [kB] of process ``pid`` (this one by default)."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

"""A private Mosquitto for ``bmsgate run`` when no broker is configured."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .proc import die_with_parent

INSTALL_HINT = "install it with: sudo apt-get install mosquitto (or set mqtt.host to a broker)"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


class PrivateBroker:
    """Mosquitto on a free loopback port, anonymous but reachable only from this machine."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            raise RuntimeError(f"mosquitto is not installed; {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"  # the default 1000 drops QoS 1 messages for slow readers
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n"
            # stay the user we are: mosquitto started as root would switch to user "mosquitto",
            # which clears the parent-death signal and could leave it running after a crash
            f"user {getpass.getuser()}\n"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if not wait_for_port("127.0.0.1", self.port):
            self.stop()
            raise RuntimeError(f"mosquitto did not start; see {self.workdir / 'mosquitto.log'}")

    def stop(self) -> None:
        """Stop it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

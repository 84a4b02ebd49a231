"""A private Mosquitto for ``bmsgate run`` when no broker is configured."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from bmsgate_common.access import PEOPLE, SERVICES, render_acl
from bmsgate_common.topics import DEFAULT_BASE

from .proc import die_with_parent

INSTALL_HINT = "install it with: sudo apt-get install mosquitto (or set mqtt.host to a broker)"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now.

    Only for a separate process that must be told its port before it starts (a broker, a
    service): another process may take the port between this and its bind. A server in this
    process binds port 0 and reads the port it got.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mosquitto binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


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


USERS_FILE = "users.json"  # in the broker's directory: its port and every user's password (0600)
# a broker user per service (the same ACL as the compose stack's), admin (bmsgate itself and
# its command-line tools), viewer (a user's own tools, read only), homeassistant (Home
# Assistant's MQTT integration on this machine: discovery, values, its switches' commands)
USERS = (*SERVICES, *PEOPLE)


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin") if Path(f"{d}/{name}").exists()), None
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class PrivateBroker:
    """Mosquitto on a loopback port: one user per service with the ACL, no anonymous client.

    The passwords are made once per data directory and kept in ``users.json`` (mode 0600, with
    the port, which stays the same while it is free): any local user could otherwise connect to
    a loopback port and switch MOSFETs or feed fake states.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        base: str = DEFAULT_BASE,
        banks: Sequence[str] | None = (),
    ) -> None:
        self.workdir = workdir
        self.base = base
        self.banks = banks
        self.users = self._users(port)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # [s] monotonic, when it last started

    def _users(self, port: int | None) -> dict[str, str]:
        """The users' passwords, made once; the port kept from last time while it is free."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        path = self.workdir / USERS_FILE
        try:
            saved = json.loads(path.read_text())
            kept = {u: str(p) for u, p in dict(saved["users"]).items() if u in USERS and p}
            last = int(saved["port"])
        except (OSError, ValueError, KeyError, TypeError):
            kept, last = {}, 0
        # a user added by a newer version gets its password; the others keep theirs
        users = {u: kept.get(u) or secrets.token_urlsafe(24) for u in USERS}
        self.port = port or (last if last and _free(last) else free_port())
        _write_private(
            path,
            json.dumps({"host": "127.0.0.1", "port": self.port, "users": users}, indent=2) + "\n",
        )
        return users

    def credentials(self, service: str) -> tuple[str, str]:
        """(username, password) of a service (``reader-0`` is user ``reader``) or a user."""
        user = service.split("-", 1)[0] if service.startswith("reader-") else service
        return user, self.users[user]

    def _write_access(self) -> None:
        _write_private(self.workdir / "acl", render_acl(self.base, self.banks))

    def update(self, *, base: str, banks: Sequence[str] | None) -> None:
        """A new base topic or set of banks: rewrite the ACL, and mosquitto rereads it."""
        if (base, banks) == (self.base, self.banks):
            return
        self.base, self.banks = base, banks
        self._write_access()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)  # mosquitto reloads its acl_file on SIGHUP

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        exe, hasher = _find("mosquitto"), _find("mosquitto_passwd")
        if exe is None or hasher is None:
            raise RuntimeError(f"mosquitto is not installed; {INSTALL_HINT}")
        passwd = self.workdir / "passwd"
        _write_private(passwd, "".join(f"{u}:{pw}\n" for u, pw in self.users.items()))
        subprocess.run([hasher, "-U", str(passwd)], check=True, capture_output=True)  # hash them
        self._write_access()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {self.workdir / 'acl'}\n"
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
        self.started = time.monotonic()

    def exit_code(self) -> int | None:
        """Its exit code once it has ended (killed, crashed); None while it runs or before."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """Stop it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

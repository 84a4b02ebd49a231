"""A real Mosquitto with TLS (self-signed CA made by openssl) and a password file, for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tests.support.procs import Mosquitto

USER = "bms"
PASSWORD = "s3cret-pass"  # a test credential; the publisher must never log it


class Certs(NamedTuple):
    """A CA and a server certificate for CN=localhost with SAN localhost and 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_certs(workdir: Path) -> Certs:
    """Generate the CA and the server certificate with the openssl command-line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed (scripts/setup.sh test installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = workdir / "ca.crt", workdir / "ca.key"
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    san = workdir / "san.ext"
    san.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    steps = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=bmsgate-test-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        ],
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(san),
            "-out",
            str(cert),
        ],
    ]
    for step in steps:
        subprocess.run([openssl, *step], check=True, capture_output=True)
    return Certs(ca, cert, key)


class TlsMosquitto(Mosquitto):
    """Mosquitto with one TLS listener that needs a user and password (as HiveMQ Cloud does)."""

    def __init__(self, workdir: Path, certs: Certs) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        passwd = workdir / "passwd"
        passwd.write_text("")
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), USER, PASSWORD], check=True, capture_output=True
        )
        # as root, mosquitto drops to user "mosquitto" and then cannot read 0600 files: stay
        as_root = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{as_root}per_listener_settings true\npersistence false\nmax_queued_messages 0\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
            f"cafile {certs.ca}\ncertfile {certs.cert}\nkeyfile {certs.key}\n"
        )


@contextlib.contextmanager
def running_tls_mosquitto(workdir: Path, certs: Certs) -> Iterator[TlsMosquitto]:
    """A started ``TlsMosquitto`` in ``workdir``, stopped on leaving."""
    broker = TlsMosquitto(workdir, certs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()

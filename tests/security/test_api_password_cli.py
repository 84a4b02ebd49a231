"""The first web password: `bmsgate run` says it is unset, `bmsgate config password` sets it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from bmsgate.broker import free_port
from tests.support.procs import wait_until
from tests.support.tree import run_argv

PASSWORD = "set-from-the-terminal"


def start_run(site: Path, http: int) -> subprocess.Popen[str]:
    argv = run_argv(config=site, http=http)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def config_password(site: Path, text: str) -> subprocess.CompletedProcess[str]:
    # fmt: off
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "config", "--config", str(site), "password"],
        input=text, capture_output=True, text=True, timeout=60,
    )
    # fmt: on


def test_run_says_the_password_is_unset_until_the_terminal_sets_it(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "api": {"mdns": False}}))
    http = free_port()
    base = f"http://127.0.0.1:{http}"
    proc = start_run(site, http)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("bmsgate is running")
        line = proc.stdout.readline()
        assert "no web password is set" in line and "bmsgate config password" in line, line
        wait_until(lambda: httpx.get(f"{base}/api/auth/status", timeout=2).json(), timeout=30)
        short = config_password(site, "short\n")
        assert short.returncode == 2 and short.stderr.count("\n") == 1
        assert "at least 8 characters" in short.stderr and "Traceback" not in short.stderr
        done = config_password(site, PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
        assert "web password set in" in done.stdout
        stored = tmp_path / "data" / "api" / "password"
        assert stored.stat().st_mode & 0o777 == 0o600 and PASSWORD not in stored.read_text()
        # the running API takes it at once: no first-visit setup any more, the login works
        assert httpx.get(f"{base}/api/auth/status", timeout=5).json()["setup_required"] is False
        taken = httpx.post(f"{base}/api/auth/setup", json={"password": "a stranger's"}, timeout=5)
        assert taken.status_code == 409
        login = httpx.post(f"{base}/api/auth/login", json={"password": PASSWORD}, timeout=10)
        assert login.status_code == 204
    finally:
        stop(proc)
    again = start_run(site, http)
    try:
        assert again.stdout is not None
        assert again.stdout.readline().startswith("bmsgate is running")
    finally:
        assert "no web password" not in stop(again)


def test_a_configured_password_is_not_changed_from_the_terminal(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "api": {"password_hash": "scrypt$16384$8$1$c2FsdA$aGFzaA"},
            }
        )
    )
    got = config_password(site, PASSWORD + "\n")
    assert got.returncode == 2 and "api.password_hash" in got.stderr
    assert not (tmp_path / "data" / "api" / "password").exists()

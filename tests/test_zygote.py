"""Services forked from the zygote: exit codes reach the supervisor, stop and die like processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate.zygote import Forked, Zygote, forkable

pytestmark = pytest.mark.integration


def parent_of(pid: int) -> int:
    """The parent pid from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_only_service_modules_are_forked() -> None:
    py = sys.executable
    assert forkable([py, "-m", "bmsgate_api", "--config", "c.yaml"]) == "bmsgate_api"
    assert forkable([py, "-m", "json.tool"]) is None
    assert forkable(["/usr/bin/python3", "-m", "bmsgate_api"]) is None


async def test_a_forked_service_reports_its_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("history:\n  nonsense: 1\n")
    zygote = Zygote(str(bad), ["bmsgate_history"])
    try:
        child = await zygote.spawn("bmsgate_history", ["--config", str(bad)])
        assert isinstance(child, Forked)
        assert zygote.process is not None  # no zygote forked at start here: an interpreter
        async with asyncio.timeout(30):
            assert await child.wait() == 2  # a configuration error, as from its own process
        assert child.returncode == 2
        with pytest.raises(ProcessLookupError):
            child.terminate()  # reaped: no signal to a pid that may be someone else's now
    finally:
        await zygote.close()


async def test_a_forked_service_stops_on_sigterm_and_dies_with_the_zygote(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": free_port()},
                "data_dir": str(tmp_path / "data"),
                "log_level": "ERROR",
            }
        )
    )  # no broker there: the service keeps retrying until it is stopped
    zygote = Zygote(str(cfg), [])
    try:
        first = await zygote.spawn("bmsgate_history", ["--config", str(cfg)])
        second = await zygote.spawn("bmsgate_history", ["--config", str(cfg)])
        assert parent_of(first.pid) == zygote.pid  # forked, not exec'd by us
        await asyncio.sleep(1.0)
        assert first.returncode is None and second.returncode is None
        first.terminate()
        async with asyncio.timeout(30):
            assert await first.wait() == 0  # a clean stop, as a service's own process gives
        os.kill(zygote.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await second.wait()  # reported gone with the zygote
            while alive(second.pid):  # noqa: ASYNC110 - it ends by SIGTERM from PR_SET_PDEATHSIG
                await asyncio.sleep(0.1)
    finally:
        await zygote.close()


# a supervisor that forks the zygote from itself (fork_zygote), as `bmsgate run` does
FORKED = """
import asyncio, os, sys
from bmsgate import zygote

assert zygote.fork_zygote()
_, pid = zygote._forked

async def main():
    child = await zygote.start_child([sys.executable, "-m", "bmsgate_history", "--config", sys.argv[1]])
    code = await child.wait()
    print(pid, zygote._zygote.pid, code, flush=True)
    os.kill(pid, 9)  # the next service comes from a zygote interpreter, started then
    while zygote._zygote.pid:
        await asyncio.sleep(0.05)
    again = await zygote.start_child([sys.executable, "-m", "bmsgate_history", "--config", sys.argv[1]])
    print(await again.wait(), zygote._zygote.process is not None, zygote._forked, flush=True)
    await zygote.stop_zygote()

asyncio.run(main())
"""


def test_the_zygote_forked_from_the_supervisor_serves_then_an_interpreter_replaces_it(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("history:\n  nonsense: 1\n")
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    forked, used, code = first.split()
    assert forked == used  # the supervisor's own fork served, no zygote interpreter
    assert code == "2"  # the service's exit code, as from its own process
    assert second == "2 True None"
    assert not alive(int(forked))  # reaped


def test_a_killed_supervisor_takes_its_forked_zygote_along(tmp_path: Path) -> None:
    script = "from bmsgate import zygote; import time; zygote.fork_zygote(); "
    script += "print(zygote._forked[1], flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    assert parent_of(pid) == proc.pid and alive(pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)  # SIGTERM from PR_SET_PDEATHSIG

"""Services forked from the zygote: exit codes reach the supervisor, stop and die like processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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
        assert zygote.process is not None
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
        assert zygote.process is not None
        assert parent_of(first.pid) == zygote.process.pid  # forked, not exec'd by us
        await asyncio.sleep(1.0)
        assert first.returncode is None and second.returncode is None
        first.terminate()
        async with asyncio.timeout(30):
            assert await first.wait() == 0  # a clean stop, as a service's own process gives
        os.kill(zygote.process.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await second.wait()  # reported gone with the zygote
            while alive(second.pid):  # noqa: ASYNC110 - it ends by SIGTERM from PR_SET_PDEATHSIG
                await asyncio.sleep(0.1)
    finally:
        await zygote.close()

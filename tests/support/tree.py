"""`bmsgate run --config F` as a process tree for a test, stopped (SIGTERM, then SIGKILL) at the end."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from bmsgate.broker import free_port


def run_argv(
    *options: str | Path, config: Path | None = None, http: int | None = None
) -> list[str]:
    """The command line of ``bmsgate run`` (this Python, the checkout's code) with ``options``.

    ``config``: ``--config``. ``http``: the web UI's port (``--http-port``), and then a free port
    for the Modbus server too (its default 502 may be taken, or need privileges).
    """
    argv: list[str | Path] = [sys.executable, "-m", "bmsgate.cli", "run"]
    if config is not None:
        argv += ["--config", config]
    if http is not None:
        argv += ["--http-port", str(http), "--modbus-port", str(free_port())]
    return [str(a) for a in (*argv, *options)]


@contextlib.asynccontextmanager
async def bmsgate_run(
    config: Path, log_path: Path, env: dict[str, str] | None = None, *, isolate: bool = False
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run the tree with its output in ``log_path``; a clean stop when the block ends normally.

    ``isolate``: each service in a process of its own (``bmsgate run --isolate``).
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220
            run_argv(*(["--isolate"] if isolate else []), config=config),
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        try:
            yield proc
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def write_config(folder: Path, data: dict[str, Any]) -> Path:
    """``folder/bmsgate.yaml``: ``data`` with the API and Modbus on free loopback ports and the
    data directory in ``folder``."""
    local = {
        "api": {"host": "127.0.0.1", "port": free_port()},
        "modbus": {"host": "127.0.0.1", "port": free_port()},
        "data_dir": str(folder / "data"),
    }
    path = folder / "bmsgate.yaml"
    path.write_text(yaml.safe_dump(data | local, sort_keys=False))
    return path


def with_target(folder: Path, target_port: int) -> Path:
    """A configuration: the simulated pack, free local ports, one Home Assistant target."""
    config = folder / "bmsgate.yaml"
    # the services are separate processes, told their ports in the file (broker.free_port)
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"host": "127.0.0.1", "port": free_port()},
                "modbus": {"host": "127.0.0.1", "port": free_port()},
                "publisher": {
                    "targets": [
                        {
                            "name": "home",
                            "host": "127.0.0.1",
                            "port": target_port,
                            "homeassistant": {"enabled": True},
                        }
                    ]
                },
                "data_dir": str(folder / "data"),
            }
        )
    )
    return config

"""``bmsgate run``: every service of the pipeline on one machine, each as its own process.

The same entry points the containers use (``python -m bmsgate_<service>``) run as children with a
generated configuration; a private Mosquitto starts when no broker is configured, and a simulated
pack on a pseudo-terminal when no serial port is. A child that dies is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.settings import BusSettings, PackSettings, Settings

from .broker import PrivateBroker, wait_for_port
from .proc import die_with_parent
from .services import SERVICES

log = logging.getLogger("bmsgate.run")

STOP_TIMEOUT = 10.0  # [s] a child gets to stop before it is killed
USER_ERROR = 2  # exit code of a service that stopped on a problem only the user can fix


@dataclass
class Child:
    """One service process under supervision."""

    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = 0.0
    backoff: float = field(default=1.0)
    restart_at: float = 0.0
    given_up: bool = False

    async def start(self) -> None:
        """Start the process; its output goes to ours."""
        # own session: Ctrl-C reaches only the supervisor, which stops the children in order
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, start_new_session=True, preexec_fn=die_with_parent
        )
        self.started = time.monotonic()
        log.debug("started %s (pid %d)", self.name, self.process.pid)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            log.warning("%s did not stop in %.0f s; killing it", self.name, STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def runtime_config(cfg: Settings) -> dict[str, Any]:
    """The effective settings as YAML data for the children, secrets included (file is 0600)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    if cfg.mqtt.password is not None:
        data["mqtt"]["password"] = cfg.mqtt.password.get_secret_value()
    return data


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


async def supervise(
    cfg: Settings,
    *,
    simulate: str | None = None,
    simulate_packs: int = 0,
    only: list[str] | None = None,
    print_url: bool = True,
) -> None:
    """Run the pipeline until cancelled, then stop every child cleanly.

    ``simulate_packs`` N > 0 replaces the buses by N simulated ones, one pack and one reader each
    (load and scale-out tests); ``only`` limits the children to those services (an edge machine
    runs only its readers against a central broker).
    """
    runtime = cfg.data_dir.resolve() / "run"
    broker: PrivateBroker | None = None
    sims: list[PtyServer] = []
    sim_clocks: list[asyncio.Task[None]] = []
    children: list[Child] = []
    try:
        if cfg.mqtt.host is None:
            broker = PrivateBroker(runtime / "mosquitto")
            broker.start()
            cfg = cfg.model_copy(
                update={
                    "mqtt": cfg.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})
                }
            )
            log.info("private mosquitto on 127.0.0.1:%d", broker.port)
        count = simulate_packs or (1 if simulate or not cfg.buses else 0)
        if count:
            protocol = simulate or "daly_classic"
            runtime.mkdir(parents=True, exist_ok=True)
            sim_buses = []
            for i in range(count):
                bus = make_bus(protocol, seed=i + 1)  # a different pack on each bus
                sim = PtyServer(bus, link=runtime / f"ttySIM{i}")
                await sim.__aenter__()
                sims.append(sim)
                sim_clocks.append(asyncio.create_task(bus.run_time(speed=1.0)))
                pack = PackSettings(id=f"sim-{i + 1}", name=f"Simulated pack {i + 1}")
                sim_buses.append(
                    BusSettings(port=sim.port, protocol=protocol, poll_interval=1.0, packs=[pack])
                )
            cfg = cfg.model_copy(update={"buses": sim_buses})
            log.info("%d simulated %s pack(s) on %s", count, protocol, sims[0].port)
        config_file = runtime / "config.yaml"
        write_private(config_file, yaml.safe_dump(runtime_config(cfg), sort_keys=False))
        py = sys.executable
        conf = ["--config", str(config_file)]
        children = []
        for name, service in SERVICES.items():
            if only is not None and name not in only:
                continue
            if service.per_bus:
                children += [
                    Child(f"{name}-{i}", [py, "-m", service.module, *conf, "--bus", str(i)])
                    for i in range(len(cfg.buses))
                ]
            else:
                children.append(Child(name, [py, "-m", service.module, *conf]))
        for child in children:
            await child.start()
        host = "127.0.0.1" if cfg.api.host in ("0.0.0.0", "::") else cfg.api.host
        with_api = only is None or "api" in only
        ready = with_api and await asyncio.to_thread(wait_for_port, host, cfg.api.port, 15.0)
        if print_url and with_api:
            state = "" if ready else " (not answering yet)"
            print(f"bmsgate is running: web UI at http://{host}:{cfg.api.port}/{state}", flush=True)  # noqa: T201
        await _watch(children)
    finally:
        await asyncio.gather(*(c.stop() for c in children))
        for clock in sim_clocks:
            clock.cancel()
        for sim in sims:
            sim.close()
        if broker:
            broker.stop()


async def _watch(children: list[Child]) -> None:
    """Restart a child that exits, waiting longer each time it dies young (no crash storm).

    Exit code 2 means a problem only the user can fix (configuration, a port it may not bind):
    restarting would only repeat the message, so that child stays stopped.
    """
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        for child in children:
            proc = child.process
            if proc is not None and proc.returncode is not None:
                child.process = None
                if proc.returncode == USER_ERROR:
                    child.given_up = True
                    log.error("%s stopped (see its message above); not restarting", child.name)
                    continue
                lived = now - child.started
                child.backoff = 1.0 if lived > 60 else min(60.0, child.backoff * 2)
                child.restart_at = now + child.backoff
                log.warning(
                    "%s exited with code %s; restarting in %.0f s",
                    child.name, proc.returncode, child.backoff,
                )  # fmt: skip
            elif proc is None and not child.given_up and now >= child.restart_at:
                child.restarts += 1
                await child.start()

"""``bmsgate run``: every service of the pipeline on one machine, in one process they share.

The same entry points the containers use (``python -m bmsgate_<service>``) run as children with a
generated configuration, each in a thread of its own with its own event loop in one process
(``--isolate``: each in a process of its own; zygote.py); a private Mosquitto starts when no
broker is configured, and a simulated pack on a pseudo-terminal while no serial port is. A child
that ends is restarted with backoff, alone; when the shared process ends, every one of them; the
private Mosquitto too, on the same port, and the services' backbones reconnect to it.

The configuration file is watched: when it changes and validates, the generated configuration is
rewritten and only the services whose sections changed are restarted (a reader per bus), so a
file written by ``bmsgate setup``, ``bmsgate config set`` or the web UI takes effect at once. An
invalid file is one line in the log and everything keeps running as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import yaml
from pydantic import SecretStr

from bmsgate_api.auth import password_store
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common import topics
from bmsgate_common.config_file import revealed
from bmsgate_common.models import ServiceStatus, utcnow
from bmsgate_common.settings import BusSettings, ConfigError, MqttSettings, PackSettings, Settings
from bmsgate_common.topics import TOPICS
from bmsgate_common.version import VERSION

from .broker import PrivateBroker, wait_for_port
from .restarts import STOP_TIMEOUT, TICK, ended, file_signature, restart_delay
from .services import SERVICES, fingerprint, left_out
from .simulated import DEMO_PROTOCOL, simulated_pack_ids
from .zygote import ChildProcess, preload, start_child

log = logging.getLogger("bmsgate.run")

Loader = Callable[[], Settings]  # reads and validates the configuration file; ConfigError if bad


@dataclass
class Child:
    """One service process under supervision."""

    name: str
    argv: list[str]
    fingerprint: str = ""  # the configuration it was started with; a change restarts it
    process: ChildProcess | None = None
    restarts: int = 0
    started: float = 0.0
    backoff: float = field(default=1.0)
    restart_at: float = 0.0
    given_up: bool = False

    async def start(self) -> None:
        """Start the process (forked from the zygote, see zygote.py); its output goes to ours."""
        self.process = await start_child(self.argv)
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


class ChildSpec(NamedTuple):
    """A child that should run: its command line and the configuration it reads."""

    argv: list[str]
    fingerprint: str


def runtime_config(cfg: Settings) -> dict[str, Any]:
    """The effective settings as YAML data for the children, every secret included (file 0600)."""
    return revealed(cfg)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def plan_children(
    runtime: dict[str, Any],
    config_file: Path,
    *,
    only: list[str] | None = None,
    edit_file: Path | None = None,
    setup: bool = False,
) -> dict[str, ChildSpec]:
    """The children the configuration asks for, by name (``reader-0``, ``api``, ...).

    A service the configuration leaves nothing to do (see services.left_out) is not among them.
    """
    py = sys.executable
    conf = ["--config", str(config_file)]
    specs: dict[str, ChildSpec] = {}
    idle = left_out(runtime, setup=setup)
    for name, service in SERVICES.items():
        if (only is not None and name not in only) or name in idle:
            continue
        argv = [py, "-m", service.module, *conf]
        if service.per_bus:
            for i, bus in enumerate(runtime.get("buses", [])):
                specs[f"{name}-{i}"] = ChildSpec(
                    [*argv, "--bus", str(i)], fingerprint(runtime, service.reads, bus)
                )
            continue
        if name == "api" and edit_file is not None:  # the file its settings and setup pages write
            argv += ["--edit-config", str(edit_file)]
        specs[name] = ChildSpec(argv, fingerprint(runtime, service.reads))
    return specs


def own_credentials(
    broker: PrivateBroker, specs: dict[str, ChildSpec], runtime: dict[str, Any], config_file: Path
) -> dict[str, ChildSpec]:
    """Each child reads a configuration with its own broker user (ACL: its own topics).

    The credentials stay the same for a data directory, so they never restart a child.
    """
    out = {}
    for name, spec in specs.items():
        user, password = broker.credentials(name)
        own = config_file.with_name(f"config-{user}.yaml")
        mqtt = {**runtime["mqtt"], "username": user, "password": password}
        write_private(own, yaml.safe_dump({**runtime, "mqtt": mqtt}, sort_keys=False))
        argv = [str(own) if arg == str(config_file) else arg for arg in spec.argv]
        out[name] = spec._replace(argv=argv)
    return out


async def reconcile(
    children: dict[str, Child],
    specs: dict[str, ChildSpec],
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Stop the children no longer wanted or whose configuration changed, start the missing ones.

    ``between`` runs after the stops and before the starts. Returns the names started.
    """
    stale = [
        name
        for name, child in children.items()
        if name not in specs or specs[name].fingerprint != child.fingerprint
    ]
    await asyncio.gather(*(children[name].stop() for name in stale))
    for name in stale:
        del children[name]
    if between is not None:
        await between()
    started = []
    for name, spec in specs.items():
        if name not in children:
            child = Child(name, spec.argv, spec.fingerprint)
            await child.start()
            children[name] = child
            started.append(name)
    return started


class Demo:
    """Simulated packs on pseudo-terminals, one per bus, while no real bus is configured."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.protocol: str | None = None
        self.sims: list[PtyServer] = []
        self.clocks: list[asyncio.Task[None]] = []

    async def buses(self, count: int, protocol: str) -> list[BusSettings]:
        """``count`` simulated buses of ``protocol``, started on first use."""
        if (len(self.sims), self.protocol) != (count, protocol):
            self.close()
            self.workdir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                bus = make_bus(protocol, seed=i + 1)  # a different pack on each bus
                sim = PtyServer(bus, link=self.workdir / f"ttySIM{i}")
                await sim.__aenter__()
                self.sims.append(sim)
                self.clocks.append(asyncio.create_task(bus.run_time(speed=1.0)))
            self.protocol = protocol
            log.info("%d simulated %s pack(s) on %s", count, protocol, self.sims[0].port)
        return [
            BusSettings(
                port=sim.port,
                protocol=protocol,
                poll_interval=1.0,
                packs=[PackSettings(id=pack, name=f"Simulated pack {i + 1}")],
            )
            for i, (sim, pack) in enumerate(zip(self.sims, self.pack_ids(), strict=True))
        ]

    def pack_ids(self) -> list[str]:
        """The simulated packs' ids."""
        return simulated_pack_ids(len(self.sims))

    def close(self) -> None:
        """Stop every simulated pack."""
        for clock in self.clocks:
            clock.cancel()
        for sim in self.sims:
            sim.close()
        self.sims, self.clocks, self.protocol = [], [], None


# what the broker keeps per pack: deleted for packs that are gone, so no page shows them
PACK_RETAINED: Final = tuple(
    spec for spec in TOPICS.values() if spec.retained and spec.pattern.startswith("bms/+/")
)


async def forget_packs(
    mqtt: MqttSettings, packs: list[str], retired: dict[str, str] | None = None
) -> None:
    """Delete the broker's retained messages of ``packs`` (an empty retained message does).

    Each of ``retired`` (service -> why), stopped because the configuration leaves it nothing
    to do, gets a retained status ``offline`` saying so (``detail.left_out``): not a failure,
    so the notifier does not report it down.
    """
    from bmsgate_common import mqtt_client  # here, not at the top: the supervisor's memory

    messages = [
        (spec.topic(pack, mqtt.base_topic), b"") for pack in packs for spec in PACK_RETAINED
    ]
    for service, why in (retired or {}).items():
        status = ServiceStatus(
            service=service, state="offline", ts=utcnow(), version=VERSION, detail={"left_out": why}
        )
        messages.append(
            (
                topics.SERVICE_STATUS.topic(service, mqtt.base_topic),
                status.model_dump_json().encode(),
            )
        )
    password = mqtt.password.get_secret_value() if mqtt.password else None
    try:
        async with asyncio.timeout(5.0):
            conn = await mqtt_client.connect(
                mqtt.host or "127.0.0.1",
                mqtt.port,
                client_id=f"bmsgate-forget-{os.getpid()}",
                username=mqtt.username,
                password=password,
            )
            async with conn:
                for where, payload in messages:
                    conn.publish(where, payload, qos=1, retain=True)
                await conn.drain()
    except (mqtt_client.MqttError, OSError, TimeoutError) as err:
        what = ", ".join([*packs, *(retired or {})])
        log.warning("could not update the broker's retained messages of %s: %s", what, err)


@dataclass
class Supervisor:
    """The running pipeline: broker, simulated packs and children for one configuration."""

    runtime: Path
    simulate: str | None = None
    simulate_packs: int = 0
    only: list[str] | None = None
    edit_file: Path | None = None
    broker: PrivateBroker | None = None
    demo: Demo | None = None
    demo_wanted: bool = False
    setup: bool = False  # the configuration file has no bus yet
    packs: set[str] = field(default_factory=set)  # of the buses whose readers run here
    children: dict[str, Child] = field(default_factory=dict)
    left_out: dict[str, str] | None = None  # services not started, and why (logged on change)
    broker_backoff: float = 1.0  # [s] the private broker's last wait before a restart
    broker_due: float | None = None  # [s] monotonic, when to start the ended private broker

    async def keep_broker(self) -> None:
        """Start the private Mosquitto again, with backoff, when it has ended.

        It comes back on the same port with the same users, so every service's backbone
        reconnects by itself and the readers publish their states again.
        """
        broker, now = self.broker, time.monotonic()
        if broker is None:
            return
        if self.broker_due is None:
            code = broker.exit_code()
            if code is None:
                return
            self.broker_backoff = restart_delay(self.broker_backoff, now - broker.started)
            self.broker_due = now + self.broker_backoff
            log.warning(
                "private mosquitto exited with code %s; restarting it on 127.0.0.1:%d in %.0f s",
                code,
                broker.port,
                self.broker_backoff,
            )
        elif now >= self.broker_due:
            try:
                await asyncio.to_thread(broker.start)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
                self.broker_backoff = restart_delay(self.broker_backoff, 0.0)
                self.broker_due = time.monotonic() + self.broker_backoff
                log.error("%s; trying again in %.0f s", err, self.broker_backoff)
            else:
                self.broker_due = None

    async def effective(self, cfg: Settings) -> Settings:
        """``cfg`` with the private broker and the simulated buses filled in."""
        if cfg.mqtt.host is None:
            base, banks = cfg.mqtt.base_topic, [b.id for b in cfg.banks]
            if self.broker is None:
                self.broker = PrivateBroker(self.runtime / "mosquitto", base=base, banks=banks)
                self.broker.start()
                log.info("private mosquitto on 127.0.0.1:%d", self.broker.port)
            self.broker.update(base=base, banks=banks)
            user, password = self.broker.credentials("admin")  # bmsgate run and its tools
            mqtt = cfg.mqtt.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": self.broker.port,
                    "username": user,
                    "password": SecretStr(password),
                }
            )
            cfg = cfg.model_copy(update={"mqtt": mqtt})
        # the file has no bus yet: the first setup is under way (--simulate is a demo by choice)
        self.setup = not cfg.buses and not self.simulate
        count = self.simulate_packs or (1 if self.simulate or not cfg.buses else 0)
        self.demo_wanted = count > 0
        if count:
            self.demo = self.demo or Demo(self.runtime)
            buses = await self.demo.buses(count, self.simulate or DEMO_PROTOCOL)
            cfg = cfg.model_copy(update={"buses": buses})
        return cfg

    async def apply(self, cfg: Settings) -> Settings:
        """Run what ``cfg`` asks for; returns the effective settings."""
        cfg = await self.effective(cfg)
        config_file = self.runtime / "config.yaml"
        runtime = runtime_config(cfg)
        write_private(config_file, yaml.safe_dump(runtime, sort_keys=False))
        specs = plan_children(
            runtime, config_file, only=self.only, edit_file=self.edit_file, setup=self.setup
        )
        if self.broker is not None and cfg.mqtt.host == "127.0.0.1":  # the private broker
            specs = own_credentials(self.broker, specs, runtime, config_file)
        idle = left_out(runtime, self.only, setup=self.setup)
        if idle != self.left_out:  # at start, and when a change starts or stops a service
            self.left_out = idle
            log.info(
                "services: %s%s",
                ", ".join(specs) or "none",
                "; left out: " + ", ".join(f"{name} ({why})" for name, why in idle.items())
                if idle
                else "",
            )
        readers = self.only is None or "reader" in self.only
        packs = {p.id for bus in cfg.buses for p in bus.packs} if readers else set()
        gone, self.packs = sorted(self.packs - packs), packs
        # stopped for good: a service now idle, the reader of a removed bus
        retired = {
            n: idle.get(n, "its bus is no longer configured")
            for n in self.children
            if n not in specs
        }

        async def retire() -> None:  # the readers of removed packs (the demo's too) have stopped
            if gone or retired:  # after their last "offline": no page shows a removed pack
                await forget_packs(cfg.mqtt, gone, retired)
            if self.demo is not None and not self.demo_wanted:  # a real bus replaced it
                self.demo.close()
                self.demo = None

        preload([spec.argv[2] for spec in specs.values()])  # the zygote imports what runs
        started = await reconcile(self.children, specs, between=retire)
        if started:
            log.debug("started %s", ", ".join(started))
        return cfg

    async def close(self) -> None:
        """Stop every child, then the simulated packs and the broker."""
        await asyncio.gather(*(c.stop() for c in self.children.values()))
        if self.demo is not None:
            self.demo.close()
        if self.broker is not None:
            self.broker.stop()


def _password_unset(cfg: Settings) -> bool:
    """Whether the web password is still to be set (a broken password_file: the API says so)."""
    try:
        return password_store(cfg).current() is None
    except (OSError, ValueError):
        return False


async def supervise(
    cfg: Settings,
    *,
    simulate: str | None = None,
    simulate_packs: int = 0,
    only: list[str] | None = None,
    print_url: bool = True,
    config_file: Path | None = None,
    load: Loader | None = None,
) -> None:
    """Run the pipeline until cancelled, then stop every child cleanly.

    ``simulate_packs`` N > 0 replaces the buses by N simulated ones, one pack and one reader each
    (load and scale-out tests); ``only`` limits the children to those services (an edge machine
    runs only its readers against a central broker). With ``config_file`` and ``load`` the file
    is watched and a valid change is applied (see the module's docstring).
    """
    sup = Supervisor(
        cfg.data_dir.resolve() / "run",
        simulate=simulate,
        simulate_packs=simulate_packs,
        only=only,
        edit_file=config_file,
    )
    try:
        effective = await sup.apply(cfg)
        host = "127.0.0.1" if effective.api.host in ("0.0.0.0", "::") else effective.api.host
        with_api = only is None or "api" in only
        ready = with_api and await asyncio.to_thread(wait_for_port, host, effective.api.port, 15.0)
        if print_url and with_api:
            state = "" if ready else " (not answering yet)"
            url = f"http://{host}:{effective.api.port}/"
            print(f"bmsgate is running: web UI at {url}{state}", flush=True)  # noqa: T201
            if _password_unset(effective):
                print(  # noqa: T201
                    f"bmsgate: no web password is set: whoever opens {url} first sets it. "
                    "Set it now with: bmsgate config password",
                    flush=True,
                )
        if with_api and config_file is not None and not cfg.buses:
            log.info(
                "no bus configured in %s yet: set bmsgate up at http://%s:%d/setup.html "
                "(or run bmsgate setup)",
                config_file,
                host,
                effective.api.port,
            )
        await _watch(sup, config_file, load)
    finally:
        await sup.close()


async def _watch(sup: Supervisor, config_file: Path | None, load: Loader | None) -> None:
    """Apply the configuration file when it changes; restart a child or broker that exits.

    Exit code 2 means a problem only the user can fix (configuration, a port it may not bind):
    restarting would only repeat the message, so that child stays stopped until its
    configuration changes. RESTART_EXIT is a restart asked for over the backbone.
    """
    seen = file_signature(config_file)
    while True:
        await asyncio.sleep(TICK)
        now_seen = file_signature(config_file)
        if load is not None and now_seen is not None and now_seen != seen:
            seen = now_seen
            try:
                cfg = load()
            except ConfigError as err:
                log.error("configuration not applied, services keep running: %s", err)
            else:
                try:
                    await sup.apply(cfg)
                except RuntimeError as err:  # e.g. a private broker wanted, mosquitto missing
                    log.error("configuration %s not applied: %s", config_file, err)
                else:
                    log.info("configuration %s applied", config_file)
        await sup.keep_broker()
        await _restart_exited(sup.children.values())


async def _restart_exited(children: Any) -> None:
    now = time.monotonic()
    for child in children:
        proc = child.process
        if proc is not None and proc.returncode is not None:
            child.process = None
            wait = ended(child.name, proc.returncode, now - child.started, child.backoff)
            if wait is None:
                child.given_up = True
                continue
            child.backoff = wait
            child.restart_at = now + child.backoff
        elif proc is None and not child.given_up and now >= child.restart_at:
            child.restarts += 1
            await child.start()

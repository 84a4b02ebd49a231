"""The lean reader: a bus polled and published without pydantic (``bmsgate run --only reader``).

An edge machine that runs only readers against a central broker keeps each reader small
(docs/performance.md): the polling core (core.py) with its messages made as plain data
(bmsgate_common.plain, held to the models by tests), the settings read through a view of what
the Settings model validated (bmsgate_common.settings_view), and a session with the broker on
bmsgate's MQTT client (bmsgate_common.mqtt_client).

It covers the steady path: polling, states, availability, alarms, the BMS's settings, the
sniffer's state, the service status and its last will, the energy counters. Whatever else the
reader does needs the full reader (service.py) and its models, imported then (memory grows by
13 MB PSS measured, and stays grown until the reader restarts):

* at start, a bus that listens, sniffs, keeps boards awake, passes through, or has a pack
  counting its own SOC (``FULL_FOR``);
* at the first message for this reader on the backbone (a command, a raw lease or its data, a
  sniffer switch, a log or restart request): the lean reader stops polling, hands its port
  over and the full reader takes that message first, then everything as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from bmsgate_common import plain
from bmsgate_common.exits import RESTART_EXIT, USER_ERROR
from bmsgate_common.logs import setup_logging
from bmsgate_common.mqtt_client import Connection, Message, MqttError, Will, connect
from bmsgate_common.settings_view import BusSection, MqttSection, ValidatedSettings, settings_view
from bmsgate_common.topic_routes import ROUTES, topic

from .core import BusPoller
from .counters import CounterStore

log = logging.getLogger("bmsgate_reader.service")

KEEPALIVE: Final = 60  # [s] MQTT keepalive (the client pings, and gives up on a silent broker)
RETRY: Final = (0.5, 10.0)  # [s] first and longest wait before connecting again
RETAINED_WAIT: Final = 5.0  # [s] at most for the retained states read at start
# the messages to a reader, by kind and whose name the topic carries (a restart may name every
# service: ``all``): any of them hands over
INCOMING: Final = (
    ("command", "pack"),
    ("raw_lease", "pack"),
    ("raw_tx", "pack"),
    ("sniff_set", "service"),
    ("service_restart", "services"),
    ("service_logs", "service"),
)


def full_for(bus: BusSection) -> str | None:
    """What of the bus needs the full reader from the start; None if the lean one serves it."""
    needs = [
        ("listen", bus.listen),
        ("sniff", bus.sniff),
        ("keep_awake", bus.keep_awake > 0),
        ("passthrough", bus.passthrough is not None),
        ("own_soc", any(p.own_soc for p in bus.packs)),
    ]
    names = [name for name, on in needs if on]
    return ", ".join(names) or None


class PlainMessages:
    """The reader's messages as plain data (bmsgate_common.plain)."""

    def pack_state(self, fields: dict[str, Any]) -> plain.Message:
        return plain.pack_state(fields)

    def availability(self, **fields: Any) -> plain.Message:
        return plain.availability(**fields)

    def alarm_event(self, **fields: Any) -> plain.Message:
        return plain.alarm_event(**fields)

    def bms_settings(self, settings: list[dict[str, Any]], **fields: Any) -> plain.Message:
        return plain.bms_settings(settings=settings, **fields)

    def sniff_state(self, **fields: Any) -> plain.Message:
        return plain.sniff_state(**fields)


class Broker:
    """The lean reader's backbone session on bmsgate's MQTT client: connected again when lost."""

    def __init__(
        self,
        mqtt: MqttSection,
        service: str,
        version: str,
        incoming: Callable[[str, bytes], None],
    ) -> None:
        self.mqtt = mqtt
        self.service = service
        self.incoming = incoming  # (topic, payload) of a message not retained
        self.status_topic = topic("service_status", service, mqtt.base_topic)
        self.will = Will(self.status_topic, plain.will(service, version))
        self.filters: list[tuple[str, int]] = []
        self.connects = 0  # connections made so far
        self.unsent = 0  # publishes that failed while the broker was away
        self.up = asyncio.Event()  # set at the first connection
        self.session: Connection | None = None
        self._taps: dict[str, asyncio.Queue[tuple[str, bytes, bool]]] = {}

    @property
    def connected(self) -> bool:
        return self.session is not None and not self.session.closed

    @property
    def where(self) -> str:
        return f"mqtt://{self.mqtt.host}:{self.mqtt.port}"

    def _message(self, msg: Message) -> None:
        if (tap := self._taps.get(msg.topic)) is not None:
            tap.put_nowait((msg.topic, msg.payload, msg.retain))
        elif not msg.retain:
            self.incoming(msg.topic, msg.payload)

    async def connect(self) -> None:
        """Connect once and subscribe; MqttError or OSError if not."""
        host = self.mqtt.host
        assert host is not None  # a lean run has a broker configured (bmsgate.run_check)
        session = await connect(
            host,
            self.mqtt.port,
            client_id=f"bmsgate-{self.service}-{os.getpid()}",
            keepalive=KEEPALIVE,
            will=self.will,
            username=self.mqtt.username,
            password=self.mqtt.password or "",
            on_message=self._message,
        )
        try:
            if self.filters:
                await session.subscribe(self.filters)
        except BaseException:
            session.abort()
            raise
        self.session = session
        self.connects += 1
        self.up.set()

    async def keep(self, online: Callable[[], Awaitable[Any]]) -> None:
        """Stay connected, for ever: connect again when lost; ``online()`` after each connection."""
        delay = RETRY[0]
        while True:
            if self.session is not None:
                await asyncio.wait([self.session.lost])
                if self.session is not None:  # not closed by us
                    log.warning("backbone unreachable (connection lost); will keep retrying")
                    self.session = None
                continue
            try:
                await self.connect()
            except (OSError, MqttError) as err:
                if delay == RETRY[0]:
                    log.warning("backbone %s not reachable (%s); retrying", self.where, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY[1])
                continue
            if delay != RETRY[0]:
                log.info("backbone connected at %s", self.where)
            delay = RETRY[0]
            await online()

    async def publish(self, kind: str, name: str, payload: bytes) -> bool:
        """Publish on topic ``kind`` for ``name``; False when the broker is away."""
        _, retained, qos = ROUTES[kind]
        session = self.session
        try:
            if session is None:
                raise MqttError("not connected")
            await session.publish_acked(
                topic(kind, name, self.mqtt.base_topic), payload, qos, retained
            )
        except MqttError:
            self.unsent += 1
            return False
        return True

    async def read_retained(self, topics: list[str]) -> dict[str, bytes]:
        """The retained message of each of ``topics`` now, read once (after our own status)."""
        inbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        wanted = [*topics, self.status_topic]
        for name in wanted:
            self._taps[name] = inbox
        found: dict[str, bytes] = {}
        try:
            async with asyncio.timeout(RETAINED_WAIT):
                session = self.session
                if session is None:
                    raise MqttError("not connected")
                await session.subscribe([(t, 1) for t in wanted])  # answered in this order
                while True:
                    where, payload, retain = await inbox.get()
                    if where == self.status_topic:
                        break
                    if retain:
                        found[where] = payload
        except (TimeoutError, MqttError) as err:
            log.warning("retained states not all read: %s", type(err).__name__)
        finally:
            for name in wanted:
                self._taps.pop(name, None)
            if self.session is not None:
                with contextlib.suppress(MqttError):  # nothing waits for the UNSUBACK
                    self.session.unsubscribe(wanted)
        return found

    async def close(self) -> None:
        """Say goodbye (no last will then) and close."""
        session, self.session = self.session, None  # its end is no outage
        if session is not None:
            await session.close()


class LeanReader(BusPoller):
    """The polling core with plain messages on the lean connection."""

    def __init__(self, view: ValidatedSettings, index: int) -> None:
        self.view = view
        self.index = index
        service = f"reader-{index}"
        bus = view.buses[index]
        self.handover: tuple[str, bytes] | None = None
        self.broker = Broker(view.mqtt, service, view.version, self._incoming)
        self._main: asyncio.Task[Any] | None = None
        super().__init__(
            bus,
            PlainMessages(),
            service,
            view.mqtt.heartbeat,
            counters=CounterStore(view.data_dir / "reader"),
        )
        base = view.mqtt.base_topic
        names = {"pack": list(self.packs), "service": [service], "services": [service, "all"]}
        self.broker.filters = [
            (topic(kind, name, base), 1) for kind, whose in INCOMING for name in names[whose]
        ]
        self.started = plain.utcnow()

    async def send(self, kind: str, name: str, message: Any) -> bool:
        return await self.broker.publish(kind, name, plain.encode(message))

    @property
    def connects(self) -> int:
        return self.broker.connects

    def _incoming(self, where: str, payload: bytes) -> None:
        if self.handover is None:
            self.handover = (where, payload)
            log.info("a message on %s needs the full reader: starting it", where)
            if self._main is not None:
                self._main.cancel()

    async def status(self) -> bool:
        """Send this service's retained status ``online`` with its counters."""
        detail = {"dropped": 0, "unsent": self.broker.unsent, **self.counters_detail()}
        message = plain.service_status(
            self.service, "online", plain.utcnow(), self.view.version, self.started, detail
        )
        return await self.send("service_status", self.service, message)

    async def _beat(self) -> None:
        while True:
            if self.broker.connected:
                await self.status()
            await asyncio.sleep(self.heartbeat)

    async def serve(self) -> tuple[str, bytes] | None:
        """Poll until cancelled or handed over; the message to hand over, if any."""
        self._main = asyncio.current_task()
        keeper = asyncio.create_task(self.broker.keep(self.status))
        beat: asyncio.Task[None] | None = None
        try:
            await self.broker.up.wait()
            await self.status()
            base = self.view.mqtt.base_topic
            states = [topic("state", pack, base) for pack in self.packs]
            retained = await self.broker.read_retained(states)
            self.continue_counters(
                {
                    pack: json.loads(retained[where])
                    for pack, where in zip(self.packs, states, strict=True)
                    if where in retained
                }
            )
            await self.send_sniff_state()
            beat = asyncio.create_task(self._beat())
            await self.poll_forever()
        except asyncio.CancelledError:
            if self.handover is None:
                raise
        finally:
            if beat is not None:
                beat.cancel()
            if self.handover is None:  # stopping: the packs offline, the status too
                await self.announce_stop()
                offline = plain.service_status(
                    self.service, "offline", plain.utcnow(), self.view.version
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self.send("service_status", self.service, offline)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self.save_counters()
            await self.broker.close()
            await self.link.close()
        return self.handover


async def _until_signal(reader: LeanReader) -> tuple[str, bytes] | None:
    task = asyncio.ensure_future(reader.serve())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def full(view: ValidatedSettings, index: int, handover: tuple[str, bytes] | None) -> int:
    """Run the full reader (service.py) in this process, ``handover`` its first message."""
    from bmsgate_common.service import restart_asked, until_signal
    from bmsgate_common.settings import ConfigError, Settings

    from .service import run_reader

    try:
        cfg = Settings.model_validate(view.settings)
    except (ConfigError, ValueError) as err:  # validated before: not expected
        print(f"bmsgate reader: {err}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(until_signal(run_reader(cfg, index, handover=handover)))
    return RESTART_EXIT if restart_asked() else 0


def main(runtime: Path, index: int) -> int:
    """Read bus ``index`` of the settings ``runtime`` (bmsgate.run_check's) until stopped."""
    view = settings_view(json.loads(runtime.read_text()))
    setup_logging(view.log_level, f"reader-{index}")
    if not 0 <= index < len(view.buses):
        print(f"bmsgate reader: no bus {index} configured", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    why = full_for(view.buses[index])
    if why is not None:
        log.info("the full reader runs this bus (%s)", why)
        return full(view, index, None)
    reader = LeanReader(view, index)
    with contextlib.suppress(KeyboardInterrupt):
        handover = asyncio.run(_until_signal(reader))
        if handover is not None:
            return full(view, index, handover)
    return 0

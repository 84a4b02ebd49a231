"""The lean reader: a bus polled and published without pydantic (``bmsgate run --only reader``).

An edge machine that runs only readers against a central broker keeps each reader small
(docs/performance.md): the polling core (core.py) with its messages made as plain data
(bmsgate_common.plain, held to the models by tests), the settings read through a view of what
the Settings model validated (bmsgate_common.settings_view), and the session with the broker
that the full reader's Backbone sits on too (bmsgate_common.session).

It covers the steady path: polling, states, availability, alarms, the BMS's settings, the
sniffer's state, the service status and its last will, the energy counters. Whatever else the
reader does needs the full reader (service.py) and its models, imported then (memory grows by
13 MB PSS measured, once for the process serving every bus, and stays grown until the process
restarts):

* at start, a bus that listens, sniffs, keeps boards awake, passes through, or has a pack
  counting its own SOC (``FULL_FOR``);
* at the first message for this reader on the backbone (a command, a raw lease or its data, a
  sniffer switch, a log or restart request): the lean reader stops polling, hands its port
  over and the full reader takes that message first, then everything as before; the process's
  other buses stay lean (``run_bus``, each bus a task of bmsgate.edge_buses).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

from bmsgate_common import plain
from bmsgate_common.exits import USER_ERROR
from bmsgate_common.session import BackboneSession
from bmsgate_common.settings_view import BusSection, ValidatedSettings
from bmsgate_common.topic_routes import ROUTES, topic

from .core import BusPoller
from .counters import CounterStore

log = logging.getLogger("bmsgate_reader.service")

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


class LeanReader(BusPoller):
    """The polling core with plain messages on the lean connection."""

    def __init__(self, view: ValidatedSettings, index: int) -> None:
        self.view = view
        self.index = index
        service = f"reader-{index}"
        bus = view.buses[index]
        self.handover: tuple[str, bytes] | None = None
        mqtt = view.mqtt
        assert mqtt.host is not None  # a lean run has a broker configured (bmsgate.run_check)
        self.session = BackboneSession(
            mqtt.host,
            mqtt.port,
            service,
            plain.will(service, view.version),
            base_topic=mqtt.base_topic,
            username=mqtt.username,
            password=mqtt.password or "",
            deliver=self._incoming,
            logger=log,
        )
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
        self.session.filters = [
            (topic(kind, name, base), 1) for kind, whose in INCOMING for name in names[whose]
        ]
        self._for_us = {where for where, _ in self.session.filters}
        self.started = plain.utcnow()

    async def send(self, kind: str, name: str, message: Any) -> bool:
        _, retained, qos = ROUTES[kind]
        where = topic(kind, name, self.view.mqtt.base_topic)
        return await self.session.publish(where, plain.encode(message), qos, retained)

    @property
    def connects(self) -> int:
        return self.session.connects

    def _incoming(self, where: str, payload: bytes, retain: bool) -> None:
        # a message for this reader, not one the read of retained states taps
        if not retain and where in self._for_us and self.handover is None:
            self.handover = (where, payload)
            log.info("a message on %s needs the full reader: starting it", where)
            if self._main is not None:
                self._main.cancel()

    async def status(self) -> bool:
        """Send this service's retained status ``online`` with its counters."""
        detail = {**self.session.counts(), **self.counters_detail()}
        message = plain.service_status(
            self.service, "online", plain.utcnow(), self.view.version, self.started, detail
        )
        return await self.send("service_status", self.service, message)

    async def serve(self) -> tuple[str, bytes] | None:
        """Poll until cancelled or handed over; the message to hand over, if any."""
        self._main = asyncio.current_task()
        session = self.session
        beat: asyncio.Task[None] | None = None
        try:
            await session.start(self.status)
            base = self.view.mqtt.base_topic
            states = [topic("state", pack, base) for pack in self.packs]
            retained = await session.read_retained(states, self.status, topic("state", "+", base))
            self.continue_counters(
                {
                    pack: json.loads(retained[where])
                    for pack, where in zip(self.packs, states, strict=True)
                    if where in retained
                }
            )
            await self.send_sniff_state()
            beat = asyncio.create_task(session.heartbeat(self.status, self.heartbeat))
            await self.poll_forever()
        except asyncio.CancelledError:
            if self.handover is None:
                raise
        finally:
            if beat is not None:
                beat.cancel()
            await session.stop_connecting()
            if self.handover is None:  # stopping: the packs offline, the status too
                await self.announce_stop()
                offline = plain.service_status(
                    self.service, "offline", plain.utcnow(), self.view.version
                )
                await session.say_offline(plain.encode(offline))
            self.save_counters()
            await session.close()
            await self.link.close()
        return self.handover


async def run_full(view: ValidatedSettings, index: int, handover: tuple[str, bytes] | None) -> int:
    """Run the full reader (service.py) for bus ``index``, ``handover`` its first message.

    Its process's other buses go on: it runs as a service hosted in the process
    (bmsgate_common.hosted.Hosted, set by the caller), so a restart it asks for ends only it.
    """
    from bmsgate_common.service import until_signal
    from bmsgate_common.settings import ConfigError, Settings

    from .service import run_reader

    try:
        cfg = Settings.model_validate(view.settings)
    except (ConfigError, ValueError) as err:  # validated before: not expected
        log.error("bmsgate reader: %s", err)
        return USER_ERROR
    await until_signal(run_reader(cfg, index, handover=handover))
    return 0


async def run_bus(view: ValidatedSettings, index: int) -> int:
    """Read bus ``index`` until cancelled: lean, or full from the start or from a handover.

    The exit code as a process's: USER_ERROR for a bus not configured, else 0.
    """
    if not 0 <= index < len(view.buses):
        log.error("bmsgate reader: no bus %d configured", index)
        return USER_ERROR
    why = full_for(view.buses[index])
    if why is not None:
        log.info("the full reader runs this bus (%s)", why)
        return await run_full(view, index, None)
    handover = await LeanReader(view, index).serve()
    return 0 if handover is None else await run_full(view, index, handover)

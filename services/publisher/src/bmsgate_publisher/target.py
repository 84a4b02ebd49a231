"""One external broker: a connection of its own (bmsgate's MQTT client), reconnecting forever.

The service never waits for a target: it drops messages into the target's ``Mailbox`` (bounded,
the latest message per topic wins) and goes on. A target slower than the packs therefore gets
the newest values of each pack, never a queue of old ones (``replaced`` in the status), and a
value that waited longer than ``stale_after`` is not sent at all (``expired``): offline is
offline, and an old value never arrives looking new. Retained messages are remembered and sent
again after every reconnect (a restarted broker may have lost them) and after Home Assistant's
birth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from bmsgate_common import mqtt_client
from bmsgate_common.mqtt_client import Connection, MqttError, Will
from bmsgate_common.settings import MqttSettings, TargetSettings
from bmsgate_outputs.discovery import config_topic
from bmsgate_outputs.plan import TargetMessage
from bmsgate_outputs.topics import TargetTopics, subscription

log = logging.getLogger(__name__)

RETAINED_WAIT: Final = 0.5  # [s] for the broker's retained discovery configs after subscribing
CommandSink = Callable[[str, str, bytes], None]  # (target name, topic, payload); never raises
MAILBOX_LIMIT = 5000  # topics waiting, at least; a link fits it to twice the largest tick
MAX_BACKOFF = 30.0  # [s] between connection attempts
# messages handed to the client before waiting for the broker: at 1,000 packs a tick is 2,000
# messages, and waiting for each (QoS 1: a round trip; QoS 0: a write) made ~75 a second
WINDOW: Final = 500
KEEPALIVE: Final = 30  # [s]
ACK_TIMEOUT: Final = 10.0  # [s] for the broker to acknowledge a window (or the start's messages)


class Mailbox:
    """Messages waiting for the broker, at most one per topic (the newest), oldest first."""

    def __init__(self, limit: int = MAILBOX_LIMIT, max_age: float | None = None) -> None:
        self.limit = limit
        self.max_age = max_age  # [s] a perishable message older than this is not sent
        self.dropped = 0  # the oldest, when more topics wait than ``limit``
        self.replaced = 0  # a waiting message replaced by a newer one on its topic
        self.expired = 0  # perishable messages that waited past ``max_age``
        self._items: OrderedDict[str, tuple[TargetMessage, float]] = OrderedDict()
        self._ready = asyncio.Event()

    def put(self, message: TargetMessage, *, if_absent: bool = False, at: float = 0.0) -> None:
        """Queue ``message`` (made at monotonic ``at``, else now), replacing a waiting one."""
        if message.topic in self._items:
            if if_absent:
                return
            del self._items[message.topic]
            self.replaced += 1
        self._items[message.topic] = (message, at or time.monotonic())
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
            self.dropped += 1
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def fresh(self, message: TargetMessage, at: float, now: float) -> bool:
        """Whether ``message`` (made at ``at``) may still go; counts the ones that may not."""
        if message.perishable and self.max_age is not None and now - at > self.max_age:
            self.expired += 1
            return False
        return True

    async def take_stamped(self) -> list[tuple[TargetMessage, float]]:
        """Wait for messages and take all of them, each with when it was made."""
        await self._ready.wait()
        self._ready.clear()
        items = list(self._items.values())
        self._items.clear()
        return items

    async def take(self) -> list[TargetMessage]:
        """Wait for messages and take all of them."""
        return [m for m, _ in await self.take_stamped()]


ConfigSink = Callable[[str, str, bytes], None]  # (target, pack, retained discovery config)


class TargetLink:
    """The connection to one target broker."""

    def __init__(
        self,
        target: TargetSettings,
        backbone: MqttSettings,
        commands: CommandSink,
        packs: Iterable[str] = (),
        configs: ConfigSink | None = None,
        stale_after: float | None = None,
    ) -> None:
        self.target = target
        self.configs = configs  # a pack's discovery config as the broker kept it from before
        self.packs = list(packs)  # configured packs and banks this target shows
        self.name = target.name
        self.topics = TargetTopics(target.topic_prefix)
        self.commands = commands
        self.mailbox = Mailbox(max_age=stale_after)
        self.retained: dict[str, TargetMessage] = {}  # the last retained message per topic
        self._retained_at: dict[str, float] = {}  # when each was made (monotonic)
        self.behind = False  # values were replaced before they could be sent (logged once)
        self.connected = False
        self.error: str | None = None  # why the last connection failed or broke, in one line
        self.sent = 0
        self.failures = 0
        if target.host is None:  # the backbone broker itself
            self.host = backbone.host or "127.0.0.1"
            self.port = target.port or backbone.port
            self.username = target.username or backbone.username
            password = target.password or backbone.password
        else:
            self.host = target.host
            self.port = target.port or (8883 if target.tls else 1883)
            self.username = target.username
            password = target.password
        self._password = password.get_secret_value() if password else None
        self._birth: asyncio.Task[None] | None = None

    def offer(self, message: TargetMessage) -> None:
        """Send ``message`` when the broker is there; returns at once."""
        self.mailbox.put(message)

    def fit(self, tick: int) -> None:
        """Make room for twice the messages of the largest tick (``tick`` messages now)."""
        self.mailbox.limit = max(self.mailbox.limit, 2 * tick)

    def counters(self) -> dict[str, int | bool | str | None]:
        """Health figures for the service status; ``_error`` is None while connected."""
        box = self.mailbox
        return {
            f"{self.name}_connected": self.connected,
            f"{self.name}_sent": self.sent,
            f"{self.name}_dropped": box.dropped,
            f"{self.name}_replaced": box.replaced,  # older values never sent: a newer one went
            f"{self.name}_expired": box.expired,
            f"{self.name}_waiting": len(box),
            f"{self.name}_error": self.error,  # why it is not connected, in one line
        }

    def _tls(self) -> ssl.SSLContext | None:
        if not self.target.tls:
            return None
        return mqtt_client.tls_context(str(self.target.ca_file) if self.target.ca_file else None)

    async def _connect(self) -> Connection:
        return await mqtt_client.connect(
            self.host,
            self.port,
            client_id=self.target.client_id or f"bmsgate-{self.name}-{os.getpid()}",
            keepalive=KEEPALIVE,
            will=Will(self.topics.gateway_availability(), b"offline", qos=1, retain=True),
            username=self.username,
            password=self._password,
            tls=self._tls(),
        )

    async def run(self) -> None:
        """Connect, send and listen forever; an outage is logged once, then retried quietly."""
        backoff = 1.0
        where = f"{self.host}:{self.port}"
        while True:
            try:
                async with await self._connect() as conn:
                    log.info("target %s connected to %s", self.name, where)
                    self.connected = True
                    self.error = None
                    backoff = 1.0
                    try:
                        await self._session(conn)
                    except asyncio.CancelledError:  # a clean stop sends no last will: say it
                        with contextlib.suppress(MqttError, OSError, TimeoutError):
                            async with asyncio.timeout(2.0):
                                await self._goodbye(conn)
                        raise
            except (MqttError, OSError) as err:
                self.error = " ".join(str(err).split()) or type(err).__name__  # one line
                if self.connected or self.failures == 0:
                    log.warning("target %s (%s) unreachable: %s; retrying", self.name, where, err)
                self.failures += 1
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _acked(self, conn: Connection) -> None:
        """Wait until the broker has every message handed to ``conn``; MqttError if it does not."""
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await conn.drain()
        except TimeoutError as err:
            raise MqttError(f"target {self.name}: no acknowledgement in time") from err

    async def _session(self, conn: Connection) -> None:
        filters = [self.topics.command_subscription()]
        dongle = self.target.dongle
        if dongle.enabled:
            filters.append(subscription(dongle.mos_topic, self.target.topic_prefix))
        if self.target.homeassistant.enabled:
            filters.append(self._birth_topic())
            if self.configs is not None:  # what HA was told before: its components stay
                filters += self._config_topics()
        await conn.subscribe([(f, 1) for f in dict.fromkeys(filters)])
        for pack in self.packs:
            topic = self.topics.availability(pack)
            if topic not in self.retained:
                # nothing current known yet (a start): what the broker kept from before must not
                # show as current when the gateway comes online; a fresh state sets it online
                conn.publish(topic, b"offline", qos=1, retain=True)
        conn.publish(self.topics.gateway_availability(), b"online", qos=1, retain=True)
        await self._acked(conn)
        self._requeue()  # the broker may have restarted without its retained store
        listen = asyncio.create_task(self._listen(conn))
        if self.configs is not None and self.target.homeassistant.enabled:
            # the configs kept from before arrive first, so a smaller one never replaces them
            await asyncio.sleep(RETAINED_WAIT)
        tasks = {asyncio.create_task(self._send(conn)), listen}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _goodbye(self, conn: Connection) -> None:
        conn.publish(self.topics.gateway_availability(), b"offline", qos=1, retain=True)
        await conn.drain()

    def _config_topics(self) -> dict[str, str]:
        prefix = self.target.homeassistant.discovery_prefix
        return {config_topic(prefix, pack): pack for pack in self.packs}

    def _birth_topic(self) -> str:
        return f"{self.target.homeassistant.discovery_prefix}/status"

    def _requeue(self) -> None:
        for topic, message in self.retained.items():
            at = self._retained_at.get(topic, 0.0)
            self.mailbox.put(message, if_absent=True, at=at)  # a waiting one is newer

    async def _send(self, conn: Connection) -> None:
        box = self.mailbox
        replaced = box.replaced
        while True:
            batch = await box.take_stamped()
            self._note_pace(box.replaced > replaced)
            replaced = box.replaced
            for i in range(0, len(batch), WINDOW):
                now = time.monotonic()
                window = [(m, at) for m, at in batch[i : i + WINDOW] if box.fresh(m, at, now)]
                try:
                    await self._publish_window(conn, window)
                except MqttError:
                    for unsent, at in batch[i:]:  # keep the rest (newer than the retained cache)
                        box.put(unsent, if_absent=True, at=at)
                    raise

    def _note_pace(self, behind: bool) -> None:
        """Say once when the broker falls behind the packs, and once when it catches up."""
        if behind and not self.behind:
            log.warning(
                "target %s takes messages slower than they come: only the newest value of "
                "each topic is sent (replaced in the status)",
                self.name,
            )
        elif self.behind and not behind:
            log.info("target %s keeps up again", self.name)
        self.behind = behind

    async def _publish_window(
        self, conn: Connection, window: list[tuple[TargetMessage, float]]
    ) -> None:
        """Hand the whole window to the connection, then wait once until the broker has it.

        Waiting for each message (a write, at QoS 1 a round trip) made ~75 messages a second;
        every message is written at once and only the acknowledgements are waited for.
        """
        for message, _ in window:
            conn.publish(message.topic, message.payload, message.qos, message.retain)
        await self._acked(conn)
        self.sent += len(window)
        for message, at in window:
            if message.retain:
                self.retained[message.topic] = message
                self._retained_at[message.topic] = at

    async def _listen(self, conn: Connection) -> None:
        birth = self._birth_topic()
        async for incoming in conn.messages():
            topic = incoming.topic
            payload = incoming.payload
            if self.target.homeassistant.enabled and topic == birth:
                if payload == b"online":
                    self._announce_later()
                continue
            if self.configs is not None and topic in (ours := self._config_topics()):
                if incoming.retain and payload:
                    self.configs(self.name, ours[topic], payload)
                # else our own config coming back: the broker sends a subscriber's live copies
                # without the retain flag, and a discovery config is never a command
                continue
            if incoming.retain:
                continue  # a stale command someone left retained is never carried out
            self.commands(self.name, topic, payload)

    def _announce_later(self) -> None:
        """Home Assistant (re)started: send the retained messages again, after a short delay."""

        async def announce() -> None:
            await asyncio.sleep(self.target.homeassistant.birth_delay)
            log.info("target %s: Home Assistant is online; announcing again", self.name)
            for message in self.retained.values():
                self.mailbox.put(message, if_absent=True)

        if self._birth is None or self._birth.done():
            self._birth = asyncio.create_task(announce())

    async def close(self) -> None:
        """Stop a pending re-announcement."""
        if self._birth:
            self._birth.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._birth

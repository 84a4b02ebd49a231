"""One external broker: its own aiomqtt client in its own task, reconnecting forever.

The service never waits for a target: it drops messages into the target's ``Mailbox`` (bounded,
the latest message per topic wins) and goes on. Retained messages are remembered and sent again
after every reconnect (a restarted broker may have lost them) and after Home Assistant's birth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

import aiomqtt

from bmsgate_common.settings import MqttSettings, TargetSettings
from bmsgate_common.tasks import quiet_late_socket_callbacks, seen_disconnect
from bmsgate_outputs.discovery import config_topic
from bmsgate_outputs.plan import TargetMessage
from bmsgate_outputs.topics import TargetTopics, subscription

log = logging.getLogger(__name__)

RETAINED_WAIT: Final = 0.5  # [s] for the broker's retained discovery configs after subscribing
CommandSink = Callable[[str, str, bytes], None]  # (target name, topic, payload); never raises
MAILBOX_LIMIT = 5000  # topics waiting; far above packs x values, so a drop means a stuck broker
MAX_BACKOFF = 30.0  # [s] between connection attempts
# publishes awaiting their PUBACK at once: QoS 1 over a 30 ms internet link one by one would
# take 20 s for 700 messages; aiomqtt warns above 10 pending calls
IN_FLIGHT = 8


class Mailbox:
    """Messages waiting for the broker, at most one per topic (the newest), oldest first."""

    def __init__(self, limit: int = MAILBOX_LIMIT) -> None:
        self.limit = limit
        self.dropped = 0
        self._items: OrderedDict[str, TargetMessage] = OrderedDict()
        self._ready = asyncio.Event()

    def put(self, message: TargetMessage, *, if_absent: bool = False) -> None:
        """Queue ``message``, replacing a waiting one on the same topic; never blocks."""
        if message.topic in self._items:
            if if_absent:
                return
            del self._items[message.topic]
        self._items[message.topic] = message
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
            self.dropped += 1
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def take(self) -> list[TargetMessage]:
        """Wait for messages and take all of them."""
        await self._ready.wait()
        self._ready.clear()
        items = list(self._items.values())
        self._items.clear()
        return items


def _payload(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return b"" if value is None else str(value).encode()


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
    ) -> None:
        self.target = target
        self.configs = configs  # a pack's discovery config as the broker kept it from before
        self.packs = list(packs)  # configured packs and banks this target shows
        self.name = target.name
        self.topics = TargetTopics(target.topic_prefix)
        self.commands = commands
        self.mailbox = Mailbox()
        self.retained: dict[str, TargetMessage] = {}  # the last retained message per topic
        self.connected = False
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

    def counters(self) -> dict[str, int | bool]:
        """Health figures for the service status."""
        return {
            f"{self.name}_connected": self.connected,
            f"{self.name}_sent": self.sent,
            f"{self.name}_dropped": self.mailbox.dropped,
        }

    def _tls(self) -> ssl.SSLContext | None:
        if not self.target.tls:
            return None
        ca = str(self.target.ca_file) if self.target.ca_file else None
        return ssl.create_default_context(cafile=ca)

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self._password,
            identifier=self.target.client_id or f"bmsgate-{self.name}-{os.getpid()}",
            will=aiomqtt.Will(self.topics.gateway_availability(), b"offline", qos=1, retain=True),
            tls_context=self._tls(),
            keepalive=30,
            timeout=10,
            logger=logging.getLogger(f"{__name__}.aiomqtt"),
        )

    async def run(self) -> None:
        """Connect, send and listen forever; an outage is logged once, then retried quietly."""
        backoff = 1.0
        where = f"{self.host}:{self.port}"
        quiet_late_socket_callbacks(asyncio.get_running_loop())  # after a freeze: no traceback
        while True:
            client = self._client()
            try:
                async with client:
                    log.info("target %s connected to %s", self.name, where)
                    self.connected = True
                    backoff = 1.0
                    try:
                        await self._session(client)
                    except asyncio.CancelledError:  # a clean stop sends no last will: say it
                        with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                            async with asyncio.timeout(2.0):
                                await self._goodbye(client)
                        raise
            except (aiomqtt.MqttError, OSError) as err:
                if self.connected or self.failures == 0:
                    log.warning("target %s (%s) unreachable: %s; retrying", self.name, where, err)
                self.failures += 1
            finally:
                seen_disconnect(client)  # read here: a reconnect prints no stray error later
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.command_subscription(), qos=1)
        dongle = self.target.dongle
        if dongle.enabled:
            mos = subscription(dongle.mos_topic, self.target.topic_prefix)
            if mos != self.topics.command_subscription():
                await client.subscribe(mos, qos=1)
        if self.target.homeassistant.enabled:
            await client.subscribe(self._birth_topic(), qos=1)
            if self.configs is not None:  # what HA was told before: its components stay
                for topic in self._config_topics():
                    await client.subscribe(topic, qos=1)
        for pack in self.packs:
            topic = self.topics.availability(pack)
            if topic not in self.retained:
                # nothing current known yet (a start): what the broker kept from before must not
                # show as current when the gateway comes online; a fresh state sets it online
                await client.publish(topic, b"offline", qos=1, retain=True)
        await client.publish(self.topics.gateway_availability(), b"online", qos=1, retain=True)
        self._requeue()  # the broker may have restarted without its retained store
        listen = asyncio.create_task(self._listen(client))
        if self.configs is not None and self.target.homeassistant.enabled:
            # the configs kept from before arrive first, so a smaller one never replaces them
            await asyncio.sleep(RETAINED_WAIT)
        tasks = {asyncio.create_task(self._send(client)), listen}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.gateway_availability(), b"offline", qos=1, retain=True)

    def _config_topics(self) -> dict[str, str]:
        prefix = self.target.homeassistant.discovery_prefix
        return {config_topic(prefix, pack): pack for pack in self.packs}

    def _birth_topic(self) -> str:
        return f"{self.target.homeassistant.discovery_prefix}/status"

    def _requeue(self) -> None:
        for message in self.retained.values():
            self.mailbox.put(message, if_absent=True)  # a waiting one is newer

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            batch = await self.mailbox.take()
            for i in range(0, len(batch), IN_FLIGHT):
                chunk = batch[i : i + IN_FLIGHT]
                try:
                    await asyncio.gather(*(self._publish(client, m) for m in chunk))
                except aiomqtt.MqttError:
                    for unsent in batch[i:]:  # keep the rest (newer than the retained cache)
                        self.mailbox.put(unsent, if_absent=True)
                    raise

    async def _publish(self, client: aiomqtt.Client, message: TargetMessage) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        self.sent += 1
        if message.retain:
            self.retained[message.topic] = message

    async def _listen(self, client: aiomqtt.Client) -> None:
        birth = self._birth_topic()
        async for incoming in client.messages:
            topic = incoming.topic.value
            payload = _payload(incoming.payload)
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

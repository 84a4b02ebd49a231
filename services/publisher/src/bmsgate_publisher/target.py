"""One external broker: its own aiomqtt client in its own task, reconnecting forever.

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

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS, MQTTMessageInfo

from bmsgate_common.settings import MqttSettings, TargetSettings
from bmsgate_common.tasks import quiet_late_socket_callbacks, seen_disconnect
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
IN_FLIGHT: Final = 100  # QoS 1 publishes the client leaves unacknowledged at once
DONE_POLL: Final = 0.005  # [s] between looks at whether a window's last messages are through


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

    def counters(self) -> dict[str, int | bool]:
        """Health figures for the service status."""
        box = self.mailbox
        return {
            f"{self.name}_connected": self.connected,
            f"{self.name}_sent": self.sent,
            f"{self.name}_dropped": box.dropped,
            f"{self.name}_replaced": box.replaced,  # older values never sent: a newer one went
            f"{self.name}_expired": box.expired,
            f"{self.name}_waiting": len(box),
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
            max_inflight_messages=IN_FLIGHT,
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
        for topic, message in self.retained.items():
            at = self._retained_at.get(topic, 0.0)
            self.mailbox.put(message, if_absent=True, at=at)  # a waiting one is newer

    async def _send(self, client: aiomqtt.Client) -> None:
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
                    await self._publish_window(client, window)
                except aiomqtt.MqttError:
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
        self, client: aiomqtt.Client, window: list[tuple[TargetMessage, float]]
    ) -> None:
        """Hand the whole window to the client, then wait until the broker has it.

        aiomqtt's ``publish`` waits for each message (a write, at QoS 1 a round trip); here
        every message is queued on the client at once and only the last one of each QoS is
        waited for: the client writes in order, and a broker acknowledges QoS 1 publishes in
        the order it got them (MQTT 3.1.1 section 4.6), so when those are through, all are.
        """
        paho = client._client  # the underlying paho client: aiomqtt has no publish-and-go
        last: dict[int, MQTTMessageInfo] = {}
        for message, _ in window:
            info = paho.publish(message.topic, message.payload, message.qos, message.retain)
            if info.rc != MQTT_ERR_SUCCESS:
                raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
            last[message.qos] = info
        deadline = time.monotonic() + client.timeout
        while not all(info.is_published() for info in last.values()):
            if time.monotonic() > deadline:
                raise aiomqtt.MqttError(f"target {self.name}: no acknowledgement in time")
            await asyncio.sleep(DONE_POLL)
        self.sent += len(window)
        for message, at in window:
            if message.retain:
                self.retained[message.topic] = message
                self._retained_at[message.topic] = at

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

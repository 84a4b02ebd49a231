"""bmsgate's MQTT client against real Mosquitto brokers, checked with an independent client.

A window of publishes handed over at once and waited for once, the last will, TLS against a CA
made here, logins refused with the reason in words, and a broker that goes away.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from bmsgate_common import mqtt_client
from bmsgate_common.mqtt_client import MqttError, Refused, Will
from tests.support import tls_broker as tb
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tb.Certs:
    return tb.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_mosquitto(tmp_path: Path, certs: tb.Certs) -> Iterator[tb.TlsMosquitto]:
    with tb.running_tls_mosquitto(tmp_path / "tls", certs) as broker:
        yield broker


async def heard(client: aiomqtt.Client, count: int) -> list[tuple[str, bytes, int, bool]]:
    out: list[tuple[str, bytes, int, bool]] = []
    async with asyncio.timeout(10):
        async for m in client.messages:
            out.append((m.topic.value, bytes(m.payload), m.qos, m.retain))  # type: ignore[arg-type]
            if len(out) == count:
                return out
    return out


async def test_a_window_goes_out_in_order_and_drain_waits_for_every_acknowledgement(
    mosquitto: Mosquitto,
) -> None:
    async with aiomqtt.Client(HOST, mosquitto.port) as watch:
        await watch.subscribe("w/#", qos=2)  # each message at the QoS it was published with
        conn = await mqtt_client.connect(HOST, mosquitto.port, client_id="bmsgate-test-window")
        async with conn:
            for i in range(1000):
                conn.publish(f"w/{i % 7}", str(i).encode(), qos=i % 3)
            assert conn.unacked > 0  # nothing acknowledged yet: publish did not wait
            async with asyncio.timeout(10):
                await conn.drain()
            assert conn.unacked == 0
            await conn.publish_acked("w/last", b"end", qos=1, retain=False)
        got = await heard(watch, 1001)
    # each QoS in the order published: the broker forwards QoS 0 at once and QoS 1 and 2 each
    # through its own in-flight queue, so the three streams interleave differently each run
    window = [g for g in got if g[0] != "w/last"]
    for qos in (0, 1, 2):
        sent = [i for i in range(1000) if i % 3 == qos]
        assert [int(p) for _, p, q, _ in window if q == qos] == sent
    assert [g for g in got if g[0] == "w/last"] == [("w/last", b"end", 1, False)]


async def test_subscriptions_incoming_messages_and_the_last_will(mosquitto: Mosquitto) -> None:
    will = Will("bmsgate-test/availability", b"offline", qos=1, retain=True)
    conn = await mqtt_client.connect(
        HOST, mosquitto.port, client_id="bmsgate-test-in", keepalive=5, will=will
    )
    codes = await conn.subscribe([("in/+", 1), ("in0/#", 0)])
    assert list(codes) == [1, 0]
    async with aiomqtt.Client(HOST, mosquitto.port) as other:
        await other.publish("in/a", b"one", qos=1, retain=True)
        await other.publish("in0/b", b"two", qos=0)
        got = []
        async with asyncio.timeout(10):
            async for m in conn.messages():
                got.append((m.topic, m.payload, m.qos, m.retain))
                if len(got) == 2:
                    break
        assert got == [("in/a", b"one", 1, False), ("in0/b", b"two", 0, False)]
        await other.subscribe("bmsgate-test/availability", qos=1)
        conn.abort()  # a broken connection: the broker publishes the will
        assert await heard(other, 1) == [("bmsgate-test/availability", b"offline", 1, False)]
    with pytest.raises(MqttError):
        async for _ in conn.messages():
            pass
    with pytest.raises(MqttError):
        conn.publish("in/a", b"late")


async def test_a_clean_close_sends_no_will_and_a_lost_broker_fails_drain(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    will = Will("bye/availability", b"offline")
    async with aiomqtt.Client(HOST, mosquitto.port) as watch:
        await watch.subscribe("bye/#", qos=1)
        conn = await mqtt_client.connect(HOST, mosquitto.port, client_id="bmsgate-bye", will=will)
        conn.publish("bye/x", b"1", qos=1)
        await conn.close()
        assert conn.closed
        got = await heard(watch, 1)
        await asyncio.sleep(0.3)
        assert got == [("bye/x", b"1", 1, False)]  # no will after DISCONNECT

    lost: list[mqtt_client.Connection] = []
    (tmp_path / "gone").mkdir()
    gone = Mosquitto(tmp_path / "gone")
    gone.start()
    conn = await mqtt_client.connect(HOST, gone.port, client_id="bmsgate-gone", on_lost=lost.append)
    gone.stop()
    async with asyncio.timeout(10):
        await conn.lost
    with pytest.raises(MqttError, match="connection"):
        await conn.drain()
    with pytest.raises(MqttError):
        conn.publish("x", b"1", qos=1)
    assert lost == [conn]


async def test_tls_with_the_ca_file_and_a_login_delivers(
    tls_mosquitto: tb.TlsMosquitto, certs: tb.Certs
) -> None:
    tls = ssl.create_default_context(cafile=str(certs.ca))
    async with aiomqtt.Client(
        "localhost", tls_mosquitto.port, username=tb.USER, password=tb.PASSWORD, tls_context=tls
    ) as watch:
        await watch.subscribe("tls/#", qos=1)
        conn = await mqtt_client.connect(
            "localhost",
            tls_mosquitto.port,
            client_id="bmsgate-tls",
            username=tb.USER,
            password=tb.PASSWORD,
            tls=mqtt_client.tls_context(str(certs.ca)),
        )
        async with conn:
            for i in range(50):
                conn.publish("tls/n", str(i).encode(), qos=1, retain=True)
            async with asyncio.timeout(10):
                await conn.drain()
        got = await heard(watch, 50)
    assert [p for _, p, _, _ in got] == [str(i).encode() for i in range(50)]


async def test_tls_refuses_a_broker_the_system_cas_do_not_vouch_for(
    tls_mosquitto: tb.TlsMosquitto,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await mqtt_client.connect(
            "localhost",
            tls_mosquitto.port,
            client_id="bmsgate-tls-untrusted",
            username=tb.USER,
            password=tb.PASSWORD,
            tls=mqtt_client.tls_context(),
        )


@pytest.mark.parametrize("login", [(tb.USER, "wrong"), (None, None)])
async def test_a_refused_login_names_the_reason(
    tls_mosquitto: tb.TlsMosquitto, certs: tb.Certs, login: tuple[str | None, str | None]
) -> None:
    # Mosquitto answers a wrong password and a missing login alike (CONNACK code 5)
    refused = "connection refused: not authorized (check the user name and password)"
    with pytest.raises(Refused, match=rf"^{re.escape(refused)}$"):
        await mqtt_client.connect(
            "localhost",
            tls_mosquitto.port,
            client_id="bmsgate-refused",
            username=login[0],
            password=login[1],
            tls=mqtt_client.tls_context(str(certs.ca)),
        )


@pytest.mark.parametrize(
    ("module", "loaded"),
    [
        ("mqtt_client", ["mqtt_client", "mqtt_wire"]),
        # the backbone's session rules, which the lean reader shares with the Backbone
        ("session", ["mqtt_client", "mqtt_wire", "session", "topic_routes"]),
    ],
)
def test_the_client_and_the_session_import_no_pydantic_settings_or_models(
    module: str, loaded: list[str]
) -> None:
    # a lean process (the reader alone) speaks MQTT through them without those
    code = (
        f"import sys, bmsgate_common.{module}; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('pydantic', 'bmsgate_common.')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"bmsgate_common.{name}" for name in loaded]

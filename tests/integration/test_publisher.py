"""The publisher as a process between real Mosquitto brokers: backbone in, targets out.

Asserts exact topics, payloads, QoS and retain flags; a TLS target with a password file; a target
that goes away and comes back; Home Assistant's birth message; commands and their confirmation.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiomqtt
import pytest
from packages.outputs.tests.states import make_state

from bmsgate_common.models import Availability, CommandResult, PackState
from bmsgate_publisher.service import BANK_HOLD
from tests.support.procs import Mosquitto, Proc, start_service, write_config
from tests.support.tls_broker import (
    PASSWORD,
    USER,
    Certs,
    TlsMosquitto,
    make_certs,
    running_tls_mosquitto,
)

pytestmark = pytest.mark.integration

TYPE2 = (
    b'{"bat":{"0":2927,"1":2956,"2":2957,"3":2951,"4":2957,"5":2944,"6":2956,"7":2956,'
    b'"8":2955,"9":2957,"10":2957,"11":2956,"12":2937,"13":2956,"14":2956,"15":2945},'
    b'"SOC":27,"PWT":292,"PMV":"47.20","PMA":"6.20","PDV":30.00,"AMV":2951,"TMP":12,'
    b'"ALM":"0,4,0,0,0,0,0","ALMF":1,"DMS":1,"CMS":1}'
)


class Got(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def plain_target(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Mosquitto]:
    broker = Mosquitto(_dir(tmp_path / "plain"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def tls_target(tmp_path: Path, certs: Certs) -> Iterator[TlsMosquitto]:
    with running_tls_mosquitto(tmp_path / "tls", certs) as broker:
        yield broker


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def state(pack: str, **over: Any) -> PackState:
    """The outputs tests' state (the manual's type2 example), as ``pack`` and read just now."""
    fields: dict[str, Any] = {"temperatures": [12.0], "nominal_capacity": 100.0}
    return make_state(pack=pack, name=pack.title(), ts=datetime.now(UTC), **(fields | over))


def client(port: int, certs: Certs | None = None) -> aiomqtt.Client:
    if certs is None:
        return aiomqtt.Client("127.0.0.1", port)
    tls = ssl.create_default_context(cafile=str(certs.ca))
    return aiomqtt.Client("localhost", port, username=USER, password=PASSWORD, tls_context=tls)


async def backbone_send(port: int, *items: tuple[str, str, Any]) -> None:
    """Publish backbone messages as the reader would (retained states and availability)."""
    async with client(port) as c:
        for kind, name, model in items:
            await c.publish(
                f"bmsgate/bms/{name}/{kind}",
                model.model_dump_json(exclude_none=True),
                qos=1,
                retain=kind in ("state", "availability", "daily"),
            )


async def collect(
    port: int, topic: str, seconds: float, certs: Certs | None = None, until: str | None = None
) -> list[Got]:
    """Everything on ``topic`` for ``seconds`` (or until a message on ``until`` arrives)."""
    out: list[Got] = []
    async with client(port, certs) as c:
        await c.subscribe(topic, qos=2)  # qos 2: each message arrives with its publisher's QoS
        try:
            async with asyncio.timeout(seconds):
                async for m in c.messages:
                    out.append(Got(m.topic.value, bytes(m.payload), m.qos, m.retain))  # type: ignore[arg-type]
                    if until is not None and m.topic.value == until:
                        break
        except TimeoutError:
            pass
    return out


async def drain(c: aiomqtt.Client, seconds: float) -> list[bytes]:
    """Payloads arriving on an already subscribed client within ``seconds``."""
    out: list[bytes] = []
    try:
        async with asyncio.timeout(seconds):
            async for m in c.messages:
                out.append(bytes(m.payload))  # type: ignore[arg-type]
    except TimeoutError:
        pass
    return out


async def started(backbone: int, *targets: tuple[int, str, Certs | None]) -> None:
    """Wait until the publisher is up: online on the backbone and on each (port, prefix, certs).

    A fixed sleep is not enough: importing the service alone takes seconds on a loaded machine.
    """
    status = "bmsgate/service/publisher/status"
    got = await collect(backbone, status, 60, until=status)
    assert b'"online"' in last(got, status).payload, got
    for port, prefix, certs in targets:
        got = await collect(
            port, f"{prefix}/availability", 30, certs, until=f"{prefix}/availability"
        )
        assert last(got, f"{prefix}/availability").payload == b"online", got


def last(got: list[Got], topic: str) -> Got:
    found = [g for g in got if g.topic == topic]
    assert found, f"nothing on {topic}; got {sorted({g.topic for g in got})}"
    return found[-1]


def config(mosquitto: Mosquitto, targets: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    # fmt: off
    return {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
        "buses": [{"port": "/dev/null", "protocol": "daly_classic",
                   "packs": [{"id": "garage"}, {"id": "shed", "address": 2}]}],
        "publisher": {"targets": targets},
        "stale_after": 30,
        "log_level": "DEBUG",
        **extra,
    }
    # fmt: on


async def test_targets_get_exact_packets_survive_an_outage_and_carry_commands(
    tmp_path: Path,
    mosquitto: Mosquitto,
    plain_target: Mosquitto,
    tls_target: TlsMosquitto,
    certs: Certs,
    procs: list[Proc],
) -> None:
    targets = [
        {
            "name": "plain",
            "host": "127.0.0.1",
            "port": plain_target.port,
            "topic_prefix": "dongle",
            "interval": 1,
            "flat": True,
            "qos": 1,
            "homeassistant": {"enabled": True, "birth_delay": 0.2},
        },
        {
            "name": "cloud",
            "host": "localhost",
            "port": tls_target.port,
            "tls": True,
            "ca_file": str(certs.ca),
            "username": USER,
            "password": PASSWORD,
            "topic_prefix": "cloud",
            "interval": 1,
            "retain": False,
            "packs": ["garage", "bank"],
            "dongle": {"style": "type1", "fields": ["soc", "voltage"]},
        },
    ]
    cfg = config(
        mosquitto,
        targets,
        control={"enabled": True},
        banks=[{"id": "bank", "name": "House bank", "packs": ["garage", "shed"]}],
    )
    procs.append(start_service(tmp_path, "publisher", write_config(tmp_path, cfg)))
    await started(
        mosquitto.port, (plain_target.port, "dongle", None), (tls_target.port, "cloud", certs)
    )
    now = datetime.now(UTC)
    shed = state("shed", soc=77.0, current=-2.0, power=-94.4, nominal_capacity=300.0, alarms=[])
    await backbone_send(
        mosquitto.port,
        ("availability", "garage", Availability(pack="garage", state="online", ts=now)),
        ("availability", "shed", Availability(pack="shed", state="online", ts=now)),
        ("state", "garage", state("garage")),
        ("state", "shed", shed),
    )

    # --- the plain target: retained messages as a newcomer sees them ---------------------
    await asyncio.sleep(2.5 + BANK_HOLD)  # banks go out once their retained counters are in
    retained = [g for g in await collect(plain_target.port, "#", 1.0) if g.retain]
    got = {g.topic: g for g in retained}
    assert got["dongle/availability"] == Got("dongle/availability", b"online", 1, True)
    assert got["dongle/garage/availability"] == Got(
        "dongle/garage/availability", b"online", 1, True
    )
    assert got["dongle/garage"] == Got("dongle/garage", TYPE2, 1, True)
    assert got["dongle/garage/soc"] == Got("dongle/garage/soc", b"27.0", 1, True)
    assert got["dongle/garage/cell/16"].payload == b"2.945"
    assert got["dongle/garage/charge_mos"] == Got("dongle/garage/charge_mos", b"ON", 1, True)
    status = json.loads(got["dongle/garage/status"].payload)
    assert list(status) == ["Status", "ts", "cnt", "mem"] and status["Status"] == 1
    ha = got["homeassistant/device/bmsgate_garage/config"]
    assert (ha.qos, ha.retain) == (1, True)
    discovery = json.loads(ha.payload)
    assert discovery["cmps"]["charge_mos"]["cmd_t"] == "dongle/garage/charge_mos/set"
    assert discovery["cmps"]["soc"]["stat_t"] == "dongle/garage/state"
    assert "ent_cat" not in discovery["cmps"]["charge_mos"]  # on auto-generated dashboards
    assert discovery["cmps"]["set_soc"]["cmd_t"] == "dongle/garage/set_soc/set"  # DALY UART
    assert {"cell_min_mv", "cell_max_mv", "cell_average_mv"}.isdisjoint(discovery["cmps"])
    assert all(cmp["name"] for cmp in discovery["cmps"].values())
    ha_state = json.loads(got["dongle/garage/state"].payload)
    assert ha_state.keys() >= {
        k
        for k, c in discovery["cmps"].items()
        if c.get("stat_t") == "dongle/garage/state" and k != "set_soc"
    }
    assert json.loads(got["dongle/garage/state"].payload)["cell_max_index"] == 3

    # --- the bank: on the backbone as one more pack, and on the targets ------------------
    bank = json.loads(last(retained, "dongle/bank/state").payload)
    assert bank["soc"] == pytest.approx((27 * 100 + 77 * 300) / 400, abs=0.1)
    assert bank["current"] == pytest.approx(4.2)
    backbone = {g.topic: g for g in await collect(mosquitto.port, "bmsgate/bms/bank/+", 1.0)}
    combined = PackState.model_validate_json(backbone["bmsgate/bms/bank/state"].payload)
    assert combined.extras["bank_members"] == "garage,shed" and combined.name == "House bank"
    assert json.loads(backbone["bmsgate/bms/bank/availability"].payload)["state"] == "online"

    # --- the TLS target with a password: type1, two fields, not retained ------------------
    cloud = await collect(tls_target.port, "cloud/#", 2.5, certs)
    assert last(cloud, "cloud/garage/status").retain is False
    assert {g.topic for g in cloud} >= {"cloud/garage/status", "cloud/bank/status"}
    assert "cloud/shed/status" not in {g.topic for g in cloud}  # not in its packs
    # no new state arrived after the first one: the main packet went out before we listened
    await backbone_send(mosquitto.port, ("state", "garage", state("garage", soc=28.0)))
    cloud = await collect(tls_target.port, "cloud/garage", 2.5, certs, until="cloud/garage")
    assert last(cloud, "cloud/garage") == Got("cloud/garage", b'{"SOC":28,"PMV":"47.20"}', 0, False)

    # --- commands: HA switch, the dongle's MOS packet, garbage -----------------------------
    async with client(mosquitto.port) as bb, client(plain_target.port) as tgt:
        await bb.subscribe("bmsgate/bms/+/set", qos=1)
        await tgt.publish("dongle/garage/charge_mos/set", b"OFF", qos=1)
        await tgt.publish("dongle/garage/charge_mos/set", b"bogus", qos=1)
        await tgt.publish("dongle/bank/charge_mos/set", b"OFF", qos=1)
        await tgt.publish("dongle/garage/mos/set", b'{"DMS":0}', qos=1)
        await tgt.publish("dongle/garage/set_soc/set", b"55", qos=1)  # HA's Set-SOC number
        commands = []
        async with asyncio.timeout(5):
            async for m in bb.messages:
                commands.append((m.topic.value, json.loads(m.payload)))  # type: ignore[arg-type]
                if len(commands) == 3:
                    break
    assert [(t, c["action"], c["value"]) for t, c in commands] == [
        ("bmsgate/bms/garage/set", "set_charge_mos", False),
        ("bmsgate/bms/garage/set", "set_discharge_mos", False),
        ("bmsgate/bms/garage/set", "set_soc", 55.0),
    ]
    assert all(c["transaction"].startswith("publisher-plain-") for _, c in commands)
    log = procs[0].log()
    assert "ignoring message on dongle/garage/charge_mos/set: expected ON or OFF" in log
    assert "refusing a command for 'bank': a bank has no switches" in log

    # the switch shows the state read back, not the one asked for
    result = CommandResult(
        transaction=commands[0][1]["transaction"],
        pack="garage",
        action="set_charge_mos",
        status="ok",
        value=False,
        ts=datetime.now(UTC),
    )
    async with client(plain_target.port) as tgt:
        await tgt.subscribe("dongle/garage/charge_mos", qos=2)
        await backbone_send(mosquitto.port, ("result", "garage", result))
        async with asyncio.timeout(5):
            async for m in tgt.messages:
                if not m.retain:
                    assert (m.payload, m.qos) == (b"OFF", 1)
                    break

    # --- the plain target goes away; the TLS one keeps getting data ------------------------
    plain_target.stop()
    await backbone_send(mosquitto.port, ("state", "garage", state("garage", soc=29.0)))
    cloud = await collect(tls_target.port, "cloud/garage", 3, certs, until="cloud/garage")
    assert last(cloud, "cloud/garage").payload == b'{"SOC":29,"PMV":"47.20"}'
    await asyncio.sleep(1)
    plain_target.start()  # a fresh broker: its retained store is empty
    back = await collect(
        plain_target.port, "#", 12, until="homeassistant/device/bmsgate_garage/config"
    )
    assert last(back, "homeassistant/device/bmsgate_garage/config").payload == ha.payload
    again = {g.topic: g for g in await collect(plain_target.port, "#", 2)}
    assert again["dongle/garage"].payload.startswith(b'{"bat"')
    assert b'"SOC":29,' in again["dongle/garage"].payload
    assert again["dongle/availability"].payload == b"online"

    # --- Home Assistant restarts: its birth message brings every config again --------------
    async with client(plain_target.port) as tgt:
        await tgt.subscribe("homeassistant/device/+/config", qos=1)
        await tgt.publish("homeassistant/status", b"online", qos=1)
        live = []
        async with asyncio.timeout(5):
            async for m in tgt.messages:
                if not m.retain:
                    live.append(m.topic.value)
                    if len(set(live)) == 4:
                        break
    assert set(live) == {
        "homeassistant/device/bmsgate-gateway-dongle/config",  # bmsgate itself, the packs' via
        "homeassistant/device/bmsgate_garage/config",
        "homeassistant/device/bmsgate_shed/config",
        "homeassistant/device/bmsgate_bank/config",
    }

    assert procs[0].alive()
    assert PASSWORD not in procs[0].log()
    assert procs[0].stop() == 0


async def test_a_wrong_password_is_one_line_in_the_status_and_the_right_one_delivers(
    tmp_path: Path, mosquitto: Mosquitto, tls_target: TlsMosquitto, certs: Certs, procs: list[Proc]
) -> None:
    login = {"host": "localhost", "port": tls_target.port, "tls": True, "ca_file": str(certs.ca)}
    targets = [
        {"name": "wrong", "topic_prefix": "wrong", "username": USER, "password": "not-it"} | login,
        {"name": "right", "topic_prefix": "right", "username": USER, "password": PASSWORD} | login,
    ]
    procs.append(
        start_service(tmp_path, "publisher", write_config(tmp_path, config(mosquitto, targets)))
    )
    await started(mosquitto.port, (tls_target.port, "right", certs))
    await backbone_send(mosquitto.port, ("state", "garage", state("garage")))
    got = await collect(tls_target.port, "#", 10, certs, until="right/garage")
    assert last(got, "right/garage").payload == TYPE2  # through TLS with the login
    assert not [g for g in got if g.topic.startswith("wrong/")]

    status = "bmsgate/service/publisher/status"
    detail: dict[str, Any] = {}
    async with asyncio.timeout(20):
        while "wrong_error" not in detail or "right_error" not in detail:
            got = await collect(mosquitto.port, status, 10, until=status)
            detail = json.loads(last(got, status).payload)["detail"]
    refused = "connection refused: not authorized (check the user name and password)"
    assert (detail["wrong_connected"], detail["wrong_error"]) == (False, refused)
    assert (detail["right_connected"], detail["right_error"]) == (True, None)
    log = procs[0].log()
    assert log.count(f"target wrong (localhost:{tls_target.port}) unreachable: {refused}") == 1
    assert "not-it" not in log and PASSWORD not in log
    assert procs[0].stop() == 0


async def test_control_off_means_no_switches_and_refused_commands(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    targets = [
        {"name": "ha", "topic_prefix": "bms", "interval": 1, "homeassistant": {"enabled": True}}
    ]
    procs.append(
        start_service(tmp_path, "publisher", write_config(tmp_path, config(mosquitto, targets)))
    )
    await started(mosquitto.port, (mosquitto.port, "bms", None))
    await backbone_send(mosquitto.port, ("state", "garage", state("garage")))
    got = await collect(
        mosquitto.port, "homeassistant/#", 4, until="homeassistant/device/bmsgate_garage/config"
    )
    cmps = json.loads(last(got, "homeassistant/device/bmsgate_garage/config").payload)["cmps"]
    assert cmps["charge_mos"]["p"] == "binary_sensor" and "cmd_t" not in cmps["charge_mos"]
    async with client(mosquitto.port) as c:
        await c.subscribe("bmsgate/bms/+/set", qos=1)
        await c.publish("bms/garage/charge_mos/set", b"OFF", qos=1)
        await c.publish("bms/garage/mos/set", b'{"CMS":0}', qos=1)
        leaked = await drain(c, 1.5)
    assert leaked == [], "a command went out with control disabled"
    log = procs[0].log()
    assert log.count("control is disabled") == 2
    assert procs[0].stop() == 0


def test_bad_templates_stop_the_service_with_one_line(tmp_path: Path) -> None:
    targets = [{"name": "x", "dongle": {"main_topic": "{prefix}/{pak}"}}]
    path = write_config(tmp_path, {"publisher": {"targets": targets}})
    # fmt: off
    done = subprocess.run(
        [sys.executable, "-m", "bmsgate_publisher", "--config", str(path)],
        capture_output=True, text=True, timeout=30,
    )
    # fmt: on
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bmsgate publisher: bad value for 'publisher.targets.0.dongle.main_topic': "
        "'{prefix}/{pak}': unknown placeholder {pak}"
    ]

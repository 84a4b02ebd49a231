"""The broker of the compose stack, for real: entrypoint.sh builds the password file from the
environment, and the ACL lets each service publish only its own topics (deploy/mosquitto/acl).
Also shows the scale-out mechanism: a shared subscription hands each request to one member."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from bmsgate.broker import free_port, wait_for_port
from tests.deploy.conftest import ROOT
from tests.support.needs import needs

DEPLOY = ROOT / "deploy" / "mosquitto"
USERS = [  # from .env; the readers' users (reader-<bus>) get passwords made at the first start
    "api",
    "publisher",
    "modbus",
    "history",
    "notifier",
    "tunnel",
    "admin",
    "homeassistant",
    "viewer",
]

pytestmark = [
    pytest.mark.integration,
    needs(shutil.which("mosquitto_passwd"), "mosquitto_passwd is not installed"),
    # mosquitto started as root drops to user mosquitto: the setup it needs is root's
    needs(os.geteuid() == 0, "entrypoint.sh chowns files: needs root"),
]


MADE: dict[str, Path] = {}  # the readers' password files the entrypoint made


def password(user: str) -> str:
    return MADE[user].read_text() if user in MADE else f"pw-{user}"


@pytest.fixture(scope="module")
def broker() -> Iterator[int]:
    work = Path(tempfile.mkdtemp(prefix="bmsgate-mosq-"))
    work.chmod(0o755)  # user mosquitto must reach the files
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
        f"password_file {work}/data/passwd\nacl_file {DEPLOY}/acl\n"
    )
    env = {
        **os.environ,
        "MOSQUITTO_DIR": str(work),
        "MOSQUITTO_CONF": str(conf),
        "MOSQUITTO_ACL": str(DEPLOY / "acl"),
        "PATH": f"{os.environ['PATH']}:/usr/sbin",
    }
    env.update({f"MQTT_{u.upper()}_PASSWORD": f"pw-{u}" for u in USERS})
    proc = subprocess.Popen(["sh", str(DEPLOY / "entrypoint.sh")], env=env)
    try:
        assert wait_for_port("127.0.0.1", port, 10)
        MADE.update({p.parent.name: p for p in (work / "secrets").glob("*/password")})
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_a_missing_password_stops_the_broker_with_its_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    done = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh")],
        env={**env, "MOSQUITTO_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 1 and "MQTT_API_PASSWORD is not set" in done.stderr


def test_each_reader_gets_a_password_of_its_own_made_once(broker: int) -> None:
    """reader-0 and reader-1 (deploy/bmsgate.yaml's buses): random, 0400 for uid 10001, kept."""
    assert sorted(MADE) == ["reader-0", "reader-1"]
    first = {user: path.read_text() for user, path in MADE.items()}
    assert len(set(first.values())) == 2 and all(len(pw) == 48 for pw in first.values())
    for path in MADE.values():
        assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o400, 10001)
        assert (path.parent.stat().st_mode & 0o777, path.parent.stat().st_uid) == (0o700, 10001)
    work = next(iter(MADE.values())).parents[2]
    env = {**os.environ, "MOSQUITTO_DIR": str(work), "PATH": f"{os.environ['PATH']}:/usr/sbin"}
    env.update({f"MQTT_{u.upper()}_PASSWORD": f"pw-{u}" for u in USERS})
    env.update({"MOSQUITTO_ACL": str(DEPLOY / "acl"), "MOSQUITTO_CONF": "/nonexistent"})
    subprocess.run(["sh", str(DEPLOY / "entrypoint.sh")], env=env, capture_output=True, timeout=20)
    assert {user: path.read_text() for user, path in MADE.items()} == first  # a restart keeps them


async def delivered(port: int, user: str, topics: list[str]) -> set[str]:
    """Which of ``topics``, published by ``user``, reach an admin subscribed to everything."""
    async with aiomqtt.Client("127.0.0.1", port, username="admin", password="pw-admin") as watch:
        await watch.subscribe("bmsgate/#", qos=1)
        await watch.subscribe("homeassistant/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", port, username=user, password=password(user)) as c:
            for t in topics:
                await c.publish(t, b"{}", qos=1)
        async with aiomqtt.Client("127.0.0.1", port, username="admin", password="pw-admin") as a:
            await a.publish("bmsgate/end", b"", qos=1)
        got: set[str] = set()
        async with asyncio.timeout(5):
            async for msg in watch.messages:
                if str(msg.topic) == "bmsgate/end":
                    return got
                got.add(str(msg.topic))
    return got


# (user, topics it must be able to publish, topics it must not)
# fmt: off
RULES = [
    # each reader only its own bus's packs (deploy/bmsgate.yaml: pack-1 on bus 0, pack-2 on 1)
    ("reader-0", ["bmsgate/bms/pack-1/state", "bmsgate/bms/pack-1/alarm",
                  "bmsgate/bus/reader-0/sniff", "bmsgate/service/reader-0/status"],
     ["bmsgate/bms/pack-1/set", "bmsgate/bms/pack-1/daily", "bmsgate/history/api/reply",
      "bmsgate/bms/pack-2/state", "bmsgate/bms/pack-2/availability", "bmsgate/bus/reader-1/sniff",
      "bmsgate/service/reader-1/status", "bmsgate/service/api/status"]),
    ("reader-1", ["bmsgate/bms/pack-2/state", "bmsgate/bus/reader-1/sniff/state"],
     ["bmsgate/bms/pack-1/state", "bmsgate/bus/reader-0/sniff/state"]),
    ("api", ["bmsgate/bms/p1/set", "bmsgate/history/api/request", "bmsgate/service/api/status",
             "bmsgate/service/all/restart", "bmsgate/history/api/files",
             "bmsgate/notifier/api/test"],
     ["bmsgate/bms/p1/state", "bmsgate/service/history/status", "bmsgate/history/x/request"]),
    ("history", ["bmsgate/bms/p1/daily", "bmsgate/bms/p1/health", "bmsgate/history/api/reply",
                 "bmsgate/history/api/files/reply"],
     ["bmsgate/bms/p1/state", "bmsgate/bms/p1/set"]),
    ("modbus", ["bmsgate/bms/p1/set", "bmsgate/service/modbus/status"],
     ["bmsgate/bms/p1/state", "bmsgate/service/api/status", "bmsgate/service/all/restart"]),
    ("notifier", ["bmsgate/service/notifier/status", "bmsgate/notifier/api/test/reply"],
     ["bmsgate/bms/p1/set"]),
    # deploy/bmsgate.yaml has no banks: the publisher writes no state at all, a pack's neither
    ("publisher", ["homeassistant/sensor/x/config", "bmsgate/bms/pack-1/set"],
     ["bmsgate/bms/p1/daily", "bmsgate/bms/pack-1/state", "bmsgate/bms/bank/state",
      "bmsgate/bms/pack-1/availability"]),
    ("tunnel", ["bmsgate/bms/p1/raw/tx", "bmsgate/bms/p1/tunnel/state"],
     ["bmsgate/bms/p1/raw/rx", "bmsgate/bms/p1/state"]),
]
# fmt: on


@pytest.mark.parametrize(("user", "allowed", "denied"), RULES, ids=[r[0] for r in RULES])
async def test_each_service_publishes_only_its_own_topics(
    broker: int, user: str, allowed: list[str], denied: list[str]
) -> None:
    assert await delivered(broker, user, allowed + denied) == set(allowed)


async def test_a_wrong_password_is_refused(broker: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker, username="api", password="nope"):
            pass


async def test_history_responders_can_share_requests(broker: int) -> None:
    """Two history instances in one shared-subscription group: each request reaches one."""
    got: list[list[str]] = [[], []]
    creds = {"username": "history", "password": "pw-history"}
    async with (
        aiomqtt.Client("127.0.0.1", broker, identifier="h1", **creds) as h1,
        aiomqtt.Client("127.0.0.1", broker, identifier="h2", **creds) as h2,
    ):
        for member in (h1, h2):
            await member.subscribe("$share/history/bmsgate/history/+/request", qos=1)

        async def collect(i: int, client: aiomqtt.Client) -> None:
            async for msg in client.messages:
                got[i].append(msg.payload.decode())  # type: ignore[union-attr]

        tasks = [asyncio.create_task(collect(i, c)) for i, c in enumerate((h1, h2))]
        async with aiomqtt.Client("127.0.0.1", broker, username="api", password="pw-api") as api:
            for n in range(20):
                await api.publish("bmsgate/history/api/request", str(n).encode(), qos=1)
        async with asyncio.timeout(5):
            while len(got[0]) + len(got[1]) < 20:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
    assert sorted(got[0] + got[1], key=int) == [str(n) for n in range(20)]  # each exactly once
    assert got[0] and got[1]  # both did work


async def test_the_container_healthcheck_reads_the_service_status(broker: int) -> None:
    from bmsgate_common.models import ServiceStatus, utcnow

    status = ServiceStatus(service="api", state="online", ts=utcnow()).model_dump_json()
    async with aiomqtt.Client("127.0.0.1", broker, username="api", password="pw-api") as api:
        await api.publish("bmsgate/service/api/status", status, qos=1, retain=True)
    env = {
        **os.environ,
        "BMSGATE_MQTT__HOST": "127.0.0.1",
        "BMSGATE_MQTT__PORT": str(broker),
        "BMSGATE_MQTT__USERNAME": "api",
        "BMSGATE_MQTT__PASSWORD": "pw-api",
    }
    check = [sys.executable, str(ROOT / "deploy" / "healthcheck.py")]
    ok = await asyncio.to_thread(subprocess.run, [*check, "api"], env=env, timeout=20)
    assert ok.returncode == 0
    gone = await asyncio.to_thread(
        subprocess.run, [*check, "modbus"], env=env, timeout=20, capture_output=True
    )  # nothing retained there: the check times out and reports unhealthy
    assert gone.returncode == 1


async def test_a_reader_reads_only_its_own_buss_commands(broker: int) -> None:
    """reader-0 subscribes with the reader's filters over every pack and gets bus 0's only."""
    sent = [
        "bmsgate/bms/pack-1/set",
        "bmsgate/bms/pack-2/set",
        "bmsgate/bms/pack-2/raw/tx",
        "bmsgate/bus/reader-0/sniff/set",
        "bmsgate/bus/reader-1/sniff/set",
    ]
    creds = {"username": "reader-0", "password": password("reader-0")}
    got: set[str] = set()
    async with aiomqtt.Client("127.0.0.1", broker, **creds) as reader:
        for pattern in ("bmsgate/bms/+/set", "bmsgate/bms/+/raw/tx", "bmsgate/bus/+/sniff/set"):
            await reader.subscribe(pattern, qos=1)  # granted: the broker filters each delivery
        async with aiomqtt.Client("127.0.0.1", broker, username="admin", password="pw-admin") as a:
            for topic in [*sent, "bmsgate/bms/pack-1/raw/tx"]:
                await a.publish(topic, b"{}", qos=1)
        async with asyncio.timeout(5):
            async for msg in reader.messages:
                got.add(str(msg.topic))
                if str(msg.topic) == "bmsgate/bms/pack-1/raw/tx":  # the last one sent
                    break
    assert got == {
        "bmsgate/bms/pack-1/set",
        "bmsgate/bus/reader-0/sniff/set",
        "bmsgate/bms/pack-1/raw/tx",
    }

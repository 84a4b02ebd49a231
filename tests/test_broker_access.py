"""Who may do what on the backbone: the access table against the services' code, and a real Mosquitto.

The table (bmsgate_common.access) must list exactly the topics each service's code publishes and
subscribes to; the ACL rendered from it is the compose stack's (deploy/mosquitto/acl) and the
private broker's of ``bmsgate run``, which also refuses every client without credentials.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from bmsgate.broker import USERS, PrivateBroker, free_port, wait_for_port
from bmsgate_common import topics
from bmsgate_common.access import SERVICES, _own, grants, render_acl
from bmsgate_common.topic_routes import ROUTES, topic
from bmsgate_common.topics import TOPICS, TopicSpec
from tests.support.mqtt import seen_disconnect
from tests.support.needs import require
from tests.support.procs import Proc, start_simulator, wait_until, write_config
from tests.support.tree import run_argv

ROOT = Path(__file__).parents[1]
HOST = "127.0.0.1"
# the code of each service user; the tunnel's client.py is `bmsgate tunnel`, a tool run as admin
CODE = {name: ROOT / "services" / name / "src" for name in SERVICES}
SUBSCRIBES = ("subscribe", "subscribe_raw", "read_retained")  # bmsgate_common.mqtt.Backbone's
# the Backbone's own topics (its status, restarts, log lines): every service's user has them
OWN_KINDS = {
    kind
    for kind in ROUTES
    for _, where in _own("svc", "b")
    if where in (topic(kind, "svc", "b"), topic(kind, "+", "b"))
}
NOT_THE_SERVICE = {ROOT / "services" / "tunnel" / "src" / "bmsgate_tunnel" / "client.py"}


def used_by_code(src: Path) -> tuple[set[str], set[str]]:
    """(kinds published, kinds subscribed to) by the code under ``src``.

    A ``topics.X`` that is the first argument of a ``.subscribe(...)`` (or ``subscribe_raw``)
    call is a subscription;
    every other use hands the spec to a publish (directly or through a helper such as the API's
    ``send``). Any other use (``topics.X.subscription()``) fails the test: classify it here.
    The reader's polling core, which runs without pydantic in the lean reader, names its topics
    by kind (bmsgate_common.topic_routes): a ``.send("<kind>", ...)`` call is a publish too.
    """
    published: set[str] = set()
    subscribed: set[str] = set()
    for path in sorted(src.rglob("*.py")):
        if path in NOT_THE_SERVICE:
            continue
        tree = ast.parse(path.read_text())
        parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "send"
                and node.args
                and isinstance(kind := node.args[0], ast.Constant)
                and kind.value in ROUTES
                and kind.value not in OWN_KINDS
            ):
                published.add(str(kind.value))
                continue
            if not (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "topics"
                and isinstance(spec := getattr(topics, node.attr, None), TopicSpec)
            ):
                continue
            up = parent.get(node)
            assert not isinstance(up, ast.Attribute), f"{path}:{node.lineno}: classify {up.attr}"
            call = isinstance(up, ast.Call) and isinstance(up.func, ast.Attribute)
            if call and up.func.attr in SUBSCRIBES and up.args and up.args[0] is node:  # type: ignore[union-attr]
                subscribed.add(spec.kind)
            else:
                published.add(spec.kind)
    return published, subscribed


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_table_lists_exactly_what_each_services_code_uses(service: str) -> None:
    published, subscribed = used_by_code(CODE[service])
    access = SERVICES[service]
    for what, table, code in (
        ("publishes", {u.spec.kind for u in access.publishes}, published),
        ("subscribes", {u.spec.kind for u in access.subscribes}, subscribed),
    ):
        assert table == code, (
            f"{service} {what}: granted in bmsgate_common/access.py but unused by the code: "
            f"{sorted(table - code)}; used by the code but not granted: {sorted(code - table)}"
        )


def test_the_compose_acl_is_the_one_rendered_from_the_table_and_the_compose_config(
    tmp_path: Path,
) -> None:
    """Changing banks in deploy/bmsgate.yaml without regenerating the ACL fails here."""
    out = tmp_path / "acl"
    done = subprocess.run(
        [
            sys.executable,
            ROOT / "scripts" / "export_acl.py",
            "--config",
            ROOT / "deploy" / "bmsgate.yaml",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("BMSGATE_")},
    )
    assert done.returncode == 0, done.stderr
    committed = (ROOT / "deploy" / "mosquitto" / "acl").read_text()
    assert committed == out.read_text(), (
        "regenerate it: uv run python scripts/export_acl.py --config deploy/bmsgate.yaml"
    )
    cfg = yaml.safe_load((ROOT / "deploy" / "bmsgate.yaml").read_text())
    banks = [bank["id"] for bank in cfg.get("banks") or []]
    buses = [[pack["id"] for pack in bus["packs"]] for bus in cfg["buses"]]
    # the publisher: those banks' states only; a reader per bus: its own packs only
    assert committed == render_acl(banks=banks, buses=buses)


def need_mosquitto() -> None:
    require(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists(), "mosquitto")
    require(shutil.which("mosquitto_passwd"), "mosquitto_passwd (Debian package mosquitto)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    need_mosquitto()
    private = PrivateBroker(tmp_path / "mosquitto", banks=["bank"])
    private.start()
    try:
        yield private
    finally:
        private.stop()


def creds(broker: PrivateBroker, user: str) -> dict[str, Any]:
    name, password = broker.credentials(user)
    return {"username": name, "password": password}


def covers(topic_filter: str, topic: str) -> bool:
    """MQTT's matching of a topic filter (``+``, ``#``) against a concrete topic."""
    want, got = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got) or level not in ("+", got[i]):
            return False
    return len(want) == len(got)


async def topics_until(client: aiomqtt.Client, end: str) -> set[str]:
    """The topics ``client`` receives before the message on ``end``."""
    got: set[str] = set()
    async with asyncio.timeout(10):
        async for msg in client.messages:
            if str(msg.topic) == end:
                break
            got.add(str(msg.topic))
    return got


async def published_by(broker: PrivateBroker, user: str, wanted: list[str]) -> set[str]:
    """Which of ``wanted``, published by ``user``, reach admin (subscribed to everything)."""
    async with aiomqtt.Client(HOST, broker.port, **creds(broker, "admin")) as watch:
        await watch.subscribe("bmsgate/#", qos=1)
        for where in wanted:  # one connection each: mosquitto 2.0 drops a client it refuses
            client = aiomqtt.Client(HOST, broker.port, **creds(broker, user))
            with contextlib.suppress(aiomqtt.MqttError):
                async with client:
                    await client.publish(where, b"{}", qos=1)
            seen_disconnect(client)  # a refused publish: mosquitto closed the connection
        await watch.publish("bmsgate/end", b"", qos=1)
        return await topics_until(watch, "bmsgate/end")


async def read_by(broker: PrivateBroker, user: str, wanted: list[str]) -> set[str]:
    """Which of ``wanted`` (subscribed to one by one), published by admin, reach ``user``."""
    async with aiomqtt.Client(HOST, broker.port, **creds(broker, user)) as client:
        for where in wanted:
            await client.subscribe(where, qos=1)
        await client.subscribe("bmsgate/service/+/restart", qos=1)  # every service reads it
        async with aiomqtt.Client(HOST, broker.port, **creds(broker, "admin")) as admin:
            for where in wanted:
                await admin.publish(where, b"{}", qos=1)
            await admin.publish("bmsgate/service/end/restart", b"", qos=1)
        return await topics_until(client, "bmsgate/service/end/restart")


@pytest.mark.integration
@pytest.mark.parametrize("service", list(SERVICES))
async def test_each_service_user_gets_its_grants_and_nothing_more(
    broker: PrivateBroker, service: str
) -> None:
    """Every topic of the table, as a concrete topic: allowed exactly where the table says."""
    access = SERVICES[service]
    named = {u.name for u in (*access.publishes, *access.subscribes)} - {"+"}
    concrete = [spec.topic(name) for spec in TOPICS.values() for name in ("garage", *named)]
    status = "reader-0" if service == "reader" else service
    concrete += [topics.SERVICE_STATUS.topic(status), topics.SERVICE_STATUS.topic("other")]
    concrete += ["bmsgate/bms/bank/state", "bmsgate/out/x"]

    def allowed(right: str) -> set[str]:
        filters = [f for r, f in grants(service, banks=["bank"]) if right in r]
        return {t for t in concrete if any(covers(f, t) for f in filters)}

    assert await published_by(broker, service, concrete) == allowed("write")
    assert await read_by(broker, service, concrete) == allowed("read")


@pytest.mark.integration
async def test_the_private_broker_refuses_clients_without_credentials(
    broker: PrivateBroker,
) -> None:
    users = broker.workdir / "users.json"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert stat.S_IMODE(broker.workdir.stat().st_mode) == 0o700
    saved = json.loads(users.read_text())
    assert saved["port"] == broker.port and set(saved["users"]) == set(USERS)
    hashed = (broker.workdir / "passwd").read_text()
    assert all(pw not in hashed for pw in saved["users"].values())  # only hashes on disk

    for who in ({}, {"username": "reader", "password": "wrong"}, {"username": "nobody"}):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(HOST, broker.port, **who):
                pass
    # the attack: a local user switching MOSFETs and feeding states without a password
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "mosquitto_pub",
            "-h",
            HOST,
            "-p",
            str(broker.port),
            "-t",
            "bmsgate/bms/garage/set",
            "-m",
            '{"action": "set_discharge_mos", "value": false}',
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode != 0 and "not authorised" in done.stderr.lower(), done.stderr

    # a user's own tools: the viewer reads everything and writes nothing
    assert await read_by(broker, "viewer", ["bmsgate/bms/garage/state"]) == {
        "bmsgate/bms/garage/state"
    }
    assert await published_by(broker, "viewer", ["bmsgate/bms/garage/set"]) == set()

    # the same data directory keeps its passwords and port
    broker.stop()
    again = PrivateBroker(broker.workdir)
    assert again.users == broker.users and again.port == broker.port


EVERY_SERVICE = {"reader-0", "api", "publisher", "modbus", "history", "notifier", "tunnel"}


@pytest.mark.integration
async def test_bmsgate_run_starts_each_service_with_its_own_user(tmp_path: Path) -> None:
    """The whole pipeline on the private broker: every service connects as its own user and
    stays connected (a publish outside its ACL would disconnect it), the publisher's bank state
    passes its per-bank grant, and a client without credentials is refused."""
    need_mosquitto()
    sim, tty = start_simulator(tmp_path, "daly_classic", "--boards", "2")
    data = tmp_path / "data"
    config = write_config(
        tmp_path,
        {
            "buses": [
                {
                    "port": tty,
                    "protocol": "daly_classic",
                    "poll_interval": 1,
                    "sniff": True,
                    "packs": [{"id": "left"}, {"id": "right", "address": 2}],
                }
            ],
            "banks": [{"id": "house", "packs": ["left", "right"]}],
            "control": {"enabled": True},
            "notifier": {"targets": [{"name": "phone", "url": "json://127.0.0.1:9/bmsgate"}]},
            "tunnel": {"host": HOST, "port": free_port()},
            "data_dir": str(data),
        },
    )
    run = Proc("run", run_argv(config=config, http=free_port()), tmp_path)
    try:
        users = data / "run" / "mosquitto" / "users.json"
        await asyncio.to_thread(wait_until, users.exists, 30)
        saved = json.loads(users.read_text())
        # written before mosquitto starts: wait until it listens
        assert await asyncio.to_thread(wait_for_port, HOST, saved["port"], 30)
        viewer = {"username": "viewer", "password": saved["users"]["viewer"]}
        statuses: dict[str, list[str]] = {}
        bank_states = 0
        async with aiomqtt.Client(HOST, saved["port"], **viewer) as watch:
            await watch.subscribe("bmsgate/service/+/status", qos=1)
            await watch.subscribe("bmsgate/bms/house/state", qos=1)
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(60):
                async for msg in watch.messages:
                    name = str(msg.topic).split("/")[2]
                    if name == "house":
                        bank_states += 1
                    else:
                        state = json.loads(msg.payload)["state"]  # type: ignore[arg-type]
                        statuses.setdefault(name, []).append(state)
                    online = {n for n, seen in statuses.items() if seen[-1] == "online"}
                    waited = asyncio.get_running_loop().time() - started
                    if online >= EVERY_SERVICE and bank_states >= 3 and waited > 8:
                        break
        # each connected once and never went offline (a refused publish drops the connection)
        assert {n: s for n, s in statuses.items() if "offline" in s} == {}, run.log()[-3000:]
        assert set(statuses) >= EVERY_SERVICE
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(HOST, saved["port"]):
                pass
        for user in ("api", "reader", "tunnel"):
            own = yaml.safe_load((data / "run" / f"config-{user}.yaml").read_text())["mqtt"]
            assert own["username"] == user and own["password"] == saved["users"][user]
    finally:
        run.stop()
        sim.stop()
    assert "Traceback" not in run.log()


def test_an_older_users_file_keeps_its_passwords_and_gains_homeassistant(tmp_path: Path) -> None:
    """A data directory from before the ``homeassistant`` user: the others' passwords stay."""
    work = tmp_path / "mosquitto"
    work.mkdir()
    old = {user: f"old-password-of-{user}" for user in USERS if user != "homeassistant"}
    (work / "users.json").write_text(json.dumps({"host": HOST, "port": 0, "users": old}))
    private = PrivateBroker(work)  # reads and rewrites users.json; not started
    assert {user: private.users[user] for user in old} == old
    assert len(private.users["homeassistant"]) >= 32
    assert json.loads((work / "users.json").read_text())["users"] == private.users


@pytest.mark.integration
async def test_home_assistant_logs_in_to_the_private_broker(broker: PrivateBroker) -> None:
    """HA's MQTT integration on this machine: its own user, its birth message and a switch."""
    user, password = broker.credentials("homeassistant")
    async with aiomqtt.Client(HOST, broker.port, username=user, password=password) as ha:
        await ha.subscribe("homeassistant/status", qos=1)
        await ha.subscribe("bmsgate/out/garage/charge_mos/set", qos=1)
        await ha.publish("homeassistant/status", b"online", qos=1)
        await ha.publish("bmsgate/out/garage/charge_mos/set", b"OFF", qos=1)
        got = []
        async with asyncio.timeout(5):
            async for message in ha.messages:
                got.append(message.topic.value)
                if len(got) == 2:
                    break
    assert sorted(got) == ["bmsgate/out/garage/charge_mos/set", "homeassistant/status"]

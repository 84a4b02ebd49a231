"""A real Home Assistant against `bmsgate run --simulate-packs 2` with a bank (docs/homeassistant.md).

One HA start (the pinned release in a Debian testing chroot, scripts/homeassistant_chroot.sh),
onboarded and given the MQTT integration on bmsgate's private broker with the broker user
``homeassistant``; then, in file order: the devices and entities HA made from the discovery, a
member outage, a MOSFET switch round trip, HA's restart (while HA's statistics run is
awaited), the bank's energy statistics over the outage, the Energy dashboard's validation,
availability after a pack, bmsgate and the broker restart, and last HA's log. A lane that
cannot start HA fails in CI (tests/support/needs.py) and skips elsewhere.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bmsgate.broker import free_port, wait_for_port
from tests.ecosystem.homeassistant_support import HA_VERSION, HomeAssistant, build_chroot
from tests.support.needs import missing
from tests.support.procs import Proc, find_mosquitto, wait_until, write_config

pytestmark = [pytest.mark.ecosystem, pytest.mark.timeout(900)]

PACKS = {"sim-1": "Simulated pack 1", "sim-2": "Simulated pack 2", "house": "House bank"}
PREFIX = "bmsgate/out"
PASSWORD = "lane-owner-password-7"  # HA's owner, on loopback for this run only
# HA's log lines that have nothing to do with bmsgate: this chroot has no ffmpeg, libturbojpeg
# or isal (HA's camera, stream and compression speed-ups), and HA runs with --skip-pip
UNRELATED = (
    "Skipping pip installation of required modules",
    "zlib_ng and isal are not available",
    "FFmpeg fails",
    "Error starting FFmpeg",
    "Error loading libturbojpeg",
)
# the MQTT client's word for a broker that went away: expected while bmsgate (with its private
# broker) and the broker restart
BROKER_AWAY = (
    "Disconnected from MQTT server",
    "Error returned from MQTT server",
    "[paho.mqtt.client] failed to receive on socket",
)


@dataclass
class Lane:
    """The processes of the lane and what the checks learn on the way."""

    workdir: Path
    config: Path
    ha: HomeAssistant
    run: Proc
    users: dict[str, Any]
    procs: list[Proc] = field(default_factory=list)
    outage: dict[str, Any] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def start_run(self, n: int) -> None:
        self.run = start_run(self.workdir, self.config, n)

    def viewer(self, topic: str, count: int) -> list[tuple[str, dict[str, Any]]]:
        """Retained messages on the broker as the read-only user ``viewer``."""
        out = subprocess.run(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.users["port"]),
                "-u",
                "viewer",
                "-P",
                self.users["users"]["viewer"],
                "-t",
                topic,
                "-v",
                "-C",
                str(count),
                "-W",
                "10",
            ],
            capture_output=True,
            text=True,
        )
        found = []
        for line in out.stdout.splitlines():
            where, _, payload = line.partition(" ")
            found.append((where, json.loads(payload)))
        return found


def start_run(workdir: Path, config: Path, n: int) -> Proc:
    argv = [sys.executable, "-m", "bmsgate.cli", "run", "--config", str(config)]
    # --isolate: each reader in a process of its own, so one pack's bus can be stopped alone
    argv += ["--simulate-packs", "2", "--only", "reader", "--only", "publisher", "--isolate"]
    argv += ["--data-dir", str(workdir / "data")]
    return Proc(f"run-{n}", argv, workdir)


def children(pid: int, comm: str) -> list[int]:
    """Descendants of ``pid`` named ``comm`` (the zygote names its children bms-<service>)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in table.stdout.splitlines()]
    family, found = {pid}, []
    for _ in range(4):
        for child, parent, name in rows:
            if int(parent) in family and int(child) not in family:
                family.add(int(child))
                if name.strip() == comm:
                    found.append(int(child))
    return found


def reader_of(lane: Lane, bus: int) -> int:
    """The reader process that has simulated bus ``bus``'s pty open."""
    pty = os.path.realpath(lane.workdir / "data" / "run" / f"ttySIM{bus}")
    for pid in children(lane.run.process.pid, "bms-reader"):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == pty:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no reader has {pty} open")


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        missing("the Home Assistant lane needs root (mmdebstrap, chroot, mount namespaces)")
    if not find_mosquitto():
        missing("mosquitto is not installed")
    try:
        chroot = build_chroot()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        missing(f"the Home Assistant {HA_VERSION} chroot could not be built: {err}")
    workdir = tmp_path_factory.mktemp("homeassistant")
    config = write_config(
        workdir,
        {
            "control": {"enabled": True},
            "banks": [{"id": "house", "name": "House bank", "packs": ["sim-1", "sim-2"]}],
            "stale_after": 5,
            "timezone": "UTC",
            "api": {"host": "127.0.0.1", "port": free_port()},
            "publisher": {
                "targets": [
                    {
                        "name": "ha",
                        "topic_prefix": PREFIX,
                        "interval": 1,
                        "dongle": {"enabled": False},
                        # the add-on's form of the link (src/bmsgate/addon.py): HA must take it
                        "homeassistant": {
                            "enabled": True,
                            "configuration_url": "homeassistant://hassio/ingress/local_bmsgate",
                        },
                    }
                ]
            },
        },
        "bmsgate.yaml",
    )
    run = start_run(workdir, config, 1)
    users_file = workdir / "data" / "run" / "mosquitto" / "users.json"
    wait_until(users_file.exists, timeout=30)
    users = json.loads(users_file.read_text())
    ha = HomeAssistant(chroot, workdir / "ha", free_port())
    lane = Lane(workdir, config, ha, run, users)
    try:
        try:
            ha.start()
        except RuntimeError as err:
            missing(f"Home Assistant {HA_VERSION} did not start: {err}")
        ha.onboard(PASSWORD)
        ha.add_mqtt(users["port"], "homeassistant", users["users"]["homeassistant"])
        yield lane
    finally:
        ha.stop()
        lane.run.stop(timeout=20)
        for proc in lane.procs:
            proc.stop()


# --- what HA shows -------------------------------------------------------------------------


def discovery(lane: Lane) -> dict[str, dict[str, Any]]:
    """The retained device configs bmsgate sent: the three packs and the gateway."""
    found = lane.viewer("homeassistant/device/+/config", 4)
    return {payload["dev"]["ids"][0]: payload for _, payload in found}


def registry(lane: Lane) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with lane.ha.ws() as ws:
        return ws.command("config/device_registry/list"), ws.command("config/entity_registry/list")


def slug(text: str) -> str:
    """HA's entity id from a name, for plain ASCII names (homeassistant.util.slugify)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def pack_entities(lane: Lane) -> dict[str, str]:
    """entity_id -> pack of every enabled entity on the packs' devices."""
    devices, entities = registry(lane)
    ours = {
        d["id"]: ident[1].removeprefix("bmsgate_")
        for d in devices
        for ident in d["identifiers"]
        if ident[0] == "mqtt" and ident[1].removeprefix("bmsgate_") in PACKS
    }
    return {
        e["entity_id"]: ours[e["device_id"]]
        for e in entities
        if e["device_id"] in ours and not e["disabled_by"]
    }


def unavailable(lane: Lane, packs: set[str] | None = None) -> list[str]:
    states = lane.ha.states()
    return sorted(
        eid
        for eid, pack in pack_entities(lane).items()
        if (packs is None or pack in packs)
        and states.get(eid, {}).get("state", "unavailable") == "unavailable"
    )


def wait_available(lane: Lane, within: float = 60) -> None:
    wait_until(lambda: not unavailable(lane), timeout=within, interval=1)


def test_devices_and_entities_as_announced(lane: Lane) -> None:
    """Every announced component is an entity with its name, unit, classes and category."""
    sent = wait_until(lambda: (d := discovery(lane)) and len(d) == 4 and d, timeout=60)
    gateway = next(d for ident, d in sent.items() if ident.startswith("bmsgate-gateway"))
    wanted = {
        c["uniq_id"]: (ident, key, c)
        for ident, payload in sent.items()
        for key, c in payload["cmps"].items()
        if "uniq_id" in c  # a platform-only component is a removal
    }

    def all_there() -> bool:
        _, entities = registry(lane)
        return wanted.keys() <= {e["unique_id"] for e in entities if e["platform"] == "mqtt"}

    wait_until(all_there, timeout=90, interval=1)
    wait_available(lane)
    devices, entities = registry(lane)
    by_ident = {ident[1]: d for d in devices for ident in d["identifiers"] if ident[0] == "mqtt"}
    hub = by_ident[gateway["dev"]["ids"][0]]
    assert (hub["name"], hub["model"], hub["sw_version"]) == (
        "bmsgate",
        "Gateway",
        gateway["o"]["sw"],
    )
    for pack, name in PACKS.items():
        device = by_ident[f"bmsgate_{pack}"]
        assert device["name"] == name and device["manufacturer"]
        assert device["via_device_id"] == hub["id"], pack
        assert device["configuration_url"] == sent[f"bmsgate_{pack}"]["dev"]["cu"]
    states = lane.ha.states()
    mqtt = [e for e in entities if e["platform"] == "mqtt"]
    for entry in mqtt:
        assert entry["original_name"], f"unnamed entity {entry['entity_id']}"
    registry_of = {e["unique_id"]: e for e in mqtt}
    wrong = []
    for uid, (ident, _, c) in wanted.items():
        entry = registry_of[uid]
        device = sent[ident]["dev"]["name"]
        expect = f"{c['p']}." + slug(f"{device} {c['name']}")
        if entry["entity_id"] != expect:
            wrong.append(f"{uid}: entity id {entry['entity_id']} (not {expect})")
        if entry["original_name"] != c["name"]:
            wrong.append(f"{uid}: name {entry['original_name']!r}")
        if entry["entity_category"] != c.get("ent_cat"):
            wrong.append(f"{uid}: category {entry['entity_category']}")
        if (entry["disabled_by"] == "integration") != (c.get("en") is False):
            wrong.append(f"{uid}: disabled_by {entry['disabled_by']}")
        if entry["disabled_by"]:
            continue
        attrs = states[entry["entity_id"]]["attributes"]
        for ours, theirs in (
            ("unit_of_meas", "unit_of_measurement"),
            ("dev_cla", "device_class"),
            ("stat_cla", "state_class"),
        ):
            if attrs.get(theirs) != c.get(ours):
                wrong.append(f"{uid}: {theirs} {attrs.get(theirs)!r}, sent {c.get(ours)!r}")
    assert not wrong, "\n".join(wrong)
    # a few by hand: what a battery dashboard needs
    voltage = states["sensor.simulated_pack_1_voltage"]["attributes"]
    assert (voltage["unit_of_measurement"], voltage["device_class"]) == ("V", "voltage")
    energy = states["sensor.house_bank_energy_discharged"]["attributes"]
    assert (energy["unit_of_measurement"], energy["state_class"]) == ("kWh", "total_increasing")
    assert states["switch.simulated_pack_1_charge_mosfet"]["state"] in ("on", "off")
    assert "switch.house_bank_charge_mosfet" not in states  # a bank has no switch


def test_member_outage_shown_and_bank_goes_on(lane: Lane) -> None:
    """sim-2's reader stopped for ~12 s: its entities unavailable, the bank's not, then back."""
    states = lane.ha.states()
    before = float(states["sensor.simulated_pack_2_energy_discharged"]["state"])
    reader = reader_of(lane, 1)
    lane.outage["start"] = datetime.now(UTC)
    os.kill(reader, signal.SIGSTOP)
    try:
        wait_until(lambda: unavailable(lane, {"sim-2"}), timeout=20, interval=1)
        assert not unavailable(lane, {"sim-1", "house"})
        time.sleep(6)
    finally:
        os.kill(reader, signal.SIGCONT)
    wait_until(lambda: not unavailable(lane, {"sim-2"}), timeout=30, interval=1)
    lane.outage["end"] = datetime.now(UTC)
    after = float(lane.ha.states()["sensor.simulated_pack_2_energy_discharged"]["state"])
    lane.outage["sim-2 moved while out"] = after - before
    assert not unavailable(lane)


def test_switch_round_trip_reads_back(lane: Lane) -> None:
    """HA turns a MOSFET off and on; the switch follows the state the BMS reports."""
    entity = "switch.simulated_pack_1_charge_mosfet"
    with lane.ha.ws() as ws:
        for want in ("off", "on"):
            began = time.monotonic()
            ws.command(
                "call_service",
                domain="switch",
                service=f"turn_{want}",
                target={"entity_id": entity},
            )
            wait_until(lambda w=want: lane.ha.states()[entity]["state"] == w, timeout=20)
            lane.outage[f"switch {want} [s]"] = round(time.monotonic() - began, 2)
    # the state came from the BMS: the backbone's state of sim-1 says the same
    seen = lane.viewer("bmsgate/bms/sim-1/state", 1)
    assert seen and seen[0][1]["charge_mos"] is True


def test_available_after_ha_restart(lane: Lane) -> None:
    """HA stopped and started (while the statistics run is awaited: bmsgate is not touched, so
    the bank's counting is not): every entity back, none only restored from the registry."""
    before = set(pack_entities(lane))
    lane.ha.stop()
    lane.ha.start()
    wait_available(lane, within=120)
    assert set(pack_entities(lane)) == before
    restored = [
        eid
        for eid, s in lane.ha.states().items()
        if eid in before and s["attributes"].get("restored")
    ]
    assert restored == []  # an entity only restored from the registry: orphaned


def five_minutes_after(moment: datetime) -> datetime:
    """The end of the 5-minute statistics period ``moment`` falls in."""
    floor = moment.replace(second=0, microsecond=0, minute=moment.minute - moment.minute % 5)
    return floor + timedelta(minutes=5)


def test_bank_statistics_equal_members_over_the_outage(lane: Lane) -> None:
    """HA's long-term statistics: the bank's energy moved as its members', outage included.

    HA compiles 5-minute statistics 10 s after each 5-minute boundary; the periods from HA's
    start to the one holding the outage's end are compared. The bank adds what a member moves
    while it counts, so it is short of the members by what sim-2 moved while it was out.
    """
    assert lane.outage.get("end"), "the outage did not happen"
    end = five_minutes_after(lane.outage["end"])
    wait = (end + timedelta(seconds=25) - datetime.now(UTC)).total_seconds()
    if wait > 0:
        time.sleep(wait)
    ids = {
        f"{pack}:{key}": f"sensor.{slug(name)}_energy_{key}"
        for pack, name in PACKS.items()
        for key in ("charged", "discharged")
    }
    with lane.ha.ws() as ws:

        def compiled() -> dict[str, Any] | None:
            got: dict[str, Any] = ws.command(
                "recorder/statistics_during_period",
                start_time=(lane.started - timedelta(minutes=5)).isoformat(),
                end_time=end.isoformat(),
                statistic_ids=list(ids.values()),
                period="5minute",
                types=["change"],
            )
            last = end.timestamp() * 1000 - 300_000
            return (
                got
                if all(any(r["start"] >= last for r in got.get(i, [])) for i in ids.values())
                else None
            )

        stats = wait_until(compiled, timeout=90, interval=5)
        # what HA recorded of the bank's counters: never down (a fall is a meter reset to HA,
        # the whole new value counted again), whatever the counters' size at the outage
        history = ws.command(
            "history/history_during_period",
            start_time=lane.started.isoformat(),
            entity_ids=[ids["house:charged"], ids["house:discharged"]],
            significant_changes_only=False,
            minimal_response=True,
            no_attributes=True,
        )
    for entity, rows in history.items():
        values = [float(r["s"]) for r in rows if r["s"] not in ("unknown", "unavailable")]
        falls = [(a, b) for a, b in itertools.pairwise(values) if b < a]
        assert values and not falls, (entity, falls)
    assert len(history[ids["house:discharged"]]) > 5  # it moved, and HA recorded it moving
    change = {k: sum(r["change"] or 0 for r in stats[i]) for k, i in ids.items()}
    print("energy change [kWh] in HA's statistics:", change, "outage:", lane.outage)  # -s
    for key in ("charged", "discharged"):
        members = change[f"sim-1:{key}"] + change[f"sim-2:{key}"]
        gap = lane.outage["sim-2 moved while out"] if key == "discharged" else 0.0
        bank = change[f"house:{key}"]
        assert bank >= 0 and all(
            r["change"] is None or r["change"] >= 0 for r in stats[ids[f"house:{key}"]]
        )
        # rounding (1 Wh steps) and the first period's start: a few Wh; the former rule (the
        # members' lifetime sum, falling at the outage) added a member's whole counter, ~10 Wh+
        assert abs(bank - (members - gap)) <= 0.004 + 0.03 * members, (key, bank, members, gap)
    assert change["house:discharged"] > 0  # the simulated packs discharge


def test_energy_dashboard_validates(lane: Lane) -> None:
    """The bank as the Energy dashboard's battery: HA's own validation finds nothing.

    After the statistics test: before HA has compiled the first statistics, validation says
    ``statistics_not_defined`` for any new sensor.
    """
    source = {
        "type": "battery",
        "stat_energy_from": "sensor.house_bank_energy_discharged",
        "stat_energy_to": "sensor.house_bank_energy_charged",
    }
    with lane.ha.ws() as ws:
        ws.command("energy/save_prefs", energy_sources=[source])

        def validated() -> dict[str, Any] | None:
            got: dict[str, Any] = ws.command("energy/validate")
            return got if got["energy_sources"] else None

        result = wait_until(validated, timeout=30, interval=1)
    issues = [i for group in result["energy_sources"] for i in group]
    issues += [i for group in result.get("device_consumption", []) for i in group]
    assert issues == [], issues


def test_available_after_pack_bmsgate_and_broker_restart(lane: Lane) -> None:
    """Every entity comes back after each restart, and nothing is left orphaned."""
    before = set(pack_entities(lane))
    # a pack: its reader killed, bmsgate run starts it again
    old = reader_of(lane, 0)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: reader_of(lane, 0) != old, timeout=60, interval=1)
    wait_available(lane)
    # bmsgate: stopped (its private broker with it), the entities go unavailable, then started
    assert lane.run.stop(timeout=30) == 0
    wait_until(lambda: len(unavailable(lane)) == len(before), timeout=30, interval=1)
    lane.start_run(2)
    wait_available(lane, within=90)
    # the broker alone: stopped and started again on its port, with its retained store gone
    brokers = children(lane.run.process.pid, "mosquitto")
    assert len(brokers) == 1
    argv = Path(f"/proc/{brokers[0]}/cmdline").read_bytes().decode().split("\0")[:-1]
    os.kill(brokers[0], signal.SIGTERM)
    wait_until(lambda: not wait_for_port("127.0.0.1", lane.users["port"], 0.2), timeout=10)
    time.sleep(3)
    lane.procs.append(Proc("broker-again", argv, lane.workdir))
    assert wait_for_port("127.0.0.1", lane.users["port"], 10)
    wait_available(lane, within=90)
    assert set(pack_entities(lane)) == before
    restored = [
        eid
        for eid, s in lane.ha.states().items()
        if eid in before and s["attributes"].get("restored")
    ]
    assert restored == []


def log_records(lane: Lane) -> list[str]:
    """HA's log records of both runs (before and after its restart), a traceback with its line."""
    records: list[str] = []
    for log in sorted(lane.ha.config.glob("home-assistant.log*")):
        for line in log.read_text(errors="replace").splitlines():
            if re.match(r"\d{4}-\d\d-\d\d ", line) or not records:
                records.append(line)
            else:
                records[-1] += "\n" + line
    return records


def test_home_assistant_log_is_free_of_warnings(lane: Lane) -> None:
    """Nothing HA logged at WARNING or above is about bmsgate's payloads (templates included).

    Allowed: what this chroot lacks (UNRELATED), the MQTT client's word for the broker restart
    (BROKER_AWAY), and HA's own unretrieved task when its birth message meets a broker that has
    just gone away (homeassistant/components/mqtt/client.py, not a payload).
    """
    records = log_records(lane)
    assert records, "HA wrote no log"
    bad = [
        r
        for r in records
        if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", r)
        and not any(u in r for u in UNRELATED)
        and not any(a in r for a in BROKER_AWAY)
        and not (
            "_async_resubscribe_and_publish_birth_message" in r and "not currently connected" in r
        )
    ]
    assert not bad, "\n".join(bad[:20])
    assert not [r for r in records if "template" in r.lower() and "bmsgate" in r]

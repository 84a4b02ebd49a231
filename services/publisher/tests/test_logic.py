"""What each target gets per tick, command parsing, and the mailbox."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from packages.outputs.tests.states import T0, make_state

from bmsgate_common.models import Availability, DailyStats
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs.plan import HeardPacks, Plan, TargetMessage, hasp_messages, hasp_problem
from bmsgate_outputs.topics import pack_in, template_problem
from bmsgate_publisher.commands import parse_command
from bmsgate_publisher.target import Mailbox

LOCAL = datetime(2025, 12, 22, 13, 12, 47)


def plan(control: bool = False, **target: Any) -> Plan:
    settings = TargetSettings.model_validate({"name": "t", "topic_prefix": "p", **target})
    return Plan(settings, control, "9.9", stale_after=60)


def hub_with(**over: Any) -> HeardPacks:
    hub = HeardPacks(stale_after=60)
    hub.on_state(make_state(**over))
    return hub


def by_topic(messages: list[TargetMessage]) -> dict[str, TargetMessage]:
    topics = [m.topic for m in messages]
    assert len(topics) == len(set(topics)), "one message per topic per tick"
    return {m.topic: m for m in messages}


def test_first_tick_sends_availability_main_and_status_packets() -> None:
    msgs = by_topic(plan().tick(hub_with(), T0, LOCAL, 12.5, 4096))
    assert list(msgs) == ["p/garage/availability", "p/garage", "p/garage/status"]
    assert msgs["p/garage/availability"] == TargetMessage(
        "p/garage/availability", b"online", 1, True
    )
    assert msgs["p/garage"].payload.startswith(b'{"bat":{"0":2927,') and msgs["p/garage"].qos == 0
    assert (
        msgs["p/garage/status"].payload
        == b'{"Status":1,"ts":"12/22/25 13:12:47","cnt":12,"mem":4096}'
    )


def test_next_tick_without_news_sends_only_the_status_packet() -> None:
    p, hub = plan(), hub_with()
    p.tick(hub, T0, LOCAL, 1, 0)
    assert [m.topic for m in p.tick(hub, T0, LOCAL, 2, 0)] == ["p/garage/status"]
    hub.on_state(make_state(ts=T0 + timedelta(seconds=5), soc=28))
    assert [m.topic for m in p.tick(hub, T0, LOCAL, 3, 0)] == ["p/garage", "p/garage/status"]


def test_stale_or_offline_pack_status_0_and_no_values() -> None:
    p, hub = plan(), hub_with()
    p.tick(hub, T0, LOCAL, 1, 0)
    later = T0 + timedelta(seconds=62)
    hub.on_state(make_state(ts=T0 + timedelta(seconds=1)))
    msgs = by_topic(p.tick(hub, later, LOCAL, 2, 0))
    assert msgs["p/garage/availability"].payload == b"offline"
    assert json.loads(msgs["p/garage/status"].payload)["Status"] == 0
    assert "p/garage" not in msgs
    gone = T0 + timedelta(seconds=2)  # the reader gave up after that state
    hub.view("garage").availability = Availability(pack="garage", state="offline", ts=gone)
    assert not hub.view("garage").online(gone, 60)


def test_status_packet_even_before_the_bms_ever_answered() -> None:
    hub = HeardPacks()
    hub.view("garage").availability = Availability(pack="garage", state="offline", ts=T0)
    msgs = by_topic(plan().tick(hub, T0, LOCAL, 1, 0))
    assert msgs["p/garage/availability"].payload == b"offline"
    assert json.loads(msgs["p/garage/status"].payload)["Status"] == 0


def test_daily_packet_when_it_changes() -> None:
    p, hub = plan(), hub_with()
    hub.view("garage").daily = DailyStats(pack="garage", day=date(2025, 12, 22), ts=T0, max_soc=27)
    assert by_topic(p.tick(hub, T0, LOCAL, 1, 0))["p/garage/daily"].payload == b'{"SCM":27}'
    assert "p/garage/daily" not in by_topic(p.tick(hub, T0, LOCAL, 2, 0))


def test_topic_templates_style_and_fields() -> None:
    p = plan(
        dongle={
            "style": "type1",
            "fields": ["soc", "mos"],
            "main_topic": "dongle/{pack}/data",
            "status_topic": "{prefix}/st/{pack}",
        },
        qos=1,
        retain=False,
    )
    msgs = by_topic(p.tick(hub_with(), T0, LOCAL, 1, 0))
    assert msgs["dongle/garage/data"] == TargetMessage(
        "dongle/garage/data", b'{"SOC":27,"DMS":1,"CMS":1}', 1, False, perishable=True
    )
    assert "p/st/garage" in msgs


def test_home_assistant_config_state_and_switch_states() -> None:
    p = plan(control=True, dongle={"enabled": False}, homeassistant={"enabled": True})
    msgs = by_topic(p.tick(hub_with(), T0, LOCAL, 1, 0))
    config = msgs["homeassistant/device/bmsgate_garage/config"]
    assert (config.qos, config.retain) == (1, True)
    assert json.loads(config.payload)["cmps"]["charge_mos"]["p"] == "switch"
    state = json.loads(msgs["p/garage/state"].payload)
    assert state["soc"] == 27 and state["cell_16"] == 2.945 and "charge_mos" not in state
    assert msgs["p/garage/charge_mos"] == TargetMessage("p/garage/charge_mos", b"ON", 1, True)
    assert "p/garage/status" not in msgs  # dongle packets off
    # the config is sent again only when it changes
    hub = hub_with(ts=T0 + timedelta(seconds=1), energy_in=2.0)
    again = by_topic(p.tick(hub, T0, LOCAL, 2, 0))
    assert (
        "energy_in"
        in json.loads(again["homeassistant/device/bmsgate_garage/config"].payload)["cmps"]
    )
    third = by_topic(p.tick(hub_with(ts=T0 + timedelta(seconds=2), energy_in=2.1), T0, LOCAL, 3, 0))
    assert "homeassistant/device/bmsgate_garage/config" not in third


def test_the_gateway_device_carries_the_version_and_the_packs_hang_off_it() -> None:
    p = plan(dongle={"enabled": False}, homeassistant={"enabled": True})
    msgs = by_topic(p.tick(hub_with(), T0, LOCAL, 1, 0))
    gateway = msgs["homeassistant/device/bmsgate-gateway-p/config"]
    assert (gateway.qos, gateway.retain) == (1, True)  # resent after HA's birth with the rest
    dev = json.loads(gateway.payload)["dev"]
    assert (dev["name"], dev["sw"]) == ("bmsgate", "9.9")
    pack = json.loads(msgs["homeassistant/device/bmsgate_garage/config"].payload)["dev"]
    assert pack["via_device"] == dev["ids"][0]
    later = by_topic(p.tick(hub_with(ts=T0 + timedelta(seconds=1)), T0, LOCAL, 2, 0))
    assert "homeassistant/device/bmsgate-gateway-p/config" not in later  # once per start
    assert not any("gateway" in m.topic for m in plan().tick(hub_with(), T0, LOCAL, 1, 0))


def test_flat_topics() -> None:
    p = plan(dongle={"enabled": False}, flat=True)
    msgs = by_topic(p.tick(hub_with(), T0, LOCAL, 1, 0))
    assert msgs["p/garage/soc"].payload == b"27.0"
    assert msgs["p/garage/cell/3"].payload == b"2.957"
    assert msgs["p/garage/temperature/2"].payload == b"12.4"
    assert msgs["p/garage/cell_delta"].payload == b"30"
    assert msgs["p/garage/alarm"].payload == b"ON"
    assert msgs["p/garage/charge_mos"] == TargetMessage("p/garage/charge_mos", b"ON", 1, True)
    assert (msgs["p/garage/soc"].qos, msgs["p/garage/soc"].retain) == (0, True)


def test_packs_filter() -> None:
    assert plan(packs=["other"]).tick(hub_with(), T0, LOCAL, 1, 0) == []


def test_openhasp_push() -> None:
    objects = {
        "p1b2.val": "{soc:.0f}",
        "p1b3.text": "{voltage:.2f} V {current:+.1f} A",
        "p1b4.val": "{cell_min_mv}",
        "p1b5.text": "{energy_in} kWh",
    }
    p = plan(
        dongle={"enabled": False},
        openhasp=[{"plate": "plate01", "pack": "garage", "objects": objects}],
    )
    msgs = by_topic(p.tick(hub_with(), T0, LOCAL, 1, 0))
    assert msgs["hasp/plate01/command/p1b2.val"].payload == b"27"
    assert msgs["hasp/plate01/command/p1b3.text"].payload == b"47.20 V +6.2 A"
    assert msgs["hasp/plate01/command/p1b4.val"].payload == b"2927"
    assert "hasp/plate01/command/p1b5.text" not in msgs  # no energy counter: that object waits
    assert hasp_messages("x", {"a": "{soc.__class__}"}, {"soc": 1.0}) == []
    assert hasp_problem("{soc.__class__}") is not None and hasp_problem("{soc:.1f} %") is None


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("p/garage/charge_mos/set", b"OFF", ("garage", [("set_charge_mos", False)])),
        ("p/garage/discharge_mos/set", b"ON", ("garage", [("set_discharge_mos", True)])),
        ("p/garage/mos/set", b'{"CMS":0}', ("garage", [("set_charge_mos", False)])),
        (
            "p/garage/mos/set",
            b'{"CMS":"1","DMS":false}',
            ("garage", [("set_charge_mos", True), ("set_discharge_mos", False)]),
        ),
        ("p/garage/set_soc/set", b"55", ("garage", [("set_soc", 55.0)])),
    ],
)
def test_commands_parse(topic: str, payload: bytes, expected: Any) -> None:
    assert parse_command(plan().target, topic, payload) == expected


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("p/garage/charge_mos/set", b"maybe", "expected ON or OFF"),
        ("p/garage/heater/set", b"ON", "no switch 'heater'"),
        ("p/garage/mos/set", b"{not json", "expected JSON"),
        ("p/garage/mos/set", b'{"XMS":1}', "CMS and/or DMS"),
        ("p/garage/mos/set", b"[1]", "CMS and/or DMS"),
        ("p/garage/mos/set", b'{"CMS":7}', "expected ON or OFF"),
        ("p/garage/mos/set", b"\xff\xfe", "expected JSON"),
        ("elsewhere/x", b"ON", "not a command topic"),
        ("p/garage/set_soc/set", b"full", "expected a SOC"),
        ("p/garage/set_soc/set", b"101", "not within 0..100"),
        ("p/garage/set_soc/set", b"nan", "not within 0..100"),
    ],
)
def test_bad_commands_say_why(topic: str, payload: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_command(plan().target, topic, payload)


def test_result_confirms_the_switch_and_an_error_resends_the_old_state() -> None:
    p, hub = (
        plan(control=True, homeassistant={"enabled": True}, dongle={"enabled": False}),
        hub_with(),
    )
    p.tick(hub, T0, LOCAL, 1, 0)
    key = hub.on_result("garage", "set_charge_mos", "ok", False)
    assert p.mos_messages("garage", hub.view("garage"), again=key) == [
        TargetMessage("p/garage/charge_mos", b"OFF", 1, True)
    ]
    key = hub.on_result("garage", "set_charge_mos", "error", None)
    assert p.mos_messages("garage", hub.view("garage"), again=key) == [
        TargetMessage("p/garage/charge_mos", b"OFF", 1, True)
    ]
    assert hub.on_result("garage", "set_soc", "ok", 50.0) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{prefix}/{pack}", None),
        ("x/{pack}/y", None),
        ("{prefix}/all", "needs {pack}"),
        ("{prefix}/{pak}", "unknown placeholder {pak}"),
        ("{prefix}/+/{pack}", "no wildcards"),
        ("{prefix}/{pack", "expected '}'"),
    ],
)
def test_topic_templates(template: str, problem: str | None) -> None:
    found = template_problem(template)
    assert found is None if problem is None else problem in (found or "")


def test_template_match() -> None:
    assert pack_in("{prefix}/{pack}/mos/set", "a/b", "a/b/garage/mos/set") == "garage"
    assert pack_in("{prefix}/{pack}/mos/set", "a/b", "a/c/garage/mos/set") is None


async def test_mailbox_keeps_the_latest_per_topic_and_stays_bounded() -> None:
    box = Mailbox(limit=3)
    for i in range(3):
        box.put(TargetMessage("a", str(i).encode()))
    box.put(TargetMessage("b", b"1"))
    box.put(TargetMessage("b", b"0"), if_absent=True)
    assert len(box) == 2
    for t in "cde":
        box.put(TargetMessage(t, b""))
    assert box.dropped == 2
    got = await asyncio.wait_for(box.take(), 1)
    assert [m.topic for m in got] == ["c", "d", "e"]
    assert len(box) == 0


def test_mailbox_counts_replaced_values_and_expires_only_stale_perishable_ones() -> None:
    box = Mailbox(max_age=60.0)
    value = TargetMessage("p/garage", b"1", perishable=True)
    box.put(value, at=1000.0)
    box.put(value._replace(payload=b"2"), at=1001.0)  # a newer state while the broker is slow
    assert (len(box), box.replaced) == (1, 1)
    online = TargetMessage("p/garage/availability", b"online", 1, True)
    assert box.fresh(value, 1000.0, 1060.0)  # as old as stale_after: still sent
    assert not box.fresh(value, 1000.0, 1060.5)  # older: the pack would count as stale
    assert box.fresh(online, 1000.0, 5000.0)  # availability and configs are never stale
    assert box.expired == 1

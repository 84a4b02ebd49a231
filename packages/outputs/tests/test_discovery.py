"""Home Assistant discovery from the description table."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from packages.outputs.tests.states import T0, make_state

from bmsgate_common.models import BmsSettings, PackState, SettingValue, utcnow
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs import discovery
from bmsgate_outputs.entities import descriptions, values
from bmsgate_outputs.plan import HeardPacks, Plan
from bmsgate_outputs.topics import TargetTopics

TOPICS = TargetTopics("solar/bms")


def config(state: PackState, control: bool = False) -> dict[str, Any]:
    rows = descriptions(state, control=control)
    return discovery.device_config(
        state, rows, TOPICS, version="9.9", expire_after=60, control=control
    )


@pytest.fixture
def state() -> PackState:
    return make_state()


def test_device_origin_and_topic(state: PackState) -> None:
    cfg = config(state)
    assert (
        discovery.config_topic("homeassistant", "garage")
        == "homeassistant/device/bmsgate_garage/config"
    )
    assert cfg["dev"] == {
        "ids": ["bmsgate_garage"],
        "name": "Garage",
        "mf": "DALY",
        "mdl": "DALY BMS (UART protocol)",
        "via_device": "bmsgate-gateway-solar_bms",
    }
    assert cfg["o"] == {"name": "bmsgate", "sw": "9.9"}


def test_the_gateway_is_a_device_with_bmsgates_version() -> None:
    cfg = discovery.gateway_config(TOPICS, version="9.9")
    assert cfg["dev"] == {
        "ids": ["bmsgate-gateway-solar_bms"],
        "name": "bmsgate",
        "mf": "bmsgate",
        "mdl": "Gateway",
        "sw": "9.9",
    }
    assert cfg["cmps"]["connected"]["stat_t"] == "solar/bms/availability"
    assert discovery.gateway_topic("homeassistant", TOPICS) == (
        "homeassistant/device/bmsgate-gateway-solar_bms/config"
    )


def test_every_cell_is_a_diagnostic_voltage_sensor(state: PackState) -> None:
    cmps = config(state)["cmps"]
    cells = [k for k in cmps if k.startswith("cell_") and k[5:].isdigit()]
    assert len(cells) == 16
    c3 = cmps["cell_3"]
    assert c3 == {
        "p": "sensor",
        "uniq_id": "bmsgate_garage_cell_3",
        "name": "Cell 3 voltage",
        "avty": [{"t": "solar/bms/availability"}, {"t": "solar/bms/garage/availability"}],
        "avty_mode": "all",
        "stat_t": "solar/bms/garage/state",
        "val_tpl": "{{ value_json.cell_3 | default(None) }}",
        "dev_cla": "voltage",
        "unit_of_meas": "V",
        "stat_cla": "measurement",
        "ent_cat": "diagnostic",
        "sug_dsp_prc": 3,
        "exp_aft": 60,
    }


def test_names_never_start_with_the_device_name(state: PackState) -> None:
    for cmp in config(state, control=True)["cmps"].values():
        assert not cmp["name"].lower().startswith("garage")
        assert cmp["uniq_id"].startswith("bmsgate_garage_")


def test_min_max_cells_carry_their_index(state: PackState) -> None:
    rows = descriptions(state, control=False)
    vals = values(state, rows)
    assert vals["cell_min"] == 2.927 and vals["cell_min_index"] == 1
    assert vals["cell_max"] == 2.957 and vals["cell_max_index"] == 3
    assert vals["cell_delta"] == 30
    assert "cell_min_pack" not in vals  # bank rows only on banks


def test_energy_sensors_appear_once_the_counters_exist(state: PackState) -> None:
    assert "energy_in" not in config(state)["cmps"]
    cmps = config(make_state(energy_in=1.5, energy_out=0.25, cycles=12))["cmps"]
    assert cmps["energy_in"]["dev_cla"] == "energy" and cmps["energy_in"]["unit_of_meas"] == "kWh"
    assert cmps["energy_in"]["stat_cla"] == "total_increasing"
    assert cmps["energy_out"]["name"] == "Energy discharged"
    assert cmps["cycles"]["stat_cla"] == "total_increasing"


def test_mos_switches_only_with_control(state: PackState) -> None:
    off = config(state, control=False)["cmps"]
    assert off["charge_mos"]["p"] == "binary_sensor"
    on = config(state, control=True)["cmps"]
    assert on["charge_mos"] == {
        "p": "switch",
        "uniq_id": "bmsgate_garage_charge_mos",
        "name": "Charge MOSFET",
        "avty": [{"t": "solar/bms/availability"}, {"t": "solar/bms/garage/availability"}],
        "avty_mode": "all",
        "stat_t": "solar/bms/garage/charge_mos",
        "cmd_t": "solar/bms/garage/charge_mos/set",
        "pl_on": "ON",
        "pl_off": "OFF",
        "opt": False,
        "json_attr_t": "solar/bms/garage/charge_mos/result",
    }
    # no entity category: auto-generated dashboards show the MOSFET switches
    assert on["discharge_mos"]["cmd_t"] == "solar/bms/garage/discharge_mos/set"


def test_online_and_alarm_binary_sensors(state: PackState) -> None:
    cmps = config(state)["cmps"]
    assert cmps["online"]["stat_t"] == "solar/bms/garage/availability"
    assert cmps["online"]["avty_t"] == "solar/bms/availability"  # known while the pack is not
    assert (cmps["online"]["pl_on"], cmps["online"]["pl_off"]) == ("online", "offline")
    assert cmps["alarm"]["dev_cla"] == "problem" and cmps["alarm"]["p"] == "binary_sensor"
    vals = values(state, descriptions(state, control=False))
    assert vals["alarm"] == "ON" and vals["alarms"] == "charge_undertemp_warning"


def test_a_bank_gets_no_switches_and_names_the_pack_of_its_extreme_cells() -> None:
    bank = make_state(
        pack="bank", name="Bank", extras={"bank": True, "cell_min_pack": "shed", "cell_min_cell": 4}
    )
    cmps = config(bank, control=True)["cmps"]
    assert cmps["charge_mos"]["p"] == "binary_sensor"
    assert "cell_min_pack" in cmps
    vals = values(bank, descriptions(bank, control=True))
    assert vals["cell_min_pack"] == "shed" and vals["cell_min_index"] == 4


def _settings() -> BmsSettings:
    rows = [
        SettingValue(key="cell_ovp", label="Cell ovp", unit="V", value=3.65, writable=False),
        SettingValue(
            key="balance_start_voltage",
            label="Balance start voltage",
            unit="V",
            value=3.4,
            writable=True,
            min=2.6,
            max=3.65,
        ),
        SettingValue(key="cell_count", label="Cell count", unit="", value=16, writable=False),
    ]
    return BmsSettings(pack="garage", protocol="jk_pb", ts=utcnow(), settings=rows)


def test_bms_settings_are_diagnostic_sensors_disabled_by_default(state: PackState) -> None:
    rows = descriptions(state, control=False)
    cmps = discovery.device_config(
        state, rows, TOPICS, version="9.9", expire_after=60, settings=_settings()
    )["cmps"]
    assert cmps["setting_balance_start_voltage"] == {
        "p": "sensor",
        "uniq_id": "bmsgate_garage_setting_balance_start_voltage",
        "name": "Setting: Balance start voltage",
        "stat_t": "solar/bms/garage/settings",
        "val_tpl": "{{ value_json.balance_start_voltage | default(None) }}",
        "ent_cat": "diagnostic",
        "en": False,
        "unit_of_meas": "V",
        "avty_mode": "all",
        "avty": [{"t": "solar/bms/availability"}, {"t": "solar/bms/garage/availability"}],
    }
    assert "unit_of_meas" not in cmps["setting_cell_count"]
    assert config(state)["cmps"].keys() < cmps.keys()  # added, nothing of the state's removed


def test_a_target_sends_the_settings_and_rediscovers_once(state: PackState) -> None:
    target = TargetSettings.model_validate(
        {"name": "ha", "topic_prefix": "solar/bms", "homeassistant": {"enabled": True}}
    )
    plan = Plan(target=target, control=False, version="9.9", stale_after=60.0)
    hub = HeardPacks()
    hub.on_state(state)
    now = state.ts
    first = plan.tick(hub, now, now, 1.0, 1000)
    assert not any(m.topic.endswith("/settings") for m in first)
    hub.view("garage").settings = _settings()
    second = plan.tick(hub, now, now, 2.0, 1000)
    sent = {m.topic: m for m in second}
    assert json.loads(sent["solar/bms/garage/settings"].payload) == {
        "cell_ovp": 3.65,
        "balance_start_voltage": 3.4,
        "cell_count": 16,
    }
    assert sent["solar/bms/garage/settings"].retain
    config_topic = "homeassistant/device/bmsgate_garage/config"
    assert "setting_cell_ovp" in json.loads(sent[config_topic].payload)["cmps"]
    third = plan.tick(hub, now, now, 3.0, 1000)
    assert not any(m.topic in (config_topic, "solar/bms/garage/settings") for m in third)


def test_rows_not_meant_for_home_assistant_are_not_announced(state: PackState) -> None:
    cmps = config(state, control=True)["cmps"]
    assert {"cell_min_mv", "cell_max_mv", "cell_average_mv"}.isdisjoint(cmps)
    assert all(cmp["name"] for cmp in cmps.values())  # no entity named after its device only


def _ha_plan() -> Plan:
    target = TargetSettings.model_validate(
        {"name": "ha", "topic_prefix": "solar/bms", "homeassistant": {"enabled": True}}
    )
    return Plan(target=target, control=False, version="9.9", stale_after=60.0)


def _sent(plan: Plan, hub: HeardPacks, state: PackState) -> dict[str, Any]:
    hub.on_state(state)
    return {
        m.topic: json.loads(m.payload)
        for m in plan.tick(hub, state.ts, state.ts, 1.0, 1000)
        if m.topic.endswith(("/config", "/state"))
    }


def test_a_value_that_goes_missing_stays_announced_and_is_null_in_the_state() -> None:
    plan, hub = _ha_plan(), HeardPacks()
    cfg_topic = "homeassistant/device/bmsgate_garage/config"
    full = _sent(plan, hub, make_state(energy_in=1.5, energy_out=0.25, mos_temperature=30.0))
    assert {"energy_in", "mos_temperature"} <= full[cfg_topic]["cmps"].keys()
    later = make_state(ts=T0 + timedelta(seconds=5), temperatures=[12.0])  # fewer fields
    sent = _sent(plan, hub, later)
    assert cfg_topic not in sent  # the same components: no new config
    state = sent["solar/bms/garage/state"]
    assert state["energy_in"] is None and state["mos_temperature"] is None
    assert state["temperature_2"] is None and state["temperature_1"] == 12.0
    assert state.keys() == full["solar/bms/garage/state"].keys()
    tpl = full[cfg_topic]["cmps"]["energy_in"]["val_tpl"]
    assert tpl == "{{ value_json.energy_in | default(None) }}"  # missing or null: "unknown"


def test_a_setting_the_bms_no_longer_lists_is_removed_the_way_ha_documents(
    state: PackState,
) -> None:
    plan, hub = _ha_plan(), HeardPacks()
    hub.on_state(state)
    hub.view("garage").settings = _settings()
    plan.tick(hub, state.ts, state.ts, 1.0, 1000)
    fewer = _settings().model_copy(update={"settings": _settings().settings[:2]})
    hub.view("garage").settings = fewer
    cfg_topic = "homeassistant/device/bmsgate_garage/config"
    sent = {m.topic: json.loads(m.payload) for m in plan.tick(hub, state.ts, state.ts, 2, 1000)}
    assert sent[cfg_topic]["cmps"]["setting_cell_count"] == {"p": "sensor"}  # removal
    assert "setting_cell_ovp" in sent[cfg_topic]["cmps"]
    hub.view("garage").settings = fewer.model_copy(update={"ts": utcnow()})
    again = {m.topic: json.loads(m.payload) for m in plan.tick(hub, state.ts, state.ts, 3, 1000)}
    assert cfg_topic not in again  # the same config: the removal stays in it
    kept = json.loads(plan.sent_config["garage"])["cmps"]
    assert kept["setting_cell_count"] == {"p": "sensor"}


def test_device_info_firmware_serial_hardware_and_the_web_ui() -> None:
    jk = make_state(
        protocol="jk_pb",
        extras={
            "software_version": "19.20",
            "hardware_version": "19.XA",
            "serial_number": "4023A1",
        },
    )
    url = discovery.web_url("0.0.0.0", 8080, "solar-pi")
    assert url == "http://solar-pi:8080/"
    cfg = discovery.device_config(
        jk,
        descriptions(jk, control=False),
        TOPICS,
        version="9.9",
        expire_after=60,
        configuration_url=url,
    )
    assert (cfg["dev"]["sw"], cfg["dev"]["hw"], cfg["dev"]["sn"]) == ("19.20", "19.XA", "4023A1")
    assert cfg["dev"]["cu"] == url and cfg["o"] == {"name": "bmsgate", "sw": "9.9", "url": url}
    gateway = discovery.gateway_config(TOPICS, version="9.9", configuration_url=url)
    assert gateway["dev"]["cu"] == url and gateway["o"]["url"] == url
    assert discovery.web_url("192.168.1.5", 80, "x") == "http://192.168.1.5:80/"
    assert discovery.web_url("fd00::5", 8080, "x") == "http://[fd00::5]:8080/"


def test_states_carry_no_float_noise() -> None:
    noisy = make_state(current=0.16149999999999998, energy_in=1.2345678, pack_voltage=53.1999999)
    vals = values(noisy, descriptions(noisy, control=False))
    assert (vals["current"], vals["energy_in"], vals["voltage"]) == (0.161, 1.235, 53.2)
    assert vals["cell_1"] == 2.927 and vals["power"] == 292.6


def test_each_alarm_class_is_a_problem_sensor(state: PackState) -> None:
    cmps = config(state)["cmps"]
    temp = cmps["alarm_temperature"]
    assert (temp["p"], temp["dev_cla"], temp["name"]) == (
        "binary_sensor",
        "problem",
        "Temperature alarm",
    )
    alarms = ["cell_overvoltage_warning", "short_circuit_fault", "afe_fault", "low_capacity_alarm"]
    vals = values(make_state(alarms=alarms), descriptions(state, control=False))
    assert {k: v for k, v in vals.items() if k.startswith("alarm_")} == {
        "alarm_current": "ON",
        "alarm_hardware": "ON",
        "alarm_temperature": "OFF",
        "alarm_voltage": "ON",
        "alarm_charge_level": "ON",
        "alarm_other": "OFF",
    }
    assert values(state, descriptions(state, control=False))["alarm_temperature"] == "ON"


def test_a_banks_cells_are_disabled_by_default_a_packs_are_not(state: PackState) -> None:
    bank = make_state(pack="bank", name="Bank", extras={"bank": True})
    assert config(bank)["cmps"]["cell_1"]["en"] is False
    assert "en" not in config(state)["cmps"]["cell_1"]


def test_health_direction_charge_counters_balancing_current_and_connections() -> None:
    daly = make_state(
        charge_in=12.5,
        charge_out=3.25,
        current=-4.0,
        extras={
            "soh": 97,
            "balance_current": 0.052,
            "charger_connected": False,
            "load_connected": True,
            "state": "discharging",
        },
    )
    cmps = config(daly)["cmps"]
    assert cmps["direction"]["dev_cla"] == "enum"
    assert cmps["direction"]["ops"] == ["charging", "discharging", "idle"]
    assert cmps["charge_in"]["stat_cla"] == "total_increasing"
    assert cmps["charge_in"]["unit_of_meas"] == "Ah"
    assert cmps["state_of_health"]["unit_of_meas"] == "%"
    assert cmps["charger_connected"]["dev_cla"] == "plug"
    assert cmps["balance_current"]["dev_cla"] == "current"
    vals = values(daly, descriptions(daly, control=False))
    assert (vals["state_of_health"], vals["direction"], vals["charge_out"]) == (
        97.0,
        "discharging",
        3.25,
    )
    assert (vals["charger_connected"], vals["load_connected"]) == ("OFF", "ON")
    balancing = make_state(balancing=True, balancing_cells=[3, 7])
    vals = values(balancing, descriptions(balancing, control=False))
    assert (vals["balancing"], vals["balancing_cells"]) == ("ON", "3, 7")
    bare = make_state(current=0.0)  # no BMS word: the sign of the current
    vals = values(bare, descriptions(bare, control=False))
    assert vals["direction"] == "idle" and "state_of_health" not in vals
    assert "balancing_cells" not in vals  # this BMS does not say


def test_a_set_soc_number_with_control_where_the_protocol_can_set_soc(state: PackState) -> None:
    number = config(state, control=True)["cmps"]["set_soc"]  # DALY UART: its INFO says it can
    assert (number["p"], number["cmd_t"], number["min"], number["max"]) == (
        "number",
        "solar/bms/garage/set_soc/set",
        0,
        100,
    )
    assert number["val_tpl"] == "{{ value_json.soc | default(None) }}"  # the SOC read back
    assert "set_soc" not in config(state, control=False)["cmps"]
    jk = make_state(protocol="jk_pb")
    assert "set_soc" not in config(jk, control=True)["cmps"]  # no SOC write in its protocol
    bank = make_state(pack="bank", name="Bank", extras={"bank": True})
    assert "set_soc" not in config(bank, control=True)["cmps"]


def test_a_config_kept_from_before_a_restart_keeps_its_components() -> None:
    plan, hub = _ha_plan(), HeardPacks()
    before = config(make_state(energy_in=1.5, energy_out=0.25))["cmps"]
    before["cell_min_mv"] = {"p": "sensor", "uniq_id": "bmsgate_garage_cell_min_mv", "name": ""}
    assert plan.seed("garage", before)
    cfg_topic = "homeassistant/device/bmsgate_garage/config"
    sent = _sent(plan, hub, make_state())  # the first state after the start has no counters
    cmps = sent[cfg_topic]["cmps"]
    assert cmps["energy_in"]["uniq_id"] == "bmsgate_garage_energy_in"  # kept
    assert cmps["cell_min_mv"] == {"p": "sensor"}  # a row this version no longer announces
    assert sent["solar/bms/garage/state"]["energy_in"] is None
    assert not plan.seed("garage", before | {"cell_min_mv": {"p": "sensor"}})  # nothing new
    plan.sent_config.clear()  # as if HA asked again: the removal is still in the config
    later = _sent(plan, hub, make_state(ts=T0 + timedelta(seconds=5), soc=30.0))
    assert later[cfg_topic]["cmps"]["cell_min_mv"] == {"p": "sensor"}

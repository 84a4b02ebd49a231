"""The dongle's packets, byte for byte against the manual's examples."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from packages.outputs.tests.states import T0, make_state

from bmsgate_common.models import DailyStats, PackState
from bmsgate_outputs import dongle

MANUAL_TYPE2 = (
    b'{"bat":{"0":2927,"1":2956,"2":2957,"3":2951,"4":2957,"5":2944,"6":2956,"7":2956,'
    b'"8":2955,"9":2957,"10":2957,"11":2956,"12":2937,"13":2956,"14":2956,"15":2945},'
    b'"SOC":27,"PWT":292,"PMV":"47.20","PMA":"6.20","PDV":30.00,"AMV":2951,"TMP":12,'
    b'"ALM":"0,4,0,0,0,0,0","ALMF":1,"DMS":1,"CMS":1}'
)


@pytest.fixture
def state() -> PackState:
    return make_state()


def test_type2_is_the_manuals_packet_byte_for_byte(state: PackState) -> None:
    assert dongle.main_packet(state, "type2") == MANUAL_TYPE2


def test_type1_has_flat_cell_keys_in_the_same_place(state: PackState) -> None:
    packet = dongle.main_packet(state, "type1")
    assert packet.startswith(b'{"b0":2927,"b1":2956,')
    assert b'"b15":2945,"SOC":27,' in packet
    assert b'"bat"' not in packet
    assert packet.endswith(MANUAL_TYPE2[MANUAL_TYPE2.index(b'"SOC"') :])


def test_value_types_match_the_dongle(state: PackState) -> None:
    data = json.loads(dongle.main_packet(state))
    assert isinstance(data["PMV"], str) and isinstance(data["PMA"], str)
    assert all(isinstance(data[k], int) for k in ("SOC", "PWT", "AMV", "TMP", "ALMF", "DMS", "CMS"))
    assert isinstance(data["PDV"], float)


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        (["soc"], ["SOC"]),
        (["voltage", "current"], ["PMV", "PMA"]),
        (["alarms", "mos"], ["ALM", "ALMF", "DMS", "CMS"]),
        (["delta", "average", "temperature", "power"], ["PWT", "PDV", "AMV", "TMP"]),
        (["cells"], ["bat"]),
    ],
)
def test_fields_are_selectable_and_keep_the_dongles_order(
    state: PackState, fields: list[str], keys: list[str]
) -> None:
    assert list(json.loads(dongle.main_packet(state, "type2", fields))) == keys


def test_negative_current_and_power_keep_their_sign() -> None:
    packet = json.loads(dongle.main_packet(make_state(current=-12.345, power=-582.9)))
    assert packet["PMA"] == "-12.35" and packet["PWT"] == -582


def test_unknown_values_are_left_out_not_invented() -> None:
    state = make_state(temperatures=[], charge_mos=None, discharge_mos=None, alarms=[])
    data = json.loads(dongle.main_packet(state))
    assert "TMP" not in data and "DMS" not in data and "CMS" not in data
    assert data["ALM"] == "0,0,0,0,0,0,0" and data["ALMF"] == 0


def test_mos_temperature_stands_in_for_a_missing_pack_sensor() -> None:
    assert (
        json.loads(dongle.main_packet(make_state(temperatures=[], mos_temperature=31.6)))["TMP"]
        == 32
    )


def test_status_packet_is_the_manuals_example() -> None:
    packet = dongle.status_packet(True, datetime(2025, 12, 22, 13, 12, 47), 2535.9, 11696)
    assert packet == b'{"Status":1,"ts":"12/22/25 13:12:47","cnt":2535,"mem":11696}'


def test_status_counter_wraps_like_the_dongles_16_bit_one() -> None:
    packet = json.loads(dongle.status_packet(False, datetime(2026, 1, 2, 3, 4, 5), 65536 + 7, 0))
    assert packet == {"Status": 0, "ts": "01/02/26 03:04:05", "cnt": 7, "mem": 0}


def test_daily_packet_is_the_manuals_example() -> None:
    daily = DailyStats(
        pack="garage",
        day=date(2025, 12, 22),
        ts=T0,
        max_soc=27.2,
        min_cell_voltage=2.938,
        max_cell_voltage=2.929,
        remaining_capacity=84.4,
    )
    assert dongle.daily_packet(daily) == b'{"SCM":27,"MIC":2938,"MAC":2929,"RCP":84}'


def test_empty_daily_packet_is_not_sent() -> None:
    assert dongle.daily_packet(DailyStats(pack="garage", day=date(2025, 12, 22), ts=T0)) is None


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], [0] * 7),
        (["cell_overvoltage", "cell_undervoltage_warning"], [6, 0, 0, 0, 0, 0, 0]),
        (["short_circuit_fault", "afe_fault"], [0, 0, 0, 0, 0, 1, 4]),
        (["daly_bit_3_7", "not_a_code", "daly_bit_9_1", "daly_bit_x"], [0, 0, 0, 128, 0, 0, 0]),
    ],
)
def test_alarm_bytes(codes: list[str], expected: list[int]) -> None:
    assert dongle.alarm_bytes(codes) == expected

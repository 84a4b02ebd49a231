from __future__ import annotations

from typing import Any

import pytest

from bmsgate_bms import seplos_v2, yd1363
from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.errors import ChecksumError, FrameError
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.link import SimLink

from .conftest import PACK_STATE_NAMES, frame_bytes, load_vectors, vector_params

NAMES = PACK_STATE_NAMES | {
    "address": "address",
    "rtn": "rtn",
    "command_group": "command_group",
    "env_temp_C": "ambient_temperature",
    "mosfet_temp_C": "mos_temperature",
    "full_capacity_Ah": "full_capacity",
    "rated_capacity_Ah": "nominal_capacity",
    "soh_pct": "soh",
    "port_voltage_V": "port_voltage",
    "current_limit_on": "current_limiter",
    "heating_on": "heater",
    "disconnected_cells": "disconnected_cells",
    "alarms": "alarms",
    "device_name": "hardware_model",
    "software_version": "software_version",
    "manufacturer": "manufacturer",
}
# raw bytes the decoder turns into the names above, and frame facts checked by the framer
NOT_COMPARED = {
    "temp_sensor_count",
    "cell_alarms",
    "temp_alarms",
    "current_alarm",
    "voltage_alarm",
    "custom_alarm_count",
    "switch_state_raw",
    "system_state_raw",
    "lenid",
    "checksum_ok",
    "version",
    "temps_C",
    "system_state",
}


@pytest.mark.parametrize("vector", vector_params("seplos_v2", "request"))
def test_request_vectors_are_built_exactly(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    assert seplos_v2.request(exp["cid2"], exp["address"]) == raw
    decoded = seplos_v2.decode_request(raw)
    assert (decoded["address"], decoded["cid2"]) == (exp["address"], exp["cid2"])
    assert decoded.get("command_group") == exp.get("command_group")
    with pytest.raises(FrameError, match="request"):
        seplos_v2.decode_hex(raw, command=exp["cid2"])


@pytest.mark.parametrize("vector", vector_params("seplos_v2", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    got = seplos_v2.decode_hex(raw, command=vector["context"]["cid2"])
    for key, value in exp.items():
        if key in NOT_COMPARED:
            continue
        if isinstance(value, str):
            assert got[NAMES[key]] == value.strip(), key
        else:
            assert got[NAMES[key]] == pytest.approx(value), key
    if "temps_C" in exp:  # cells 1-4, ambient, power
        sensors = [*got["temperatures"], got["ambient_temperature"], got["mos_temperature"]]
        assert sensors == pytest.approx(exp["temps_C"])
    if "system_state" in exp:
        assert got["system_state"] == "charging" and exp["system_state"] == ["charge"]


def test_every_vector_is_used() -> None:
    vectors = load_vectors("seplos_v2")
    assert len(vectors) == 16 and all(v["verified"] for v in vectors)
    for vector in vectors:
        unknown = set(vector["expected"]) - set(NAMES) - NOT_COMPARED - {"cid1", "cid2"}
        assert not unknown, (vector["id"], unknown)


def test_an_answer_needs_its_command() -> None:
    raw = frame_bytes(load_vectors("seplos_v2")[6])
    with pytest.raises(FrameError, match="which command"):
        seplos_v2.decode_hex(raw)


def test_checksums_follow_the_pdf_examples() -> None:
    assert yd1363.lchksum(0x012) == 0xD  # LENID 18 -> LENGTH D012
    assert yd1363.lchksum(0x096) == 0x1
    assert yd1363.lchksum(0) == 0
    # the PDF's CHKSUM example "~1203400456ABCEFEFC72" sums to 0x038F, not 0x038E: its
    # checksum is one off (docs/protocols/seplos_v2.md); the table 7 request is right
    assert yd1363.chksum(b"1203400456ABCEFE") == 0xFC71
    assert yd1363.chksum(b"20014642E00201") == 0xFD35


@pytest.mark.parametrize(
    "text",
    [
        b"~20014642E00201FD36\r",  # CHKSUM one off
        b"~20014642F00201FD35\r",  # LCHKSUM wrong
        b"~20014642E0020\x01FD35\r",  # binary junk inside (a collision on the bus)
        b"~20014642E00201FD35",  # no CR
    ],
)
def test_broken_frames_are_frame_errors(text: bytes) -> None:
    with pytest.raises(FrameError):
        seplos_v2.decode_request(text)


def test_checksum_error_is_named() -> None:
    with pytest.raises(ChecksumError):
        yd1363.parse(b"~20014642E00201FD36\r")


def test_framer_resynchronises_after_a_collision() -> None:
    good = seplos_v2.request(0x42, 1)
    buf = b"~2001\x8f\x00~20" + good
    found, rest = [], buf
    while rest:
        used, frame = seplos_v2.framer(rest)
        if used == 0:
            break
        found += [frame] if frame else []
        rest = rest[used:]
    assert found == [good]


def test_alarm_events_are_codes_with_levels() -> None:
    events = {2: 0b0000_0010, 3: 0b0100_0000, 4: 0b0100_0000, 5: 0b0010_0000, 6: 0b1000}
    assert seplos_v2.decode_events(events) == [
        "cell_overvoltage",
        "discharge_undertemp_warning",
        "discharge_short_circuit",
        "soc_low",
    ]  # (event 4 bit 6 is the heater running, not an alarm)
    assert seplos_v2.decode_events({1: 1}) == ["seplos_event1_bit0"]


async def test_packs_by_address_on_one_bus_and_alarms_read() -> None:
    bus = make_bus("seplos_v2", boards=3, cells=15)
    link = SimLink(bus)
    bus.boards[1].model.cells[0].soc = 100.5  # cell 1 of pack 2 over its limit
    for board in bus.boards:
        reading = await seplos_v2.Driver(link, board.address).read()
        model = board.model
        assert reading.cell_voltages == pytest.approx(model.cell_voltages, abs=0.001)
        assert reading.temperatures[: len(model.temperatures)] == pytest.approx(
            model.temperatures, abs=0.05
        )
        assert reading.mos_temperature == pytest.approx(model.mos_temperature, abs=0.05)
        assert reading.alarms == [a for a in model.alarms if a in seplos_v2.EVENT_BITS[2]] or (
            set(reading.alarms) <= set(model.alarms)
        )
        assert reading.extras["hardware_model"] == "1101-SP16"
        assert reading.extras["software_version"] == "2.7"


async def test_mos_and_soc_are_refused_read_only() -> None:
    driver = seplos_v2.Driver(SimLink(make_bus("seplos_v2")), 1)
    with pytest.raises(UnsupportedCommand, match="only reads"):
        await driver.set_mos(charge=True, on=False)
    with pytest.raises(UnsupportedCommand):
        await driver.set_soc(50)


async def test_a_pack_answers_only_its_own_address() -> None:
    bus = make_bus("seplos_v2", boards=2)
    assert bus.boards[0].answer(seplos_v2.request(0x42, 2)) is None
    assert bus.boards[1].answer(seplos_v2.request(0x42, 2)) is not None
    with pytest.raises(ValueError, match=r"0\.\.15"):
        seplos_v2.Driver(SimLink(bus), 16)

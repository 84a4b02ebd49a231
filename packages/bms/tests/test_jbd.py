from __future__ import annotations

from typing import Any

import pytest

from bmsgate_bms import jbd
from bmsgate_bms.errors import FrameError, LinkTimeout
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import SimBus
from bmsgate_bms.sim.link import SimLink

from .conftest import PACK_STATE_NAMES, frame_bytes, load_vectors, vector_params

# vector key -> our key; the vectors were written with their own names
NAMES = PACK_STATE_NAMES | {
    "nominal_capacity_Ah": "nominal_capacity",
    "protection_raw": "protection_raw",
    "software_version": "software_version",
    "manufacture_date": "manufacture_date",
    "model": "hardware_model",
    "error_counts": "error_counts",
}
NOT_COMPARED = {"command", "status", "length", "fet_raw", "balancer_bits", "temp_sensor_count"}


@pytest.mark.parametrize("vector", vector_params("jbd", "request"))
def test_request_vectors_are_built_byte_exact(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    if exp["rw"] == "read":
        assert jbd.request(exp["register"]) == raw
    else:
        data = exp["write_value"].to_bytes(2, "big")
        assert jbd.request(exp["register"], data, write=True) == raw
    assert jbd.framer(raw) == (len(raw), raw)
    assert jbd.response_framer(raw) == (len(raw), None)  # a request is never an answer
    decoded = jbd.decode_request(raw)
    assert (decoded["request"], decoded["register"]) == (exp["rw"], exp["register"])
    assert decoded.get("value") == exp.get("write_value")


@pytest.mark.parametrize("vector", vector_params("jbd", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    got = jbd.decode_hex(raw)
    for key, value in exp.items():
        if key in NOT_COMPARED:
            continue
        if key == "protections":
            assert got["mos_software_lock"] is ("mos_software_lock" in value)
        elif key == "fet_raw":
            pass
        else:
            assert got[NAMES[key]] == pytest.approx(value), key
    if exp.get("status", 0):
        assert got["refused"] is True
        with pytest.raises(FrameError, match="status 0x81"):
            jbd.answer_data(raw)


def test_every_vector_is_used() -> None:
    vectors = load_vectors("jbd")
    assert len(vectors) == 35
    assert all(v["verified"] for v in vectors)
    for vector in vectors:
        unknown = set(vector["expected"]) - set(NAMES) - NOT_COMPARED
        unknown -= {"rw", "register", "write_value", "checksum_ok", "protections"}
        assert not unknown, vector["id"]


def test_protection_bits_are_alarm_codes() -> None:
    body = bytes.fromhex("0618 0000 01f2 01f4 0000 2c7c 0000 0000") + (0x8C01).to_bytes(2, "big")
    body += bytes.fromhex("80 64 03 04 00")
    got = jbd.decode_basic(body)
    # bit 0 cell over-voltage, bits 10 and 11, bit 15 reserved: passed on by number
    assert got["alarms"] == [
        "cell_overvoltage",
        "discharge_short_circuit",
        "afe_fault",
        "jbd_bit_15",
    ]
    assert got["charge_mos"] and got["discharge_mos"] and not got["mos_software_lock"]


@pytest.mark.parametrize(
    ("order", "low", "high", "cells", "expected"),
    [
        ("pdf", 0x0001, 0x0000, 4, [1]),
        ("pdf", 0x8000, 0x0001, 20, [16, 17]),
        ("reversed", 0x0000, 0x0008, 4, [1]),  # one u32, bit (cells - 1 - i) = cell i + 1
        ("reversed", 0x0000, 0x0001, 4, [4]),
    ],
)
def test_balance_bit_order(
    order: Any, low: int, high: int, cells: int, expected: list[int]
) -> None:
    assert jbd.balancing_cells(low, high, cells, order) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "dd 03 00 1d 06 18",  # cut short
        "dd 04 00 08 0f 45 0f 3d 0f 37 0f 3d fe c7 77",  # checksum one off
        "dd 04 00 08 0f 45 0f 3d 0f 37 0f 3d fe c6 78",  # wrong end byte
        "00 dd 04 00 08 0f 45 0f 3d 0f 37 0f 3d fe c6 77",  # junk in front
    ],
)
def test_broken_frames_are_frame_errors(raw: str) -> None:
    with pytest.raises(FrameError):
        jbd.decode_hex(bytes.fromhex(raw))


def test_framer_resynchronises_after_junk_and_a_false_start() -> None:
    frame = bytes.fromhex("dd 04 00 08 0f 45 0f 3d 0f 37 0f 3d fe c6 77")
    buf = b"\x00\x00\xdd\x04\x00" + frame  # a stray DD 04 00 before the real frame
    found, rest = [], buf
    while rest:
        used, got = jbd.framer(rest)
        if used == 0:
            break
        found += [got] if got else []
        rest = rest[used:]
    assert found == [frame]


def _bus(cells: int = 8) -> SimBus:
    return make_bus("jbd", cells=cells)


async def test_reading_names_the_hardware_and_firmware() -> None:
    bus = _bus()
    reading = await jbd.Driver(SimLink(bus)).read()
    assert reading.extras["hardware_model"] == "BMSGATE-SIM-JBD-SP04S"
    assert reading.extras["software_version"] == "4.4"
    assert reading.extras["manufacture_date"] == "2024-04-27"
    assert reading.temperatures == pytest.approx(bus.boards[0].model.temperatures, abs=0.05)


async def test_mos_switching_is_read_back_and_keeps_the_other_mosfet() -> None:
    bus = _bus()
    board, driver = bus.boards[0], jbd.Driver(SimLink(bus))
    assert await driver.set_mos(charge=False, on=False) is False
    assert board.forced == 2 and (await driver.read()).extras["mos_software_lock"] is True
    # switching the charge MOSFET keeps the discharge MOSFET forced off
    assert await driver.set_mos(charge=True, on=False) is False
    assert board.forced == 3
    assert await driver.set_mos(charge=True, on=True) is True
    assert board.forced == 2 and board.model.discharge_mos is False
    assert await driver.set_mos(charge=False, on=True) is True
    assert board.forced == 0 and (await driver.read()).extras["mos_software_lock"] is False


async def test_a_mosfet_a_protection_opened_is_not_forced_off() -> None:
    bus = _bus()
    board = bus.boards[0]
    board.model.discharge_mos = False  # the BMS opened it itself: no software lock
    assert await jbd.Driver(SimLink(bus)).set_mos(charge=True, on=False) is False
    assert board.forced == 1


async def test_eeprom_settings_are_read_in_factory_mode_and_left() -> None:
    bus = _bus(cells=16)
    settings = await jbd.Driver(SimLink(bus)).read_settings()
    assert settings["design_capacity"] == pytest.approx(bus.boards[0].model.nominal_capacity)
    assert settings["cell_overvoltage"] == pytest.approx(3.65)
    assert settings["discharge_overcurrent"] == pytest.approx(-150.0)
    assert settings["charge_overtemp"] == pytest.approx(50.0)
    assert settings["pack_overvoltage"] == pytest.approx(16 * 3.65)
    assert settings["cell_count"] == 16
    assert bus.boards[0].factory is False  # left without saving
    with pytest.raises(FrameError, match="status 0x80"):  # outside factory mode: refused
        jbd.answer_data(bus.boards[0].answer(jbd.request(0x10))[0])


async def test_silence_is_a_timeout_and_no_address_but_one() -> None:
    bus = _bus()
    bus.faults.mode = "silent"
    with pytest.raises(LinkTimeout):
        await jbd.Driver(SimLink(bus)).read()
    with pytest.raises(ValueError, match="one BMS per line"):
        jbd.Driver(SimLink(bus), address=2)

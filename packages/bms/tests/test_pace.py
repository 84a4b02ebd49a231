from __future__ import annotations

from typing import Any

import pytest

from bmsgate_bms import pace
from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.errors import FrameError
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.link import SimLink

from .conftest import PACK_STATE_NAMES, frame_bytes, load_vectors, vector_params

NAMES = PACK_STATE_NAMES | {
    "address": "address",
    "rtn": "rtn",
    "pack_address": "pack_address",
    "mosfet_temp_C": "mos_temperature",
    "env_temp_C": "ambient_temperature",
    "full_capacity_Ah": "full_capacity",
    "design_capacity_Ah": "nominal_capacity",
    "soh_pct": "soh",
    "discharging": "discharging",
    "charging": "charging",
    "pack_count": "pack_count",
    "text_stripped": "firmware_version",
}
NOT_COMPARED = {
    "temp_sensor_count",
    "cell_warnings",
    "temp_warnings",
    "system_state_raw",
    "lenid",
    "checksum_ok",
    "version",
    "temps_C",
    "custom_number",
    "info_bytes",
    "protections",
    "faults",
    "warnings",
    "packs",
}


def _context(vector: dict[str, Any]) -> dict[str, Any]:
    context = vector["context"]
    return {"command": context["cid2"], "all_packs": context.get("command") == 0xFF}


@pytest.mark.parametrize("vector", vector_params("pace", "request"))
def test_request_vectors_are_built_exactly(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    info = bytes((exp["command"],)) if "command" in exp else b""
    assert pace.request(exp["cid2"], exp["address"], info) == raw
    decoded = pace.decode_request(raw)
    assert (decoded["address"], decoded["cid2"]) == (exp["address"], exp["cid2"])
    assert decoded.get("command") == exp.get("command")
    if exp["cid2"] in (pace.CHARGE_MOS, pace.DISCHARGE_MOS):
        on = exp["command"] == 0
        assert pace.mos_request(exp["cid2"] == pace.CHARGE_MOS, on, exp["address"]) == raw


@pytest.mark.parametrize("vector", vector_params("pace", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    got = pace.decode_hex(raw, **_context(vector))
    for key, value in exp.items():
        if key not in NOT_COMPARED:
            assert got[NAMES[key]] == pytest.approx(value), key
    if "temps_C" in exp:  # cells 1-4, MOSFET, ambient
        sensors = [*got["temperatures"], got["mos_temperature"], got["ambient_temperature"]]
        assert sensors == pytest.approx(exp["temps_C"])
    for key in ("protections", "faults", "warnings"):
        if key in exp:
            assert exp[key] == [] and got["alarms"] == []
    if "system_state_raw" in exp and "charge_mos_on" not in exp:  # the refusal: state only
        assert got["refused"] is True and got["discharge_mos"] is True
    for n, pack in enumerate(exp.get("packs", [])):
        for key, value in pack.items():
            assert got["packs"][n][NAMES[key]] == pytest.approx(value), (n, key)


def test_every_vector_is_used() -> None:
    vectors = load_vectors("pace")
    assert len(vectors) == 24 and all(v["verified"] for v in vectors)
    for vector in vectors:
        unknown = set(vector["expected"]) - set(NAMES) - NOT_COMPARED - {"cid1", "cid2", "command"}
        assert not unknown, (vector["id"], unknown)


def test_soc_from_capacities_when_the_firmware_sends_none() -> None:
    raw = frame_bytes(
        next(v for v in load_vectors("pace") if v["id"] == "pace_42_16s_nkinnan_reference")
    )
    assert pace.decode_hex(raw, command=0x42)["soc"] == pytest.approx(
        46.6, abs=0.05
    )  # 48.19/103.46


def test_a_single_pack_answer_from_address_2_is_not_taken_for_two_packs() -> None:
    raw = frame_bytes(
        next(v for v in load_vectors("pace") if v["id"] == "pace_42_16s_vendor_rs485_addr2")
    )
    got = pace.decode_hex(raw, command=0x42)
    assert got["pack_address"] == 2 and got["cell_count"] == 16 and "packs" not in got


@pytest.mark.parametrize(
    ("order", "first", "second", "expected"),
    [
        ("pdf", 0x01, 0x00, [1]),
        ("pdf", 0x00, 0x80, [16]),
        ("u16", 0x01, 0x00, [9]),
        ("u16", 0x00, 0x01, [1]),
    ],
)
def test_balancing_byte_order(order: Any, first: int, second: int, expected: list[int]) -> None:
    assert pace.balancing_cells(first, second, 16, order) == expected


def test_state_bytes_are_alarm_codes_and_fully_charged_is_no_fault() -> None:
    info = bytearray(bytes.fromhex("00 01 04 00 00 00 00 02 00 00") + bytes(12))
    j = 3 + 4 + 1 + 2
    info[j + 3] = 0b0100_0001  # cell over-voltage, short circuit
    info[j + 4] = 0b1001_0000  # MOSFET over-temperature, fully charged
    info[j + 7] = 0b0010_0000  # sampling fault
    info[j + 11] = 0b1000_0000  # low power warning
    got = pace.decode_status(bytes(info))
    assert got["alarms"] == [
        "cell_overvoltage",
        "discharge_short_circuit",
        "mos_overtemp",
        "cell_sampling_fault",
        "soc_low_warning",
    ]
    assert got["fully_charged"] is True


async def test_packs_by_address_on_one_bus() -> None:
    bus = make_bus("pace", boards=3, cells=16)
    link = SimLink(bus)
    for board in bus.boards:
        reading = await pace.Driver(link, board.address).read()
        assert reading.cell_voltages == pytest.approx(board.model.cell_voltages, abs=0.001)
        assert reading.mos_temperature == pytest.approx(board.model.mos_temperature, abs=0.05)
        assert reading.extras["firmware_version"] == "P16S100A-SIM-1.00"
        assert reading.extras["pack_address"] == board.address


async def test_mos_switching_is_read_back() -> None:
    bus = make_bus("pace")
    driver, model = pace.Driver(SimLink(bus), 1), bus.boards[0].model
    assert await driver.set_mos(charge=False, on=False) is False and model.discharge_mos is False
    assert await driver.set_mos(charge=False, on=True) is True and model.discharge_mos is True


async def test_a_refused_mos_command_reads_back_unchanged() -> None:
    bus = make_bus("pace")
    board = bus.boards[0]
    board.model.set_mos = lambda charge, on: None  # type: ignore[method-assign]  # refuses
    assert await pace.Driver(SimLink(bus), 1).set_mos(charge=True, on=False) is True
    with pytest.raises(UnsupportedCommand):
        await pace.Driver(SimLink(bus), 1).set_soc(50)


def test_an_answer_needs_its_command_and_a_request_is_no_answer() -> None:
    raw = frame_bytes(
        next(v for v in load_vectors("pace") if v["id"] == "pace_42_16s_nkinnan_reference")
    )
    with pytest.raises(FrameError, match="which command"):
        pace.decode_hex(raw)
    with pytest.raises(FrameError, match="request"):
        pace.decode_hex(pace.request(0x42, 1), command=0x42)

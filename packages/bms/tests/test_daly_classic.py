from __future__ import annotations

from typing import Any

import pytest

from bmsgate_bms import FrameError, daly_classic
from bmsgate_bms.sim.bus import SimBus
from bmsgate_bms.sim.daly_classic import DalyClassicBoard
from bmsgate_bms.sim.link import SimLink
from bmsgate_bms.sim.model import PackModel

from .conftest import frame_bytes, vector_params

# vector key -> our key; the vectors were written with their own names
NAMES = {
    "total_voltage_V": "pack_voltage",
    "acquisition_voltage_V": "acquisition_voltage",
    "current_A": "current_field",  # the field as sent; "current" is signed as the reader does
    "soc_pct": "soc",
    "max_cell_V": "max_cell_voltage",
    "max_cell_no": "max_cell",
    "min_cell_V": "min_cell_voltage",
    "min_cell_no": "min_cell",
    "max_temp_C": "max_temperature",
    "max_temp_sensor": "max_temperature_sensor",
    "min_temp_C": "min_temperature",
    "min_temp_sensor": "min_temperature_sensor",
    "state": "state",
    "charge_mos": "charge_mos",
    "discharge_mos": "discharge_mos",
    "bms_life": "bms_life",
    "remaining_capacity_Ah": "remaining_capacity",
    "cell_count": "cell_count",
    "temp_sensor_count": "temperature_count",
    "charger_connected": "charger_connected",
    "load_connected": "load_connected",
    "cycles": "cycles",
    "cells_V": "cell_voltages",
    "temps_C": "temperatures",
    "balancing_active": "balancing",
    "balancing_cells": "balancing_cells",
}
# the vectors' fault names -> our alarm codes
FAULTS = {
    "soc_low_L2": "soc_low",
    "chg_overcurrent_L1": "charge_overcurrent_warning",
    "soc_high_L1": "soc_high_warning",
    "diff_volt_L1": "cell_voltage_diff_warning",
    "reserved_3_4": "daly_bit_3_4",
}


@pytest.mark.parametrize("vector", vector_params("daly_classic", "request"))
def test_request_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    board = exp["address"] - daly_classic.HOST_BASE
    cmd = exp["command"]
    if "mos_on" in exp:
        built = daly_classic.write_mos_request(cmd == daly_classic.CHARGE_MOS, exp["mos_on"], board)
    elif "soc_pct" in exp:
        built = daly_classic.set_soc_request(exp["soc_pct"], board)
    else:
        data = bytes.fromhex(exp.get("data_hex", "00" * 8))
        built = daly_classic.request(cmd, board, data)
    assert built == raw


@pytest.mark.parametrize("vector", vector_params("daly_classic", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    ctx = vector.get("context", {})
    if not vector["verified"]:
        with pytest.raises(FrameError):
            daly_classic.decode_hex(raw, **ctx)
        return
    got = daly_classic.decode_hex(
        raw, cell_count=ctx.get("cell_count"), temp_count=ctx.get("temp_sensor_count")
    )
    for key, value in exp.items():
        if key == "state":
            assert got["state"] == {"stationary": "idle"}.get(value, value)
        elif key in NAMES:
            assert got[NAMES[key]] == pytest.approx(value), key
        elif key == "faults":
            assert got["alarms"] == [FAULTS[f] for f in value]
        elif key == "any_fault":
            assert bool(got["alarms"]) is value
        elif key == "frames":
            assert len(raw) == 13 * value
        elif key == "data_hex":
            assert got[f"cmd_{exp['command']:02x}_data"] == value


def test_current_sign_follows_the_state_byte() -> None:
    # 0x90 raw current 30021 (+2.1 A) while 0x93 says discharging: the state byte wins
    soc = bytes.fromhex("a5 01 90 08 02 14 00 00 75 45 03 78 89")
    mos = bytes.fromhex("a5 01 93 08 02 01 01 78 00 03 cb 40 cb")
    parts = daly_classic.decode_hex(soc + mos)  # what ``bmsgate decode`` prints
    assert parts["current_field"] == pytest.approx(2.1)
    assert parts["current"] == pytest.approx(-2.1)
    reading = daly_classic.to_reading(parts | {"cell_voltages": [3.3]})  # the reader's path
    assert reading.current == parts["current"]
    assert "current_field" not in reading.extras
    alone = daly_classic.decode_hex(soc)  # no state byte: raw above 30000 is a discharge
    assert daly_classic.to_reading(alone | {"cell_voltages": [3.3]}).current == alone["current"]


def test_frame_for_another_board_is_refused() -> None:
    frame = bytes.fromhex("a5 01 90 08 02 14 00 00 75 45 03 78 89")
    with pytest.raises(FrameError, match="board 2"):
        daly_classic.frame_data(frame, daly_classic.SOC, board=2)


@pytest.mark.parametrize("cut", [0, 5, 12, 14])
def test_bad_length_is_a_frame_error(cut: int) -> None:
    raw = bytes.fromhex("a5 01 90 08 02 14 00 00 75 45 03 78 89" * 2)[:cut]
    with pytest.raises(FrameError):
        daly_classic.decode_hex(raw)


def test_framer_resynchronises_after_junk() -> None:
    frame = bytes.fromhex("a5 01 90 08 02 14 00 00 75 45 03 78 89")
    buf = b"\x00\xa5\x13" + frame
    used, got = daly_classic.framer(buf)
    assert (used, got) == (1, None)
    used, got = daly_classic.framer(buf[1:])
    assert (used, got) == (1, None)  # a lone A5 that does not start a valid frame
    assert daly_classic.framer(buf[3:]) == (13, frame)


def _bus(cells: int = 14, boards: int = 1, all_frames: bool = False) -> SimBus:
    return SimBus(
        [
            DalyClassicBoard(
                PackModel.create(cells=cells, seed=n), address=n, all_frames=all_frames
            )
            for n in range(1, boards + 1)
        ]
    )


@pytest.mark.parametrize("all_frames", [False, True])
async def test_round_trip_through_the_simulator(all_frames: bool) -> None:
    bus = _bus(all_frames=all_frames)
    model = bus.boards[0].model
    model.demand = -12.5
    model.profile = False
    model.step(1)
    reading = await daly_classic.Driver(SimLink(bus)).read()
    assert reading.cell_voltages == model.cell_voltages
    assert reading.current == pytest.approx(-12.5)
    assert reading.soc == pytest.approx(model.soc, abs=0.05)
    assert reading.pack_voltage == pytest.approx(model.pack_voltage, abs=0.05)
    assert reading.temperatures == [round(t) for t in model.temperatures]
    assert reading.cycles == model.cycles
    assert reading.charge_mos is True and reading.discharge_mos is True


async def test_three_boards_share_one_bus() -> None:
    bus = _bus(boards=3)
    link = SimLink(bus)
    for n in (1, 2, 3):
        reading = await daly_classic.Driver(link, address=n).read()
        assert reading.cell_voltages == bus.boards[n - 1].model.cell_voltages


async def test_mos_and_soc_writes_are_read_back() -> None:
    bus = _bus()
    driver = daly_classic.Driver(SimLink(bus))
    assert await driver.set_mos(charge=True, on=False) is False
    assert bus.boards[0].model.charge_mos is False
    assert await driver.set_mos(charge=False, on=False) is False
    assert await driver.set_mos(charge=True, on=True) is True
    assert await driver.set_soc(42.5) == pytest.approx(42.5, abs=0.1)


@pytest.mark.parametrize("fault", ["echo", "split", "glued"])
async def test_wire_faults_are_absorbed(fault: str) -> None:
    bus = _bus()
    bus.faults.mode = fault  # type: ignore[assignment]
    reading = await daly_classic.Driver(SimLink(bus)).read()
    assert reading.cell_voltages == bus.boards[0].model.cell_voltages

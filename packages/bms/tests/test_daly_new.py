from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsgate_bms import FrameError, LinkTimeout, ModbusExceptionError, daly_new
from bmsgate_bms.alarms import ALARMS
from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.polling import SLOW_EVERY
from bmsgate_bms.registry import protocol
from bmsgate_bms.sim.bus import SimBus
from bmsgate_bms.sim.daly_new import DalyNewBoard
from bmsgate_bms.sim.link import SimLink
from bmsgate_bms.sim.model import PackModel

from .conftest import frame_bytes, load_vectors, vector_params

# vector key -> (our key, factor from the vector's unit to ours)
NAMES: dict[str, tuple[str, float]] = {
    "total_voltage_V": ("pack_voltage", 1),
    "current_A": ("current", 1),
    "soc_pct": ("soc", 1),
    "cycles": ("cycles", 1),
    "remaining_capacity_Ah": ("remaining_capacity", 1),
    "cells_V": ("cell_voltages", 1),
    "cell_count": ("cell_count", 1),
    "delta_cell_V": ("cell_voltage_diff", 1),
    "temp_sensor_count": ("temperature_count", 1),
    "temps_C": ("temperatures", 1),
    "charge_mos": ("charge_mos", 1),
    "discharge_mos": ("discharge_mos", 1),
    "balancer": ("balancer_state", 1),
    "mosfet_temp_C": ("mos_temperature", 1),
    "max_cell_V": ("max_cell_voltage", 1),
    "max_cell_no": ("max_cell", 1),
    "value": ("balancer_switch", 1),
    "rated_capacity_Ah": ("nominal_capacity", 1),
    "cell_reference_mV": ("cell_reference_voltage", 0.001),
    "acquisition_boards": ("acquisition_boards", 1),
    "board1_cells": ("board1_cells", 1),
    "battery_type": ("battery_type", 1),
    "sleep_s": ("sleep_time", 1),
    "cell_ov_L1_mV": ("cell_overvoltage_l1", 0.001),
    "cell_uv_L1_mV": ("cell_undervoltage_l1", 0.001),
    "pack_ov_L1_V": ("pack_overvoltage_l1", 1),
    "pack_uv_L1_V": ("pack_undervoltage_l1", 1),
    "chg_oc_L1_A": ("charge_overcurrent_l1", 1),
    "dsg_oc_L1_A": ("discharge_overcurrent_l1", 1),
    "dsg_oc_L2_A": ("discharge_overcurrent_l2", 1),
    "charge_mos_switch": ("charge_mos_switch", 1),
    "discharge_mos_switch": ("discharge_mos_switch", 1),
    "soc_setting_pct": ("soc_setting", 1),
    "mos_ot_alarm_C": ("mos_overtemp_alarm", 1),
}
TEXTS = {
    "software_version": "software_version",
    "hardware_version": "hardware_version",
    "text": "password",
    "status": "state",
}


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, list):
        return [v * factor for v in value]
    return value * factor if factor != 1 else value


@pytest.mark.parametrize("vector", vector_params("daly_new", "request"))
def test_request_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    if not vector["verified"]:
        with pytest.raises(FrameError):
            daly_new.decode_hex(raw)
        assert daly_new.request_framer(raw) == (1, None)
        return
    variant: daly_new.Variant = "d2" if exp["address"] == daly_new.D2_ADDRESS else "81"
    board = 1 if variant == "d2" else exp["address"] - daly_new.REQUEST_BASE
    mos = daly_new.MAPS[variant].mos_switch
    if exp["function"] == daly_new.READ:
        built = daly_new.read_request(
            exp["start_register"], exp["register_count"], variant=variant, board=board
        )
    elif exp["register"] in mos:
        built = daly_new.write_mos_request(
            exp["register"] == mos[0], bool(exp["value"]), variant=variant, board=board
        )
    else:
        built = daly_new.write_request(exp["register"], exp["value"], variant=variant, board=board)
    assert built == raw
    assert exp["crc_ok"] is True
    assert daly_new.request_framer(b"\x00" + raw) == (1, None)
    assert daly_new.request_framer(raw) == (8, raw)  # what a simulated board takes


@pytest.mark.parametrize("vector", vector_params("daly_new", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    ctx = vector.get("context", {}) | {
        k: vector[k] for k in ("start_register", "hw_offset") if k in vector
    }
    if not vector["verified"]:
        with pytest.raises(FrameError):
            daly_new.decode_hex(raw, **ctx)
        return
    got = daly_new.decode_hex(raw, **ctx)
    for key, value in exp.items():
        if key in NAMES:
            ours, factor = NAMES[key]
            assert got[ours] == pytest.approx(_scaled(value, factor)), key
        elif key in TEXTS:
            assert got[TEXTS[key]] == value, key
        elif key == "address":
            assert raw[0] == value
            assert got["variant"] == "81"
            assert got["board"] == value - daly_new.RESPONSE_BASE
        elif key == "alarm_regs_hex":
            assert got["fault_registers"] == value
            assert got["alarms"] == []
        else:
            pytest.fail(f"vector key {key} is not compared")


def test_every_vector_is_used() -> None:
    vectors = load_vectors("daly_new")
    assert len(vectors) == 28
    assert sum(not v["verified"] for v in vectors) == 1


@pytest.mark.parametrize("vector", vector_params("daly_new", "response"))
def test_framer_finds_each_response_in_junk(vector: dict[str, Any]) -> None:
    raw = frame_bytes(vector)
    buf = b"\x00\x51\x03" + raw + b"\xd2"
    found: list[bytes] = []
    while buf:
        used, frame = daly_new.framer(buf)
        if used == 0:
            break
        buf = buf[used:]
        if frame is not None:
            found.append(frame)
    assert found == [raw]


def _answer(address: int, start: int, regs: dict[int, int], count: int) -> bytes:
    data = b"".join(regs.get(r, 0).to_bytes(2, "big") for r in range(start, start + count))
    return daly_new.with_crc(bytes((address, 3, len(data))) + data)


def test_current_sign_follows_the_state_register_in_the_same_answer() -> None:
    # raw 30025 (+2.5 A) with state 2 (discharging): the state wins, power follows it
    frame = _answer(0xD2, 0x28, {0x28: 530, 0x29: 30025, 0x2A: 500, 0x2F: 2, 0x39: 132}, 18)
    got = daly_new.decode_hex(frame, start_register=0x28)
    assert got["current"] == pytest.approx(-2.5)
    assert got["power"] == -132
    # without the state register the raw value stays
    frame = _answer(0xD2, 0x29, {0x29: 30025}, 1)
    assert daly_new.decode_hex(frame, start_register=0x29)["current"] == pytest.approx(2.5)


def test_current_sign_across_the_two_answers_of_one_0x81_poll() -> None:
    first = daly_new.decode_hex(
        _answer(0x51, 0, {0: 3300, 0x38: 33, 0x39: 30040, 0x3A: 500, 0x3C: 1}, 64)
    )
    second = daly_new.decode_hex(_answer(0x51, 0x41, {0x48: 2, 0x58: 13}, 62), start_register=0x41)
    assert first["current"] == pytest.approx(4.0)  # raw: no state in this answer
    reading = daly_new.to_reading(first | second)
    assert reading.current == pytest.approx(-4.0)
    assert reading.power == pytest.approx(-13)


def test_d2_fault_registers_map_like_classic_0x98() -> None:
    # syssi's alarm test: 0x3A = 0x0100 is "charge temperature high" level 1 (classic byte 1 bit 0)
    regs = {0x3A: 0x0100, 0x3B: 0x0002, 0x3D: 0x0004}
    got = daly_new.decode_hex(_answer(0xD2, 0x3A, regs, 4), start_register=0x3A)
    assert got["alarms"] == ["charge_overtemp_warning", "charge_overcurrent", "short_circuit_fault"]
    assert got["fault_registers"] == ["0100", "0002", "0000", "0004"]


def test_0x81_type2_fault_levels() -> None:
    regs = {
        0x6D: 0x0001 | 0x0010 | 0x0800,  # cell OV level 1, cell UV level 2, charge OT level 1
        0x70: 0x0300 | 0x1800,  # MOS over-temperature level 3, thermal runaway level 3
        0x73: 0x1000 | 0x0002,  # fan on (status), EEPROM fault
        0x71: 0x0001,  # a bit with no known meaning
    }
    got = daly_new.decode_hex(_answer(0x53, 0x6D, regs, 7), start_register=0x6D)
    assert got["board"] == 3
    assert got["alarms"] == [
        "cell_overvoltage_warning",
        "cell_undervoltage",
        "charge_overtemp_warning",
        "mos_overtemp",
        "thermal_runaway",
        "eeprom_fault",
        "daly_t2_8_0",
    ]
    assert got["alarm_levels"] == {
        "cell_overvoltage": 1,
        "cell_undervoltage": 2,
        "charge_overtemp": 1,
        "mos_overtemp": 3,
        "thermal_runaway": 3,
    }
    assert got["status_flags"] == ["fan_on"]
    assert all(code in ALARMS for code in got["alarms"] if not code.startswith("daly_t2"))


def test_every_mapped_alarm_code_is_a_published_code() -> None:
    codes = [c for _, _, c in daly_new.TYPE2_LEVELS] + [
        c for c in daly_new.TYPE2_FAULT_BITS.values() if c
    ]
    assert all(code in ALARMS for code in codes)


def test_exception_answer_is_a_frame_error() -> None:
    frame = daly_new.with_crc(bytes((0x51, 0x83, 0x02)))
    with pytest.raises(ModbusExceptionError) as err:
        daly_new.decode_hex(frame)
    assert err.value.code == 2
    assert daly_new.framer(frame) == (5, frame)


def test_variant_must_match_the_address() -> None:
    frame = _answer(0x51, 0xCF, {0xCF: 1}, 1)
    with pytest.raises(FrameError, match="d2"):
        daly_new.decode_hex(frame, start_register=0xCF, variant="d2")
    with pytest.raises(FrameError):
        daly_new.decode_hex(frame, variant="x")  # type: ignore[arg-type]


@pytest.mark.parametrize("cut", [0, 4, 6, 8])
def test_truncated_or_padded_answers_are_frame_errors(cut: int) -> None:
    frame = _answer(0xD2, 0xCF, {0xCF: 1}, 1)
    with pytest.raises(FrameError):
        daly_new.decode_hex((frame + frame)[:cut] if cut != 8 else frame + b"\x00")


def test_framer_resynchronises_after_a_fake_header() -> None:
    frame = _answer(0x51, 0xCF, {0xCF: 0xFFFF}, 1)
    buf = b"\xd2\x03\xf0" + frame  # looks like the start of a 245-byte answer
    assert daly_new.framer(buf) == (3, None)
    assert daly_new.framer(buf[3:]) == (len(frame), frame)
    assert daly_new.framer(buf[:-1]) == (0, None)  # the real one is not complete yet: wait


def test_response_framer_drops_other_boards() -> None:
    other, mine = _answer(0x52, 0xCF, {}, 1), _answer(0x51, 0xCF, {}, 1)
    frame = daly_new.response_framer(0x51)
    assert frame(other + mine) == (len(other), None)  # skipped up to the next 0x51
    assert daly_new.framer(other + mine) == (len(other), other)


def test_write_builders_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="no bus address"):
        daly_new.read_request(0, 62, variant="d2", board=2)
    with pytest.raises(ValueError, match=r"1\.\.16"):
        daly_new.read_request(0, 64, variant="81", board=17)
    with pytest.raises(ValueError, match="registers"):
        daly_new.read_request(0, 126)
    with pytest.raises(UnsupportedCommand):
        daly_new.set_soc_request(50, variant="81")
    with pytest.raises(ValueError, match="SOC"):
        daly_new.set_soc_request(101, variant="d2")
    assert daly_new.set_soc_request(42.5, variant="d2") == daly_new.write_request(
        0xA7, 425, variant="d2"
    )


def test_protocol_module_contract() -> None:
    module = protocol("daly_new")
    assert module.NAME == "daly_new"
    assert module.BAUDRATE == 9600
    assert module.Driver is daly_new.DalyNewDriver
    with pytest.raises(ValueError, match="no bus address"):
        daly_new.Driver(SimLink(SimBus([])), 2, variant="d2")


# --- through the simulator ---------------------------------------------------------------------


def _board(variant: daly_new.Variant, n: int = 1, cells: int = 16, **kw: Any) -> DalyNewBoard:
    model = PackModel.create(cells=cells, seed=n, sensors=3)
    model.profile = False
    model.demand = -12.5
    model.step(1)
    return DalyNewBoard(model, address=n, variant=variant, **kw)


def _check(reading: Any, board: DalyNewBoard) -> None:
    m = board.model
    assert reading.cell_voltages == m.cell_voltages
    assert reading.current == pytest.approx(m.current)
    assert reading.soc == pytest.approx(m.soc, abs=0.05)
    assert reading.pack_voltage == pytest.approx(m.pack_voltage, abs=0.05)
    assert reading.temperatures == [round(t) for t in m.temperatures]
    assert reading.cycles == m.cycles
    assert reading.remaining_capacity == pytest.approx(m.remaining_capacity, abs=0.05)
    assert reading.nominal_capacity == pytest.approx(m.nominal_capacity)
    assert reading.mos_temperature == round(m.mos_temperature)
    assert reading.power == pytest.approx(m.power, abs=1)
    assert reading.charge_mos is m.charge_mos
    assert reading.discharge_mos is m.discharge_mos


@pytest.mark.parametrize("variant", ["d2", "81"])
@pytest.mark.parametrize("cells", [4, 16, 32])
async def test_round_trip_through_the_simulator(variant: daly_new.Variant, cells: int) -> None:
    board = _board(variant, cells=cells)
    bus = SimBus([board])
    driver = daly_new.Driver(SimLink(bus), variant=variant)
    driver.slow.every = SLOW_EVERY  # as the reader sets it: the rated capacity is a slow read
    reading = await driver.read()
    _check(reading, board)
    assert reading.current < 0
    assert reading.extras["state"] == "discharging"
    assert reading.alarms == []
    requests = bus.requests
    await driver.read()
    assert bus.requests - requests == (1 if variant == "d2" else 2)  # no capacity read


async def test_48_cells_on_the_0x81_variant() -> None:
    board = _board("81", cells=48)
    _check(await daly_new.Driver(SimLink(SimBus([board]))).read(), board)


async def test_three_0x81_boards_share_one_bus() -> None:
    bus = SimBus([_board("81", n) for n in (1, 2, 5)])
    link = SimLink(bus)
    for board in bus.boards:
        assert isinstance(board, DalyNewBoard)
        _check(await daly_new.Driver(link, board.address).read(), board)
    with pytest.raises(LinkTimeout):
        await daly_new.Driver(link, 3).read()


async def test_d2_falls_back_to_the_62_register_read() -> None:
    board = _board("d2", max_registers=62)
    bus = SimBus([board])
    driver = daly_new.Driver(SimLink(bus), variant="d2")
    driver.slow.every = SLOW_EVERY  # the rated capacity is read at the first poll, then seldom
    reading = await driver.read()
    assert reading.cell_voltages == board.model.cell_voltages
    assert reading.mos_temperature is None  # 0x42 is beyond the short read
    requests = bus.requests
    await driver.read()
    assert bus.requests - requests == 1  # the short read straight away from now on


async def test_balancing_and_alarms_reach_the_reading() -> None:
    for variant in ("d2", "81"):
        board = _board(variant)  # type: ignore[arg-type]
        board.model.balancing_cells = [1, 16]
        board.model.cells[0].soc = 100.0  # 3.60 V: over the protection limit
        reading = await daly_new.Driver(SimLink(SimBus([board])), variant=variant).read()  # type: ignore[arg-type]
        assert reading.balancing is True
        assert reading.balancing_cells == [1, 16]
        assert "cell_overvoltage" in reading.alarms or "cell_overvoltage_warning" in reading.alarms
        assert set(board.model.alarms) <= set(reading.alarms)


@pytest.mark.parametrize("variant", ["d2", "81"])
async def test_mos_and_soc_writes_are_read_back(variant: daly_new.Variant) -> None:
    board = _board(variant, 2 if variant == "81" else 1)
    driver = daly_new.Driver(SimLink(SimBus([board])), board.address, variant=variant)
    assert await driver.set_mos(charge=True, on=False) is False
    assert board.model.charge_mos is False
    assert await driver.set_mos(charge=False, on=False) is False
    assert board.model.discharge_mos is False
    assert await driver.set_mos(charge=True, on=True) is True
    assert board.writes[0] == (board.map.mos_switch[0], 0)
    if variant == "d2":
        assert await driver.set_soc(42.5) == pytest.approx(42.5, abs=0.1)
        assert board.writes[-1] == (0xA7, 425)
    else:
        with pytest.raises(UnsupportedCommand):
            await driver.set_soc(42.5)


@pytest.mark.parametrize("variant", ["d2", "81"])
@pytest.mark.parametrize("fault", ["echo", "split", "glued"])
async def test_wire_faults_are_absorbed(variant: daly_new.Variant, fault: str) -> None:
    board = _board(variant)
    bus = SimBus([board])
    bus.faults.mode = fault  # type: ignore[assignment]
    driver = daly_new.Driver(SimLink(bus), variant=variant)
    _check(await driver.read(), board)
    assert await driver.set_mos(charge=False, on=False) is False


@pytest.mark.parametrize("fault", ["silent", "bad_checksum", "garbage"])
async def test_broken_answers_time_out(fault: str) -> None:
    bus = SimBus([_board("81")])
    bus.faults.mode = fault  # type: ignore[assignment]
    with pytest.raises(LinkTimeout):
        await daly_new.Driver(SimLink(bus)).read()


def test_simulated_board_answers_any_range_of_its_map() -> None:
    board = _board("d2")
    for start, count in ((0xA9, 32), (0x80, 41), (0xC9, 3), (0x3E, 9)):
        request = daly_new.read_request(start, count, variant="d2")
        (frame,) = board.answer(request) or []
        got = daly_new.decode_hex(frame, start_register=start)
        assert got["variant"] == "d2"
    got = daly_new.decode_hex(
        board.answer(daly_new.read_request(0xA9, 32, variant="d2"))[0],  # type: ignore[index]
        start_register=0xA9,
    )
    assert got["software_version"] == "BMSGATE-SIM-1.0"
    assert got["hardware_version"] == "SIM-D2"
    assert board.answer(daly_new.read_request(0, 64, variant="81")) is None  # not its variant


# --- fuzz ----------------------------------------------------------------------------------------

VARIANTS = st.sampled_from([None, "d2", "81"])


@given(
    st.sampled_from([0xD2, 0x51, 0x60]),
    st.sampled_from([0x03, 0x06, 0x83, 0x10]),
    st.binary(max_size=260),
    st.integers(0, 0x200),
    VARIANTS,
)
def test_fuzz_crc_valid_frames_raise_only_frame_errors(
    address: int, function: int, body: bytes, start: int, variant: Any
) -> None:
    # a valid CRC and header gets the fuzz past framing into the register decoder
    payload = bytes((len(body) & 0xFF,)) + body if function == 0x03 else body
    frame = daly_new.with_crc(bytes((address, function)) + payload)
    try:
        got = daly_new.decode_hex(frame, start_register=start, variant=variant)
    except FrameError:
        return
    assert got["variant"] in ("d2", "81")


@given(st.binary(max_size=300))
def test_fuzz_request_framer_makes_progress_or_waits(data: bytes) -> None:
    used, frame = daly_new.request_framer(data)
    assert 0 <= used <= len(data)
    assert frame is None or len(frame) == 8

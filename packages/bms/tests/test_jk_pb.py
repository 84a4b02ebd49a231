from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsgate_bms import FrameError, LinkTimeout, ModbusExceptionError, jk_pb
from bmsgate_bms.checksum import crc16_modbus
from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.sim.bus import SimBus
from bmsgate_bms.sim.jk_pb import JkPbBoard
from bmsgate_bms.sim.link import SimLink
from bmsgate_bms.sim.model import PackModel

from .conftest import frame_bytes, load_vectors, vector_params

# vector key -> our key; the vectors were written with their own names
NAMES = {
    "frame_type": "frame_type",
    "frame_counter": "frame_counter",
    # type 0x03 device info
    "model": "model",
    "hardware_version": "hardware_version",
    "software_version": "software_version",
    "uptime_s": "uptime",
    "power_on_count": "power_on_count",
    # type 0x01 settings
    "cell_uvp_V": "cell_uvp",
    "cell_uvpr_V": "cell_uvp_recovery",
    "cell_ovp_V": "cell_ovp",
    "cell_ovpr_V": "cell_ovp_recovery",
    "balance_trigger_V": "balance_trigger_voltage",
    "soc100_V": "soc_100_voltage",
    "soc0_V": "soc_0_voltage",
    "cell_rcv_V": "cell_request_charge_voltage",
    "cell_rfv_V": "cell_request_float_voltage",
    "power_off_V": "power_off_voltage",
    "max_charge_current_A": "max_charge_current",
    "max_discharge_current_A": "max_discharge_current",
    "max_balance_current_A": "max_balance_current",
    "chg_ot_C": "charge_otp",
    "chg_ut_C": "charge_utp",
    "mos_ot_C": "mos_otp",
    "cell_count": "cell_count",
    "charge_switch": "charge_switch",
    "discharge_switch": "discharge_switch",
    "balance_switch": "balance_switch",
    "design_capacity_Ah": "design_capacity",
    "balance_start_V": "balance_start_voltage",
    "device_address": "device_address",
    # type 0x02 live data
    "cells_V": "cell_voltages",
    "average_cell_V": "average_cell_voltage",
    "delta_cell_V": "cell_voltage_diff",
    "mosfet_temp_C": "mos_temperature",
    "total_voltage_V": "pack_voltage",
    "power_W": "power",
    "current_A": "current",
    "alarms_raw": "alarm_bits",
    "soc_pct": "soc",
    "remaining_capacity_Ah": "remaining_capacity",
    "full_charge_capacity_Ah": "nominal_capacity",
    "cycles": "cycles",
    "soh_pct": "soh",
    "charge_mos": "charge_mos",
    "discharge_mos": "discharge_mos",
}
TEMPERATURES = {"temp_1_C": 0, "temp_2_C": 1}

LIVE = next(v for v in load_vectors("jk_pb") if v["id"].startswith("jkpb_resp_type02"))
LIVE_RAW = frame_bytes(LIVE)


def _crc(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


@pytest.mark.parametrize("vector", vector_params("jk_pb", "request"))
def test_request_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    address, register = exp["address"], exp["start_register"]
    if exp["function"] == jk_pb.READ:
        built = jk_pb.read_request(register, exp["register_count"], address)
    elif register in jk_pb.TRIGGER_TYPES:
        built = jk_pb.trigger_request(register, address)
    elif register in (jk_pb.CHARGE_SWITCH, jk_pb.DISCHARGE_SWITCH):
        on = bool(int(exp["data_hex"], 16))
        built = jk_pb.write_mos_request(register == jk_pb.CHARGE_SWITCH, on, address)
    else:
        built = jk_pb.write_request(register, bytes.fromhex(exp["data_hex"]), address)
    assert built == raw
    assert exp["crc_ok"] is True
    assert jk_pb.request_framer(raw) == (len(raw), raw)


@pytest.mark.parametrize("vector", vector_params("jk_pb", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    ctx = vector.get("context", {})
    if not vector["verified"]:
        with pytest.raises(FrameError):
            jk_pb.decode_hex(raw, **ctx)
        return
    got = jk_pb.decode_hex(raw, **ctx)
    for key, value in exp.items():
        if key == "ack":
            assert got["ack"] == {k: v for k, v in value.items() if k != "crc_ok"}
            assert value["crc_ok"] is True
        elif key in TEMPERATURES:
            assert got["temperatures"][TEMPERATURES[key]] == pytest.approx(value), key
        elif isinstance(value, str):
            assert got[NAMES[key]] == value, key
        else:
            assert got[NAMES[key]] == pytest.approx(value), key


def test_live_vector_as_a_reading() -> None:
    reading = jk_pb.to_reading(jk_pb.decode_hex(LIVE_RAW))
    assert reading.cell_count == 8
    assert reading.direction == "charging"
    assert reading.power == pytest.approx(26.852 * 17.841, abs=0.01)
    assert reading.temperatures[:2] == [29.6, 29.4]
    assert reading.balancing is False
    assert reading.alarms == []
    assert reading.extras["soh"] == 100
    assert reading.extras["runtime"] == 13503354
    assert reading.extras["wire_resistances"][:2] == [0.066, 0.066]
    assert (reading.extras["max_cell"], reading.extras["min_cell"]) == (5, 1)  # 1-based


def test_live_vector_fields_match_fc03_register_offsets() -> None:
    # the 55 AA body is a little-endian dump of the 0x1200 block: the same bytes turned big-endian
    # and read with FC 0x03 must decode to the same values
    parts = jk_pb.decode_hex(LIVE_RAW)
    big = jk_pb.encode_block(jk_pb.LIVE_FIELDS, _raw_live(parts), byteorder="big")
    for start, words in ((0x1200, 0x48), (0x1290, 2), (0x12A6, 1), (0x12C0, 1)):
        first = start - jk_pb.LIVE_BASE
        reply = _crc(bytes((1, 3, 2 * words)) + big[first : first + 2 * words])
        got = jk_pb.decode_hex(reply, start_register=start)
        if start == 0x1200:
            assert got["cell_voltages"] == parts["cell_voltages"]
            assert got["average_cell_voltage"] == parts["average_cell_voltage"]
        elif start == 0x1290:
            assert got == {"address": 1, "pack_voltage": 26.852}
        elif start == 0x12A6:
            assert (got["soc"], got["balancing"]) == (88, False)  # SOC is the low byte
        else:
            assert (got["charge_mos"], got["discharge_mos"]) == (True, True)


def _raw_live(parts: dict[str, Any]) -> dict[str, float]:
    raw = {k: v for k, v in parts.items() if isinstance(v, int | float)}
    raw |= {f"cell_{n + 1}": v for n, v in enumerate(parts["cell_voltages"])}
    return raw


def test_fc03_reply_without_start_register_is_raw() -> None:
    reply = _crc(bytes.fromhex("01 03 04 00 00 68 e4"))
    assert jk_pb.decode_hex(reply) == {"address": 1, "registers_hex": "000068e4"}
    assert jk_pb.decode_hex(reply, start_register=0x1290)["pack_voltage"] == 26.852


def test_exception_reply_decodes() -> None:
    reply = jk_pb.exception_response(1, jk_pb.READ, 2)
    assert jk_pb.decode_hex(reply) == {"exception": {"address": 1, "function": 3, "code": 2}}


def test_padding_around_the_ack_is_accepted() -> None:
    body, ack = LIVE_RAW[:300], LIVE_RAW[300:]
    assert jk_pb.decode_hex(body + b"\x00" + ack + b"\x00")["ack"]["register"] == 0x1620


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:299],  # cut inside the 55 AA frame
        lambda b: b[:-1],  # cut inside the ACK
        lambda b: b[:150] + bytes((b[150] ^ 1,)) + b[151:],  # sum8 fails
        lambda b: b[:-1] + bytes((b[-1] ^ 1,)),  # CRC fails
        lambda b: b"\x77" + b,  # junk in front
        lambda b: b"",
    ],
)
def test_damaged_answers_are_frame_errors(damage: Any) -> None:
    with pytest.raises(FrameError):
        jk_pb.decode_hex(damage(LIVE_RAW))


def test_alarm_bits_map_to_the_stable_codes() -> None:
    assert jk_pb.decode_alarms(0) == []
    assert jk_pb.decode_alarms(1 << 4 | 1 << 11) == ["cell_overvoltage", "cell_undervoltage"]
    assert jk_pb.decode_alarms(1 << 24) == ["jk_pb_bit_24"]
    from bmsgate_bms.alarms import ALARMS

    assert all(code in ALARMS for code in jk_pb.ALARM_BITS if code)


def test_framer_drops_junk_and_padding_and_finds_both_frames() -> None:
    buf = b"\x00\xff\x42" + LIVE_RAW[:300] + b"\x00" + LIVE_RAW[300:] + b"\x00"
    frames: list[bytes] = []
    while buf:
        used, frame = jk_pb.framer(buf)
        if used == 0:
            break
        buf = buf[used:]
        if frame is not None:
            frames.append(frame)
    assert frames == [LIVE_RAW[:300], LIVE_RAW[300:]]


def test_framer_waits_for_a_whole_frame() -> None:
    assert jk_pb.framer(LIVE_RAW[:2]) == (0, None)
    assert jk_pb.framer(LIVE_RAW[:299]) == (0, None)
    assert jk_pb.framer(LIVE_RAW[300:307]) == (0, None)
    broken = LIVE_RAW[:298] + bytes((LIVE_RAW[298] ^ 0xFF,)) + LIVE_RAW[299:300]
    assert jk_pb.framer(broken) == (1, None)  # bad sum8: resynchronise one byte on


def test_builders_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="address"):
        jk_pb.read_request(0x1200, 1, address=0)
    with pytest.raises(ValueError, match="address"):
        jk_pb.JkPbDriver(SimLink(SimBus([])), address=16)
    with pytest.raises(ValueError, match="trigger"):
        jk_pb.trigger_request(0x1600)
    with pytest.raises(ValueError, match="registers"):
        jk_pb.read_request(0x1200, 126)


# --- through the simulator -------------------------------------------------------------------
def _bus(addresses: tuple[int, ...] = (1,), cells: int = 16, **board: Any) -> SimBus:
    boards = []
    for n in addresses:
        model = PackModel.create(cells=cells, seed=n, sensors=2 + n % 3)
        model.profile = False
        boards.append(JkPbBoard(model, address=n, **board))
    return SimBus(boards, baudrate=jk_pb.BAUDRATE)


def _drive(bus: SimBus, index: int, demand: float) -> PackModel:
    model = bus.boards[index].model
    model.demand = demand
    model.step(1)
    return model


@pytest.mark.parametrize("demand", [-12.5, 0.0, 30.25])
async def test_round_trip_through_the_simulator(demand: float) -> None:
    bus = _bus()
    model = _drive(bus, 0, demand)
    reading = await jk_pb.Driver(SimLink(bus)).read()
    assert reading.cell_voltages == model.cell_voltages
    assert reading.current == pytest.approx(demand)
    assert reading.power == pytest.approx(model.power, abs=0.01)
    assert reading.pack_voltage == pytest.approx(model.pack_voltage)
    assert reading.soc == round(model.soc)
    assert reading.temperatures == pytest.approx(model.temperatures, abs=0.051)
    assert reading.mos_temperature == pytest.approx(model.mos_temperature, abs=0.051)
    assert reading.cycles == model.cycles
    assert reading.remaining_capacity == pytest.approx(model.remaining_capacity, abs=0.001)
    assert reading.nominal_capacity == model.nominal_capacity
    assert (reading.charge_mos, reading.discharge_mos) == (True, True)


async def test_boards_share_one_bus_and_answer_only_their_address() -> None:
    bus = _bus((1, 2, 7, 15))
    link = SimLink(bus)
    for i, address in enumerate((1, 2, 7, 15)):
        model = _drive(bus, i, -3.0 * address)
        reading = await jk_pb.Driver(link, address=address).read()
        assert reading.cell_voltages == model.cell_voltages
        assert reading.current == pytest.approx(-3.0 * address)
        assert len(reading.temperatures) == len(model.temperatures)
    with pytest.raises(LinkTimeout):
        await jk_pb.Driver(link, address=3).read()


async def test_settings_and_device_info_triggers() -> None:
    bus = _bus((4,), cells=13)
    driver = jk_pb.Driver(SimLink(bus), address=4)
    settings = await driver.read_settings()
    assert set(settings) == {s.key for s in jk_pb.SETPOINTS}  # every field, named as documented
    assert settings["cell_count"] == 13
    assert settings["device_address"] == 4
    assert settings["cell_ovp"] == pytest.approx(3.65)
    assert settings["charge_switch"] is True
    info = await driver.read_device_info()
    assert info["model"] == "JK_PB2A16S20P"
    assert info["serial_number"] == "SIM00000004"
    assert info["ack"] == {"address": 4, "function": 16, "register": 0x161C, "count": 1}


async def test_mos_writes_are_read_back() -> None:
    bus = _bus((1, 2))
    driver = jk_pb.Driver(SimLink(bus), address=2)
    assert await driver.set_mos(charge=True, on=False) is False
    assert bus.boards[1].model.charge_mos is False
    assert bus.boards[0].model.charge_mos is True  # the other board did not listen
    assert (await driver.read_settings())["charge_switch"] is False
    assert await driver.set_mos(charge=False, on=False) is False
    assert await driver.set_mos(charge=True, on=True) is True
    reading = await driver.read()
    assert (reading.charge_mos, reading.discharge_mos) == (True, False)
    with pytest.raises(UnsupportedCommand):
        await driver.set_soc(50)


async def test_fc03_reads_match_the_trigger_frame() -> None:
    bus = _bus((3,))
    _drive(bus, 0, 8.0)
    driver = jk_pb.Driver(SimLink(bus), address=3)
    live = (await driver._trigger(jk_pb.TRIGGER_LIVE)) | {}
    regs = await driver.read_registers(0x1200, 0x48)
    regs |= await driver.read_registers(0x1290, 0x38)
    regs |= await driver.read_registers(0x12F8, 3)
    for key in (
        "cell_voltages",
        "pack_voltage",
        "current",
        "power",
        "soc",
        "cycles",
        "temperatures",
        "charge_mos",
        "alarms",
        "remaining_capacity",
    ):
        assert regs[key] == live[key], key
    info = await driver.read_registers(0x1400, 8)
    assert info["model"] == "JK_PB2A16S20P"
    assert regs["temperature_3"] == 0.0  # no T3 fitted, and this read alone cannot tell
    settings = await driver.read_registers(jk_pb.CHARGE_SWITCH, 2)
    assert settings == {"charge_switch": True}
    with pytest.raises(ModbusExceptionError, match="bad register"):
        await driver.read_registers(0x1800, 2)


async def test_alarms_come_through() -> None:
    bus = _bus()
    model = _drive(bus, 0, 5.0)
    model.temperatures = [60.0, 25.0]  # charging above the charge over-temperature limit
    reading = await jk_pb.Driver(SimLink(bus)).read()
    assert reading.alarms == ["charge_overtemp"]
    assert reading.extras["alarm_bits"] == 1 << 8


@pytest.mark.parametrize("fault", ["echo", "split", "glued"])
async def test_wire_faults_are_absorbed(fault: str) -> None:
    bus = _bus((1, 2))
    bus.faults.mode = fault  # type: ignore[assignment]
    model = _drive(bus, 1, -4.0)
    driver = jk_pb.Driver(SimLink(bus), address=2)
    reading = await driver.read()
    assert reading.cell_voltages == model.cell_voltages
    assert await driver.set_mos(charge=False, on=False) is False


async def test_adapter_padding_is_absorbed() -> None:
    bus = _bus(padding=True)
    model = _drive(bus, 0, 2.0)
    reading = await jk_pb.Driver(SimLink(bus)).read()
    assert reading.cell_voltages == model.cell_voltages


async def test_garbage_is_not_a_reading() -> None:
    bus = _bus()
    bus.faults.mode = "garbage"
    with pytest.raises((LinkTimeout, FrameError)):
        await jk_pb.Driver(SimLink(bus)).read()


# --- fuzz (the framer and the decoder on any bytes: test_contract.py) -----------------------
@given(st.integers(0, 255), st.binary(min_size=jk_pb.BODY_LEN, max_size=jk_pb.BODY_LEN))
def test_fuzz_any_checksummed_55aa_frame_decodes(kind: int, body: bytes) -> None:
    parts = jk_pb.decode_hex(jk_pb.status_frame(kind, 0, body))
    if kind == jk_pb.TYPE_LIVE:
        jk_pb.to_reading(parts)


@given(st.binary(min_size=2, max_size=250), st.sampled_from([0x1000, 0x1200, 0x1246, 0x1400]))
def test_fuzz_fc03_replies_decode(data: bytes, start: int) -> None:
    data = data[: len(data) // 2 * 2]
    jk_pb.decode_hex(jk_pb.read_response(1, data), start_register=start)


@given(st.binary(max_size=400))
def test_fuzz_request_framer_makes_progress_or_waits(data: bytes) -> None:
    used, frame = jk_pb.request_framer(data)
    assert 0 <= used <= len(data)
    assert frame is None or frame == data[:used]


async def test_absent_sensors_are_left_out_not_minus_200() -> None:
    # a JK_B2A8S30P marks T4 and T5 fitted but reports them as raw -2000 (-200 °C): not fitted
    bus = _bus()
    model = bus.boards[0].model
    model.temperatures = [24.5, 25.0, 25.5, jk_pb.ABSENT, jk_pb.ABSENT]
    reading = await jk_pb.Driver(SimLink(bus)).read()
    assert reading.temperatures == [24.5, 25.0, 25.5]
    model.mos_temperature = jk_pb.ABSENT
    assert (await jk_pb.Driver(SimLink(bus)).read()).mos_temperature is None

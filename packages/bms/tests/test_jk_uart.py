from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsgate_bms import FrameError, LengthError, jk_uart
from bmsgate_bms.alarms import ALARMS
from bmsgate_bms.checksum import sum16
from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.registry import protocol
from bmsgate_bms.sim.bus import SimBus
from bmsgate_bms.sim.jk_uart import JkUartBoard, encode_current, encode_temperature
from bmsgate_bms.sim.link import SimLink
from bmsgate_bms.sim.model import PackModel

from .conftest import frame_bytes, load_vectors, vector_params

# vector key -> (our key, factor from the vector's unit to ours); the vectors name things their way
NAMES: dict[str, tuple[str, float]] = {
    "cells_V": ("cell_voltages", 1),
    "mosfet_temp_C": ("mos_temperature", 1),
    "total_voltage_V": ("pack_voltage", 1),
    "current_A": ("current", 1),
    "soc_pct": ("soc", 1),
    "temp_sensor_count": ("temperature_count", 1),
    "cycles": ("cycles", 1),
    "total_cycle_capacity_Ah": ("total_cycle_capacity", 1),
    "cell_count": ("cell_count", 1),
    "warnings_raw": ("warning_bits", 1),
    "status_raw": ("status_bits", 1),
    "charge_mos_on": ("charge_mos", 1),
    "discharge_mos_on": ("discharge_mos", 1),
    "balancer_active": ("balancing", 1),
    "capacity_setting_Ah": ("nominal_capacity", 1),
    "actual_capacity_Ah": ("actual_capacity", 1),
    "charge_mos_switch": ("charge_mos_switch", 1),
    "discharge_mos_switch": ("discharge_mos_switch", 1),
    "runtime_min": ("runtime", 1),
    "protocol_version": ("protocol_version", 1),
    "pack_ovp_V": ("pack_ovp", 1),
    "pack_uvp_V": ("pack_uvp", 1),
    "cell_ovp_mV": ("cell_ovp", 0.001),
    "chg_low_temp_prot_C": ("charge_undertemp_protection", 1),
    "command": ("command", 1),
}
TEXTS = {
    "software_version": "software_version",
    "device_id": "device_id",
    "manufacture_date": "manufacture_date",
    "manufacturer_id": "manufacturer_id",
}
TEMPS = {"temp_1_C": 0, "temp_2_C": 1}  # index into our temperatures list
# the vectors' warning names -> our alarm codes (they already use ours)
WARNINGS = {"battery_undertemp": "battery_undertemp"}


def _check_expected(got: dict[str, Any], exp: dict[str, Any]) -> None:
    for key, value in exp.items():
        if key in NAMES:
            ours, factor = NAMES[key]
            if isinstance(value, list):
                assert got[ours] == pytest.approx([v * factor for v in value]), key
            else:
                assert got[ours] == pytest.approx(value * factor), key
        elif key in TEXTS:
            assert got[TEXTS[key]] == value, key
        elif key in TEMPS:
            assert got["temperatures"][TEMPS[key]] == pytest.approx(value), key
        elif key == "warnings":
            assert got["alarms"] == [WARNINGS[w] for w in value]
        else:
            raise AssertionError(f"vector key {key} has no mapping")


def _resum(frame: bytes) -> bytes:
    """The frame with its checksum recomputed (to build test frames from real ones)."""
    return frame[:-4] + sum16(frame[:-4]).to_bytes(4, "big")


def _response(records: bytes, command: int = jk_uart.READ_ALL) -> bytes:
    return jk_uart.build_frame(
        command, records, source=jk_uart.SOURCE_BMS, transport=jk_uart.RESPONSE
    )


def _vector(vector_id: str) -> dict[str, Any]:
    return next(v for v in load_vectors("jk_uart") if v["id"] == vector_id)


@pytest.mark.parametrize("vector", vector_params("jk_uart", "request"))
def test_request_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    cmd, source = exp["command"], exp["frame_source"]
    if cmd == jk_uart.READ_ALL:
        built = jk_uart.read_all_request(source)
    elif cmd == jk_uart.READ_ONE:
        built = jk_uart.read_one_request(exp["identifier"], source)
    elif cmd == jk_uart.WRITE:
        charge = exp["identifier"] == jk_uart.CHARGE_SWITCH
        built = jk_uart.write_mos_request(charge, bool(exp["write_value"]), source)
        assert built == jk_uart.write_request(exp["identifier"], bytes((exp["write_value"],)))
    else:
        assert cmd == jk_uart.PASSWORD
        built = jk_uart.password_request(source)
    assert built == raw
    header = jk_uart.frame_header(raw)
    for key in ("command", "frame_source", "transport_type", "identifier", "length_field"):
        if key in exp:
            assert header[key] == exp[key], key
    assert jk_uart.framer(raw) == (len(raw), raw)


@pytest.mark.parametrize("vector", vector_params("jk_uart", "response"))
def test_response_vectors(vector: dict[str, Any]) -> None:
    raw, exp = frame_bytes(vector), vector["expected"]
    if not vector["verified"]:
        with pytest.raises(FrameError):
            jk_uart.decode_hex(raw)
        assert jk_uart.framer(raw) == (1, None)  # never handed to a driver either
        return
    assert jk_uart.framer(raw) == (len(raw), raw)
    got = jk_uart.decode_hex(raw)
    assert "unknown_identifier" not in got
    _check_expected(got, exp)


def test_every_vector_is_covered() -> None:
    vectors = load_vectors("jk_uart")
    assert len(vectors) == 15
    assert sum(not v["verified"] for v in vectors) == 1


def test_vendor_example_decodes_once_its_checksum_is_recomputed() -> None:
    # the 2020 firmware example: no 0xB8..0xC0, so the 10000-offset current (0x2710 = 0 A)
    vector = _vector("jk_resp_20s_vendor_example_old_protocol")
    got = jk_uart.decode_hex(_resum(frame_bytes(vector)))
    assert "unknown_identifier" not in got
    _check_expected(got, vector["expected"])
    assert len(got["cell_voltages"]) == 20


def test_negative_temperatures() -> None:
    assert [jk_uart.decode_temperature(r) for r in (0, 25, 100, 101, 110, 140)] == [
        0,
        25,
        100,
        -1,
        -10,
        -40,
    ]
    records = bytes.fromhex("80 00 65 81 00 6e 82 00 8c")  # 101, 110, 140
    got = jk_uart.decode_hex(_response(records))
    assert got["mos_temperature"] == -1
    assert got["temperatures"] == [-10, -40]


@pytest.mark.parametrize(
    ("raw", "version", "amps"),
    [
        (0x80D0, 1, 2.08),  # syssi reference frame: bit 15 = charging
        (0x0370, 1, -8.8),  # OpenDTU frame: bit 15 clear = discharging
        (0x87D0, 1, 20.0),  # vendor text: charging 20 A = 34768
        (0x07D0, 1, -20.0),
        (0x8000, 1, 0.0),
        (9500, 0, 5.0),  # vendor text: (10000 - 9500) x 0.01 = 5 A charging
        (11000, 0, -10.0),  # (10000 - 11000) x 0.01 = -10 A discharging
        (10000, None, 0.0),
    ],
)
def test_current_encodings(raw: int, version: int | None, amps: float) -> None:
    assert jk_uart.decode_current(raw, version) == pytest.approx(amps)
    assert str(jk_uart.decode_current(raw, version)) != "-0.0"


def test_current_waits_for_the_protocol_version_that_follows_it() -> None:
    new = bytes.fromhex("84 80 d0 85 0f c0 01")
    old = bytes.fromhex("84 26 48 85 0f")  # 9800 -> +2.00 A in the 2020 encoding
    assert jk_uart.decode_hex(_response(new))["current"] == pytest.approx(2.08)
    assert jk_uart.decode_hex(_response(old))["current"] == pytest.approx(2.0)
    # a single 0x84 read carries no 0xC0: the caller says which encoding the board uses
    single = _response(bytes.fromhex("84 80 d0"), jk_uart.READ_ONE)
    assert jk_uart.decode_hex(single, protocol_version=1)["current"] == pytest.approx(2.08)


def test_old_firmware_current_in_a_real_frame() -> None:
    raw = bytearray(frame_bytes(_vector("jk_resp_20s_vendor_example_old_protocol")))
    pos = raw.index(bytes.fromhex("84 27 10"))
    raw[pos + 1 : pos + 3] = (11000).to_bytes(2, "big")
    got = jk_uart.decode_hex(_resum(bytes(raw)))
    assert got["current"] == pytest.approx(-10.0)
    assert got["protocol_version"] == 0


def test_unknown_identifier_stops_the_walk_and_keeps_what_came_before() -> None:
    records = bytes.fromhex("83 14 ef 85 0f 88 01 02 87 00 04")  # 0x88 is not in the list
    got = jk_uart.decode_hex(_response(records))
    assert got["pack_voltage"] == pytest.approx(53.59)
    assert got["soc"] == 15
    assert got["unknown_identifier"] == 0x88
    assert "cycles" not in got


@pytest.mark.parametrize(
    "records",
    ["83 14", "79", "79 04 01 0e ed 02", "79 06 01 0e ed", "b7 31 32"],
    ids=["short_value", "no_count", "count_not_3n", "cells_cut", "text_cut"],
)
def test_malformed_records_are_length_errors(records: str) -> None:
    with pytest.raises(LengthError):
        jk_uart.decode_hex(_response(bytes.fromhex(records)))


def test_password_record_is_never_reported() -> None:
    got = jk_uart.decode_hex(frame_bytes(_vector("jk_resp_14s_syssi_reference")))
    assert "123456" not in repr(got)


def test_warning_bits_map_onto_known_alarm_codes() -> None:
    assert all(code in ALARMS for code in jk_uart.WARNING_BITS if code)
    assert jk_uart.decode_warnings(0b1100_0000_0000_0001) == [
        "soc_low_warning",
        "jk_bit_14",
        "jk_bit_15",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", (0, None)),
        (b"\x00\x01\x02", (3, None)),
        (b"\x00\x4e", (1, None)),  # keep a trailing 0x4E: it may start a marker
        (b"\x4e\x57\x00", (0, None)),
        (b"\x4e\x57\x00\x13\x00\x00\x00\x00\x09", (1, None)),  # command 0x09 does not exist
        (b"\x4e\x57\xff\xff", (1, None)),  # longer than any JK frame
        (b"\x4e\x57\x00\x05", (1, None)),  # shorter than any JK frame
    ],
)
def test_framer_edge_cases(data: bytes, expected: tuple[int, bytes | None]) -> None:
    assert jk_uart.framer(data) == expected


def test_framer_resynchronises_after_junk() -> None:
    frame = jk_uart.read_all_request()
    buf = b"\x13\x4e\x57\x00\x13" + frame  # junk that holds a false start
    assert jk_uart.framer(buf) == (1, None)
    used, got = jk_uart.framer(buf[1:])
    assert (used, got) == (1, None)  # "4E 57 00 13 4E": the header is not a command
    assert jk_uart.framer(buf[2:]) == (3, None)
    assert jk_uart.framer(buf[5:]) == (len(frame), frame)
    assert jk_uart.framer(frame[:-1]) == (0, None)
    bad = frame[:-1] + b"\x00"
    assert jk_uart.framer(bad) == (1, None)


def test_response_framer_skips_requests_of_another_master() -> None:
    request = jk_uart.read_all_request()
    assert jk_uart.response_framer(request) == (len(request), None)
    answer = _response(bytes.fromhex("85 0f"))
    assert jk_uart.response_framer(answer) == (len(answer), answer)


def test_several_frames_are_merged() -> None:
    soc = _response(bytes.fromhex("85 0f"), jk_uart.READ_ONE)
    volts = _response(bytes.fromhex("83 14 ef"), jk_uart.READ_ONE)
    got = jk_uart.decode_hex(soc + volts)
    assert (got["soc"], got["pack_voltage"]) == (15, pytest.approx(53.59))
    with pytest.raises(FrameError):
        jk_uart.decode_hex(soc + volts[:-1])


def test_to_reading_needs_the_core_values() -> None:
    with pytest.raises(FrameError, match="cell_voltages"):
        jk_uart.to_reading(jk_uart.decode_hex(_response(bytes.fromhex("83 14 ef 84 80 d0 85 0f"))))


def test_reading_from_a_vector() -> None:
    parts = jk_uart.decode_hex(frame_bytes(_vector("jk_resp_16s_b1a24s15p_opendtu_1")))
    reading = jk_uart.to_reading(parts)
    assert reading.current == pytest.approx(-8.8)
    assert reading.direction == "discharging"
    assert reading.cell_count == 16
    assert reading.temperatures == [27, 26]
    assert reading.mos_temperature == 27
    assert reading.nominal_capacity == 230
    assert reading.remaining_capacity == pytest.approx(138.0)  # 60 % x 230 Ah
    assert reading.extras["software_version"] == "11.XW_S11.262H_"
    assert "cell_voltages" not in reading.extras


def test_module_fulfils_the_protocol_contract() -> None:
    module = protocol("jk_uart")
    assert (module.NAME, module.BAUDRATE) == ("jk_uart", 115200)
    assert module.Driver is jk_uart.JkUartDriver


# --- simulator round trips -------------------------------------------------------------------
def _bus(cells: int = 16, protocol_version: int = 1) -> SimBus:
    model = PackModel.create(cells=cells, seed=3)
    model.profile = False
    return SimBus([JkUartBoard(model, protocol_version=protocol_version)], baudrate=115200)


def _driver(bus: SimBus) -> jk_uart.JkUartDriver:
    driver = jk_uart.Driver(SimLink(bus))
    driver.frame_gap = 0.0
    return driver


@pytest.mark.parametrize("amps", [-12.5, 0.0, 30.25])
@pytest.mark.parametrize("version", [1, 0])
async def test_round_trip_through_the_simulator(amps: float, version: int) -> None:
    bus = _bus(protocol_version=version)
    model = bus.boards[0].model
    model.demand = amps
    model.step(1)
    reading = await _driver(bus).read()
    assert reading.cell_voltages == model.cell_voltages
    assert reading.current == pytest.approx(amps, abs=0.005)
    assert reading.soc == pytest.approx(model.soc, abs=0.5)
    assert reading.pack_voltage == pytest.approx(model.pack_voltage, abs=0.005)
    assert reading.temperatures == [round(t) for t in model.temperatures]
    assert reading.mos_temperature == round(model.mos_temperature)
    assert reading.cycles == model.cycles
    assert reading.nominal_capacity == model.nominal_capacity
    assert reading.charge_mos is True
    assert reading.discharge_mos is True
    assert reading.extras["protocol_version"] == version


async def test_every_record_of_the_simulator_is_walked() -> None:
    board = _bus().boards[0]
    assert isinstance(board, JkUartBoard)
    records = board.records()
    assert list(records)[-1] == jk_uart.PROTOCOL_VERSION
    assert set(records) - {jk_uart.CELLS} <= set(jk_uart.RECORD_LENGTHS)
    frame = board.answer(jk_uart.read_all_request())
    assert frame is not None
    assert "unknown_identifier" not in jk_uart.decode_hex(frame[0])


async def test_read_one_through_the_simulator() -> None:
    bus = _bus()
    frames = await SimLink(bus).exchange(jk_uart.read_one_request(0x83), jk_uart.response_framer)
    got = jk_uart.decode_hex(frames[0])
    assert got["pack_voltage"] == pytest.approx(bus.boards[0].model.pack_voltage, abs=0.005)
    assert set(got) == {"pack_voltage", "protocol_version", "command"}


async def test_negative_temperatures_through_the_simulator() -> None:
    bus = _bus()
    model = bus.boards[0].model
    model.temperatures = [-5.0, -12.0]
    model.mos_temperature = -1.0
    reading = await _driver(bus).read()
    assert reading.temperatures == [-5, -12]
    assert reading.mos_temperature == -1


def test_simulator_encoders_invert_the_decoders() -> None:
    for celsius in (-40, -1, 0, 1, 55, 100):
        assert jk_uart.decode_temperature(encode_temperature(celsius)) == celsius
    for amps in (-20.0, -0.01, 0.0, 0.01, 20.0):
        for version in (0, 1):
            assert jk_uart.decode_current(encode_current(amps, version), version) == pytest.approx(
                amps
            )


async def test_mos_writes_are_read_back() -> None:
    bus = _bus()
    driver = _driver(bus)
    model = bus.boards[0].model
    assert await driver.set_mos(charge=True, on=False) is False
    assert model.charge_mos is False
    assert (await driver.read()).charge_mos is False
    assert await driver.set_mos(charge=False, on=False) is False
    assert model.discharge_mos is False
    assert await driver.set_mos(charge=True, on=True) is True
    assert await driver.set_mos(charge=False, on=True) is True
    assert model.charge_mos
    assert model.discharge_mos


async def test_mos_write_is_preceded_by_the_password_frame() -> None:
    bus = _bus()
    sent: list[bytes] = []
    feed = bus.feed

    def spy(data: bytes) -> list[tuple[float, bytes]]:
        sent.append(data)
        return feed(data)

    bus.feed = spy  # type: ignore[method-assign]
    await _driver(bus).set_mos(charge=True, on=False)
    assert [frame[8] for frame in sent] == [jk_uart.PASSWORD, jk_uart.WRITE, jk_uart.READ_ALL]
    assert sent[1] == jk_uart.write_mos_request(True, False)


async def test_set_soc_is_unsupported() -> None:
    with pytest.raises(UnsupportedCommand):
        await _driver(_bus()).set_soc(50)


def test_only_address_one() -> None:
    with pytest.raises(ValueError, match="one BMS per line"):
        jk_uart.Driver(SimLink(_bus()), address=2)


async def test_sleeping_board_is_activated() -> None:
    bus = _bus()
    board = bus.boards[0]
    assert isinstance(board, JkUartBoard)
    board.asleep = True
    reading = await _driver(bus).read()
    assert board.asleep is False
    assert reading.cell_voltages == board.model.cell_voltages


@pytest.mark.parametrize("fault", ["echo", "split", "glued"])
async def test_wire_faults_are_absorbed(fault: str) -> None:
    bus = _bus()
    bus.faults.mode = fault  # type: ignore[assignment]
    reading = await _driver(bus).read()
    assert reading.cell_voltages == bus.boards[0].model.cell_voltages


@pytest.mark.parametrize("fault", ["silent", "bad_checksum", "garbage"])
async def test_broken_answers_are_timeouts_not_wrong_values(fault: str) -> None:
    from bmsgate_bms import LinkTimeout

    bus = _bus()
    bus.faults.mode = fault  # type: ignore[assignment]
    with pytest.raises(LinkTimeout):
        await _driver(bus).read()


# --- fuzz ------------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.sampled_from([jk_uart.READ_ALL, jk_uart.READ_ONE]))
def test_fuzz_record_walker_in_valid_frames(info: bytes, command: int) -> None:
    try:
        parts = jk_uart.decode_hex(_response(info, command))
    except FrameError:
        return
    with contextlib.suppress(FrameError):
        jk_uart.to_reading(parts)

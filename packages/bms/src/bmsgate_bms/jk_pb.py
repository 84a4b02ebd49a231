"""JK-PB inverter BMS on RS485, UART protocol "001 JK BMS RS485 Modbus V1.0" (115200 8N1).

Facts (PROTOCOLS.md section 4 and gotcha 6.5; JK's "JK BMS RS485 Modbus V1.0" PDF as stored in
syssi/esphome-jk-bms docs/pb2a16s20p; mr-manuel/venus-os_dbus-serialbattery bms-docs/JKBMS-PB.md;
jblance/mpp-solar mppsolar/protocols/jkpb.py): Modbus RTU with CRC-16/Modbus, DIP addresses 1..15
(0 makes a board the bus master). A field's register address is block base + *byte* offset,
while register counts are 16-bit words. Two ways to read:

* method A, FC 0x03 reads of the 0x1000/0x1200/0x1400 blocks, values big-endian;
* method B, an FC 0x10 write of 0x0000 to a trigger register (0x1620 live data, 0x161E settings,
  0x161C device info), answered by a 300-byte ``55 AA EB 90`` frame (a little-endian dump of the
  same block from byte 6, sum8 in byte 299, no address in it) followed by the FC 0x10 ACK.

No I/O above ``JkPbDriver``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple

from .checksum import crc16_modbus, sum8
from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import ChecksumError, FrameError, LengthError, ModbusExceptionError
from .fields import Field, decode, read_int
from .link import Link
from .plausible import Limits
from .reading import BmsReading
from .setpoints import Setpoint, check_write, pick

NAME: Final = "jk_pb"
# [A] the class: above the rating of every JK board, with room for peaks
LIMITS: Final = Limits(max_current=600.0)
BAUDRATE: Final = 115200
MAX_ADDRESS: Final = 15  # DIP switches; 0 is the bus master, which never answers a request

READ: Final = 0x03
WRITE: Final = 0x10
ERROR_FLAG: Final = 0x80  # exception replies carry function | 0x80
MAX_READ_WORDS: Final = 125  # Modbus limit for one FC 0x03 answer (250 data bytes)
MAX_WRITE_WORDS: Final = 123

# register blocks (base + byte offset = register address)
SETTINGS_BASE: Final = 0x1000
LIVE_BASE: Final = 0x1200
INFO_BASE: Final = 0x1400
# FC 0x10 trigger registers and the 55 AA frame type each one is answered with
TRIGGER_INFO: Final = 0x161C
TRIGGER_SETTINGS: Final = 0x161E
TRIGGER_LIVE: Final = 0x1620
TYPE_SETTINGS: Final = 0x01
TYPE_LIVE: Final = 0x02
TYPE_INFO: Final = 0x03
TRIGGER_TYPES: Final = {
    TRIGGER_SETTINGS: TYPE_SETTINGS,
    TRIGGER_LIVE: TYPE_LIVE,
    TRIGGER_INFO: TYPE_INFO,
}
# writable u32 switches in the settings block (1 on, 0 off)
CHARGE_SWITCH: Final = 0x1070
DISCHARGE_SWITCH: Final = 0x1074
BALANCE_SWITCH: Final = 0x1078

HEADER: Final = b"\x55\xaa\xeb\x90"
FRAME_LEN: Final = 300  # 55 AA frame; the checksum is its last byte
BODY: Final = slice(6, FRAME_LEN - 1)  # block byte 0 sits at frame byte 6
BODY_LEN: Final = FRAME_LEN - 7
ACK_LEN: Final = 8
EXCEPTION_LEN: Final = 5
CELLS: Final = 32
TEMP_SENSORS: Final = 5
ABSENT: Final = -200.0  # [°C] raw -2000: how a board reports a sensor that is not fitted

EXCEPTIONS: Final = {1: "CRC error", 2: "bad register", 3: "illegal function", 4: "bad data"}


class Text(NamedTuple):
    """A NUL-padded ASCII field of the device-info block."""

    key: str
    pos: int
    size: int


def _le(
    key: str, pos: int, size: int, *, signed: bool = False, offset: int = 0, scale: float = 1.0
) -> Field:
    """Describe a field as laid out in a 55 AA frame (FC 0x03 uses its big-endian twin)."""
    return Field(key, pos, size, signed, offset, scale, "little")


# 0x1200 live block, byte offsets (PROTOCOLS.md 4.2 table; names of the release timers from
# syssi/esphome-jk-bms components/jk_bms_ble/jk_bms_ble.cpp)
LIVE_FIELDS: Final = (
    *(_le(f"cell_{n + 1}", 2 * n, 2, scale=0.001) for n in range(CELLS)),  # [V]
    _le("cell_present", 0x40, 4),  # CellSta: bit n = cell n+1 fitted
    _le("average_cell_voltage", 0x44, 2, scale=0.001),  # [V]
    _le("cell_voltage_diff", 0x46, 2, scale=0.001),  # [V] highest - lowest
    _le("max_cell", 0x48, 1, offset=1),  # sent 0-based, kept 1-based like the other protocols
    _le("min_cell", 0x49, 1, offset=1),
    *(_le(f"wire_resistance_{n + 1}", 0x4A + 2 * n, 2, scale=0.001) for n in range(CELLS)),  # [Ω]
    _le("mos_temperature", 0x8A, 2, signed=True, scale=0.1),  # [°C]
    _le("wire_resistance_alarm_bits", 0x8C, 4),  # bit n = balance wire n+1 too resistive
    _le("pack_voltage", 0x90, 4, scale=0.001),  # [V]
    _le("power", 0x94, 4, scale=0.001),  # [W] magnitude only; the sign comes from the current
    _le("current", 0x98, 4, signed=True, scale=0.001),  # [A] positive = charging
    _le("temperature_1", 0x9C, 2, signed=True, scale=0.1),  # [°C]
    _le("temperature_2", 0x9E, 2, signed=True, scale=0.1),
    _le("alarm_bits", 0xA0, 4),  # see ALARM_BITS
    _le("balance_current", 0xA4, 2, signed=True, scale=0.001),  # [A]
    _le("balance_state", 0xA6, 1),  # 0 off, 1 balancing while charging, 2 while discharging
    _le("soc", 0xA7, 1),  # [%]
    _le("remaining_capacity", 0xA8, 4, signed=True, scale=0.001),  # [Ah]
    _le("nominal_capacity", 0xAC, 4, scale=0.001),  # [Ah] SOCFullChargeCap
    _le("cycles", 0xB0, 4),
    _le("cycle_capacity", 0xB4, 4, scale=0.001),  # [Ah] charge throughput
    _le("soh", 0xB8, 1),  # [%]
    _le("precharge", 0xB9, 1),
    _le("user_alarm", 0xBA, 2),
    _le("runtime", 0xBC, 4),  # [s]
    _le("charge_mos", 0xC0, 1),
    _le("discharge_mos", 0xC1, 1),
    _le("user_alarm_2", 0xC2, 2),
    _le("discharge_ocp_release", 0xC4, 2),  # [s] protection release timers
    _le("discharge_scp_release", 0xC6, 2),
    _le("charge_ocp_release", 0xC8, 2),
    _le("charge_scp_release", 0xCA, 2),
    _le("uvp_release", 0xCC, 2),
    _le("ovp_release", 0xCE, 2),
    _le("temp_sensor_bits", 0xD0, 1),  # bit 0 MOS sensor, bit n = sensor n fitted
    _le("heating", 0xD1, 1),
    _le("heat_current", 0xE6, 2, scale=0.001),  # [A]
    _le("temperature_3", 0xF8, 2, signed=True, scale=0.1),  # [°C]
    _le("temperature_4", 0xFA, 2, signed=True, scale=0.1),
    _le("temperature_5", 0xFC, 2, signed=True, scale=0.1),
)

# 0x1000 settings block, u32/s32 each (PROTOCOLS.md 4.2; the fields PROTOCOLS.md leaves unnamed
# between 0x2C and 0x84 are named after syssi/esphome-jk-bms jk_bms_ble.cpp, settings decoder)
SETTINGS_FIELDS: Final = (
    _le("smart_sleep_voltage", 0x00, 4, scale=0.001),  # [V]
    _le("cell_uvp", 0x04, 4, scale=0.001),  # [V] under-voltage protection
    _le("cell_uvp_recovery", 0x08, 4, scale=0.001),
    _le("cell_ovp", 0x0C, 4, scale=0.001),  # [V] over-voltage protection
    _le("cell_ovp_recovery", 0x10, 4, scale=0.001),
    _le("balance_trigger_voltage", 0x14, 4, scale=0.001),  # [V] cell difference
    _le("soc_100_voltage", 0x18, 4, scale=0.001),  # [V]
    _le("soc_0_voltage", 0x1C, 4, scale=0.001),
    _le("cell_request_charge_voltage", 0x20, 4, scale=0.001),  # [V] RCV
    _le("cell_request_float_voltage", 0x24, 4, scale=0.001),  # [V] RFV
    _le("power_off_voltage", 0x28, 4, scale=0.001),
    _le("max_charge_current", 0x2C, 4, scale=0.001),  # [A]
    _le("charge_ocp_delay", 0x30, 4),  # [s]
    _le("charge_ocp_recovery", 0x34, 4),  # [s]
    _le("max_discharge_current", 0x38, 4, scale=0.001),  # [A]
    _le("discharge_ocp_delay", 0x3C, 4),  # [s]
    _le("discharge_ocp_recovery", 0x40, 4),  # [s]
    _le("scp_recovery", 0x44, 4),  # [s]
    _le("max_balance_current", 0x48, 4, scale=0.001),  # [A]
    _le("charge_otp", 0x4C, 4, signed=True, scale=0.1),  # [°C]
    _le("charge_otp_recovery", 0x50, 4, signed=True, scale=0.1),
    _le("discharge_otp", 0x54, 4, signed=True, scale=0.1),
    _le("discharge_otp_recovery", 0x58, 4, signed=True, scale=0.1),
    _le("charge_utp", 0x5C, 4, signed=True, scale=0.1),
    _le("charge_utp_recovery", 0x60, 4, signed=True, scale=0.1),
    _le("mos_otp", 0x64, 4, signed=True, scale=0.1),
    _le("mos_otp_recovery", 0x68, 4, signed=True, scale=0.1),
    _le("cell_count", 0x6C, 4),
    _le("charge_switch", 0x70, 4),  # 1 on, 0 off (register 0x1070)
    _le("discharge_switch", 0x74, 4),  # register 0x1074
    _le("balance_switch", 0x78, 4),  # register 0x1078
    _le("design_capacity", 0x7C, 4, scale=0.001),  # [Ah]
    _le("scp_delay", 0x80, 4),  # [µs]
    _le("balance_start_voltage", 0x84, 4, scale=0.001),  # [V]
    _le("device_address", 0x108, 4),
    _le("control_bits", 0x114, 4),  # heating, GPS heartbeat, RS485/CAN port, LCD always on...
)
SWITCHES: Final = ("charge_switch", "discharge_switch", "balance_switch")

_V, _A, _S, _C = "V", "A", "s", "°C"
# every field of the settings block; the writable few with bmsgate's bounds (setpoints.py)
SETPOINTS: Final = (
    Setpoint("smart_sleep_voltage", _V),
    Setpoint("cell_uvp", _V),
    Setpoint("cell_uvp_recovery", _V),
    Setpoint("cell_ovp", _V),
    Setpoint("cell_ovp_recovery", _V),
    Setpoint("balance_trigger_voltage", _V, 0.003, 1.0),
    Setpoint("soc_100_voltage", _V),
    Setpoint("soc_0_voltage", _V),
    Setpoint("cell_request_charge_voltage", _V),
    Setpoint("cell_request_float_voltage", _V),
    Setpoint("power_off_voltage", _V),
    Setpoint("max_charge_current", _A, 1.0, 600.0),
    Setpoint("charge_ocp_delay", _S),
    Setpoint("charge_ocp_recovery", _S),
    Setpoint("max_discharge_current", _A, 1.0, 600.0),
    Setpoint("discharge_ocp_delay", _S),
    Setpoint("discharge_ocp_recovery", _S),
    Setpoint("scp_recovery", _S),
    Setpoint("max_balance_current", _A),
    Setpoint("charge_otp", _C),
    Setpoint("charge_otp_recovery", _C),
    Setpoint("discharge_otp", _C),
    Setpoint("discharge_otp_recovery", _C),
    Setpoint("charge_utp", _C),
    Setpoint("charge_utp_recovery", _C),
    Setpoint("mos_otp", _C),
    Setpoint("mos_otp_recovery", _C),
    Setpoint("cell_count", ""),
    Setpoint("charge_switch", ""),
    Setpoint("discharge_switch", ""),
    Setpoint("balance_switch", ""),
    Setpoint("design_capacity", "Ah", 1.0, 2000.0),
    Setpoint("scp_delay", "µs"),
    Setpoint("balance_start_voltage", _V, 2.0, 4.5, above="cell_uvp", below="cell_ovp"),
    Setpoint("device_address", ""),
    Setpoint("control_bits", ""),
)

# 0x1400 device-info block (PROTOCOLS.md 4.2; offsets past 0x24 from syssi jk_bms_ble.cpp, device
# info decoder). The passcodes stored there are left out on purpose: they must not reach MQTT.
INFO_FIELDS: Final = (
    _le("uptime", 0x20, 4),  # [s]
    _le("power_on_count", 0x24, 4),
)
INFO_TEXTS: Final = (
    Text("model", 0x00, 16),
    Text("hardware_version", 0x10, 8),
    Text("software_version", 0x18, 8),
    Text("device_name", 0x28, 16),
    Text("manufacturing_date", 0x48, 8),  # YYMMDD
    Text("serial_number", 0x50, 11),
    Text("user_data", 0x60, 16),
)

# 0x12A0 alarm bitmap, bit 0 first (V1.0 PDF via PROTOCOLS.md 4.2; bits 22-23 from the V1.1 PDF,
# bit 27 from syssi jk_bms_ble.cpp); None = unnamed, reported as jk_pb_bit_<n> when set
# fmt: off
ALARM_BITS: Final[tuple[str | None, ...]] = (
    "wire_resistance", "mos_overtemp", "cell_count_mismatch", "current_sensor_fault",
    "cell_overvoltage", "pack_overvoltage", "charge_overcurrent", "charge_short_circuit",
    "charge_overtemp", "charge_undertemp", "internal_comm_fault", "cell_undervoltage",
    "pack_undervoltage", "discharge_overcurrent", "discharge_short_circuit", "discharge_overtemp",
    "charge_mos_fault", "discharge_mos_fault", "gps_disconnected", "password_change_due",
    "discharge_on_failed", "battery_overtemp", "temp_sensor_fault", "parallel_module_fault",
    None, None, None, "discharge_undertemp", None, None, None, None,
)
# fmt: on

_BLOCKS: Final[dict[int, tuple[tuple[Field, ...], tuple[Text, ...]]]] = {
    SETTINGS_BASE: (SETTINGS_FIELDS, ()),
    LIVE_BASE: (LIVE_FIELDS, ()),
    INFO_BASE: (INFO_FIELDS, INFO_TEXTS),
}
FRAME_BLOCKS: Final = {TYPE_SETTINGS: SETTINGS_BASE, TYPE_LIVE: LIVE_BASE, TYPE_INFO: INFO_BASE}


# --- requests and answers (pure encoders) -------------------------------------------------------
def _check_address(address: int) -> None:
    if not 1 <= address <= MAX_ADDRESS:
        raise ValueError(f"JK-PB address must be 1..{MAX_ADDRESS}, not {address}")


def with_crc(body: bytes) -> bytes:
    """Append the CRC-16/Modbus, low byte first."""
    return body + crc16_modbus(body).to_bytes(2, "little")


def read_request(register: int, count: int, address: int = 1) -> bytes:
    """FC 0x03: read ``count`` 16-bit words from ``register`` (a block base + byte offset)."""
    _check_address(address)
    if not 1 <= count <= MAX_READ_WORDS:
        raise ValueError(f"FC 0x03 reads 1..{MAX_READ_WORDS} registers, not {count}")
    return with_crc(bytes((address, READ)) + register.to_bytes(2, "big") + count.to_bytes(2, "big"))


def write_request(register: int, data: bytes, address: int = 1) -> bytes:
    """FC 0x10: write ``data`` (a whole number of 16-bit words) from ``register``."""
    _check_address(address)
    if not data or len(data) % 2 or len(data) > 2 * MAX_WRITE_WORDS:
        raise ValueError(f"FC 0x10 writes 1..{MAX_WRITE_WORDS} whole words, not {len(data)} bytes")
    head = bytes((address, WRITE)) + register.to_bytes(2, "big")
    return with_crc(head + (len(data) // 2).to_bytes(2, "big") + bytes((len(data),)) + data)


def trigger_request(register: int = TRIGGER_LIVE, address: int = 1) -> bytes:
    """Build a method B trigger: write 0x0000; the answer is a 55 AA frame and an ACK."""
    if register not in TRIGGER_TYPES:
        raise ValueError(f"{register:#06x} is not a trigger register")
    return write_request(register, bytes(2), address)


def write_switch_request(register: int, on: bool, address: int = 1) -> bytes:
    """Write a u32 switch of the settings block (two registers, high word first)."""
    return write_request(register, int(on).to_bytes(4, "big"), address)


def write_mos_request(charge: bool, on: bool, address: int = 1) -> bytes:
    """Switch charging (0x1070) or discharging (0x1074) on or off."""
    return write_switch_request(CHARGE_SWITCH if charge else DISCHARGE_SWITCH, on, address)


def ack_frame(address: int, register: int, count: int) -> bytes:
    """Build the 8-byte FC 0x10 acknowledgement: address, 0x10, register, count, CRC."""
    return with_crc(
        bytes((address, WRITE)) + register.to_bytes(2, "big") + count.to_bytes(2, "big")
    )


def read_response(address: int, data: bytes) -> bytes:
    """Build an FC 0x03 answer carrying ``data``."""
    return with_crc(bytes((address, READ, len(data))) + data)


def exception_response(address: int, function: int, code: int) -> bytes:
    """Build a Modbus exception reply."""
    return with_crc(bytes((address, function | ERROR_FLAG, code)))


def status_frame(frame_type: int, counter: int, body: bytes) -> bytes:
    """Build a 300-byte 55 AA frame: header, type, counter, block bytes (zero-padded), sum8."""
    if len(body) > BODY_LEN:
        raise ValueError(f"a 55 AA frame holds {BODY_LEN} block bytes, not {len(body)}")
    frame = HEADER + bytes((frame_type, counter & 0xFF)) + body.ljust(BODY_LEN, b"\x00")
    return frame + bytes((sum8(frame),))


def encode_block(
    fields: Iterable[Field],
    values: Mapping[str, float],
    length: int = BODY_LEN,
    texts: Iterable[Text] = (),
    strings: Mapping[str, str] | None = None,
    *,
    byteorder: Literal["big", "little"] | None = None,
) -> bytes:
    """Lay ``values`` out as block bytes (the inverse of decoding); missing keys stay zero.

    ``byteorder`` overrides the fields' own order: "big" gives the FC 0x03 view of the block.
    """
    out = bytearray(length)
    for f in fields:
        if f.key in values:
            raw = round(values[f.key] / f.scale) - f.offset
            order = byteorder or f.byteorder
            out[f.pos : f.pos + f.size] = raw.to_bytes(f.size, order, signed=f.signed)
    for t in texts:
        text = (strings or {}).get(t.key, "").encode("ascii", "replace")[: t.size]
        out[t.pos : t.pos + t.size] = text.ljust(t.size, b"\x00")
    return bytes(out)


# --- framing ------------------------------------------------------------------------------------
def _response_length(buf: bytes) -> int:
    """Length of the Modbus answer ``buf`` starts with: >0 known, 0 need more, -1 not a start."""
    if not buf:
        return 0
    if not 1 <= buf[0] <= MAX_ADDRESS:
        return -1
    if len(buf) < 2:
        return 0
    function = buf[1]
    if function in (READ | ERROR_FLAG, WRITE | ERROR_FLAG):
        return EXCEPTION_LEN
    if function == WRITE:
        return ACK_LEN
    if function == READ:
        if len(buf) < 3:
            return 0
        size = buf[2]
        if size == 0 or size % 2 or size > 2 * MAX_READ_WORDS:
            return -1
        return 5 + size
    return -1


def _request_length(buf: bytes) -> int:
    """Length of the Modbus request ``buf`` starts with: >0 known, 0 need more, -1 not a start."""
    if not buf:
        return 0
    if not 1 <= buf[0] <= MAX_ADDRESS:
        return -1
    if len(buf) < 2:
        return 0
    if buf[1] == READ:
        return 8
    if buf[1] != WRITE:
        return -1
    if len(buf) < 7:
        return 0
    words, size = int.from_bytes(buf[4:6], "big"), buf[6]
    if size != 2 * words or not 1 <= words <= MAX_WRITE_WORDS:
        return -1
    return 9 + size


def _crc_ok(frame: bytes) -> bool:
    return crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _skip(buf: bytes, plausible: tuple[int, ...]) -> int:
    """Bytes to drop before the next byte that could start a frame."""
    return next((i for i in range(1, len(buf)) if buf[i] in plausible), len(buf))


_RESPONSE_STARTS: Final = (HEADER[0], *range(1, MAX_ADDRESS + 1))


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find a 55 AA frame or a CRC-valid Modbus answer at the start of ``buf`` (see link.Framer).

    Junk and the 0x00 padding some adapters put around the ACK are dropped.
    """
    if not buf:
        return 0, None
    if buf[0] == HEADER[0] and HEADER.startswith(buf[:4]):
        if len(buf) < FRAME_LEN:
            return 0, None
        frame = bytes(buf[:FRAME_LEN])
        if sum8(frame[:-1]) != frame[-1]:
            return 1, None  # a header by chance or a damaged frame: resynchronise
        return FRAME_LEN, frame
    size = _response_length(buf)
    if size < 0:
        return _skip(buf, _RESPONSE_STARTS), None
    if size == 0 or len(buf) < size:
        return 0, None
    frame = bytes(buf[:size])
    return (size, frame) if _crc_ok(frame) else (1, None)


def request_framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find a CRC-valid FC 0x03 / FC 0x10 request at the start of ``buf`` (simulator, sniffer)."""
    size = _request_length(buf)
    if size < 0:
        return _skip(buf, tuple(range(1, MAX_ADDRESS + 1))), None
    if size == 0 or len(buf) < size:
        return 0, None
    frame = bytes(buf[:size])
    return (size, frame) if _crc_ok(frame) else (1, None)


def split_frames(data: bytes) -> list[bytes]:
    """Cut one answer into checked frames; 0x00 padding between them is allowed."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1  # adapter padding around the ACK
            continue
        rest = data[pos:]
        if rest[:4] == HEADER:
            if len(rest) < FRAME_LEN:
                raise LengthError(f"55 AA frame at byte {pos} has {len(rest)} of 300 bytes")
            frame = rest[:FRAME_LEN]
            if sum8(frame[:-1]) != frame[-1]:
                raise ChecksumError(f"55 AA sum {frame[-1]:02X}, expected {sum8(frame[:-1]):02X}")
        else:
            size = _response_length(rest)
            if size < 0:
                raise FrameError(f"no JK-PB frame starts at byte {pos} ({rest[:4].hex(' ')})")
            if size == 0 or len(rest) < size:
                raise LengthError(f"Modbus frame at byte {pos} is cut short")
            frame = rest[:size]
            if not _crc_ok(frame):
                raise ChecksumError(f"Modbus CRC of {frame.hex(' ')} does not match")
        frames.append(bytes(frame))
        pos += len(frame)
    if not frames:
        raise LengthError("no frame in the data")
    return frames


def is_status_frame(frame: bytes) -> bool:
    """Tell a 55 AA frame (True) from a Modbus frame (False)."""
    return frame[:4] == HEADER


# --- decoding -----------------------------------------------------------------------------------
def _big(fields: Iterable[Field]) -> tuple[Field, ...]:
    return tuple(f._replace(byteorder="big") for f in fields)


def _decode(fields: Iterable[Field], data: bytes) -> dict[str, float]:
    """Decode a table; unscaled fields come out as int (counts, bitmaps, seconds)."""
    fields = tuple(fields)
    values = decode(fields, data)
    return values | {f.key: int(values[f.key]) for f in fields if f.scale == 1.0}


def _texts(texts: Iterable[Text], data: bytes) -> dict[str, str]:
    return {
        t.key: data[t.pos : t.pos + t.size].split(b"\x00", 1)[0].decode("ascii", "replace").strip()
        for t in texts
        if t.pos + t.size <= len(data)
    }


def _bits(value: float) -> list[int]:
    """1-based numbers of the set bits."""
    raw = int(value)
    return [n + 1 for n in range(raw.bit_length()) if raw >> n & 1]


def decode_alarms(bits: int) -> list[str]:
    """Alarm codes of the 0x12A0 bitmap."""
    return [
        ALARM_BITS[n] or f"jk_pb_bit_{n}"
        for n in range(min(bits.bit_length(), 32))
        if bits >> n & 1
    ]


def _numbered(values: dict[str, Any], prefix: str, size: int) -> dict[int, float]:
    """Pop ``prefix1..prefixN`` out of ``values``."""
    return {n: values.pop(f"{prefix}{n}") for n in range(1, size + 1) if f"{prefix}{n}" in values}


def _finish_live(raw: dict[str, float], cell_count: int | None) -> dict[str, Any]:
    """Turn raw live-block fields into pack-state names, lists and flags."""
    out: dict[str, Any] = dict(raw)
    cells = _numbered(out, "cell_", CELLS)
    wires = _numbered(out, "wire_resistance_", CELLS)
    count = cell_count
    if count is None and out.get("cell_present"):
        count = int(out["cell_present"]).bit_length()  # highest fitted cell; keeps numbering
    if 1 in cells:
        volts: list[float] = []
        while len(volts) + 1 in cells:
            volts.append(cells.pop(len(volts) + 1))
        if count is not None:
            volts = volts[:count]
        else:
            while volts and volts[-1] == 0:
                volts.pop()  # no CellSta in this read: empty slots read 0 mV
        out["cell_voltages"] = volts
        out["cell_count"] = len(volts)
    out |= {f"cell_{n}": v for n, v in cells.items()}  # a read that does not start at cell 1
    if 1 in wires:
        ohms: list[float] = []
        while len(ohms) + 1 in wires:
            ohms.append(wires.pop(len(ohms) + 1))
        limit = count if count is not None else out.get("cell_count")
        out["wire_resistances"] = ohms[:limit] if limit is not None else ohms
    out |= {f"wire_resistance_{n}": v for n, v in wires.items()}
    temps = {n: t for n, t in _numbered(out, "temperature_", TEMP_SENSORS).items() if t != ABSENT}
    if out.get("mos_temperature") == ABSENT:
        del out["mos_temperature"]
    fitted = out.get("temp_sensor_bits")
    if fitted is None:
        out |= {f"temperature_{n}": t for n, t in temps.items()}  # which are fitted is unknown
    elif temps:
        out["temperatures"] = [t for n, t in sorted(temps.items()) if int(fitted) >> n & 1]
    if "current" in out and "power" in out and out["current"] < 0:
        out["power"] = -out["power"]  # BatWatt is unsigned
    if "alarm_bits" in out:
        out["alarms"] = decode_alarms(int(out["alarm_bits"]))
    if "wire_resistance_alarm_bits" in out:
        out["wire_resistance_alarms"] = _bits(out["wire_resistance_alarm_bits"])
    if "balance_state" in out:
        out["balancing"] = bool(out["balance_state"])
    for key in ("charge_mos", "discharge_mos", "precharge", "heating"):
        if key in out:
            out[key] = bool(out[key])
    return out


def _finish(base: int, raw: dict[str, Any], cell_count: int | None) -> dict[str, Any]:
    if base == LIVE_BASE:
        return _finish_live(raw, cell_count)
    if base == SETTINGS_BASE:
        return raw | {k: bool(raw[k]) for k in SWITCHES if k in raw}
    return raw


def decode_block(base: int, data: bytes, *, cell_count: int | None = None) -> dict[str, Any]:
    """Decode the little-endian block bytes of a 55 AA frame (``frame[6:299]``)."""
    fields, texts = _BLOCKS[base]
    return _finish(base, {**_decode(fields, data), **_texts(texts, data)}, cell_count)


def decode_registers(
    start_register: int, data: bytes, *, cell_count: int | None = None
) -> dict[str, Any]:
    """Decode FC 0x03 data read from ``start_register``: every field the range fully covers."""
    base = start_register & 0xFE00  # blocks are 0x200 addresses apart
    if base not in _BLOCKS:
        return {"start_register": start_register, "registers_hex": data.hex()}
    first = start_register - base
    end = first + len(data)
    fields, texts = _BLOCKS[base]
    covered = [
        f._replace(pos=f.pos - first)
        for f in _big(fields)
        if first <= f.pos and f.pos + f.size <= end
    ]
    covered_texts = [
        t._replace(pos=t.pos - first) for t in texts if first <= t.pos and t.pos + t.size <= end
    ]
    raw = {**_decode(covered, data), **_texts(covered_texts, data)}
    return _finish(base, raw, cell_count)


def decode_frames(
    frames: Iterable[bytes], *, start_register: int | None = None, cell_count: int | None = None
) -> dict[str, Any]:
    """Decode checked frames (from ``framer`` or ``split_frames``) into names and extras."""
    out: dict[str, Any] = {}
    for frame in frames:
        if is_status_frame(frame):
            if len(frame) != FRAME_LEN:
                raise LengthError(f"55 AA frame must be 300 bytes, got {len(frame)}")
            kind = frame[4]
            out |= {"frame_type": kind, "frame_counter": frame[5]}
            if kind in FRAME_BLOCKS:
                out |= decode_block(FRAME_BLOCKS[kind], frame[BODY], cell_count=cell_count)
            else:
                out[f"frame_{kind:02x}_hex"] = frame[BODY].hex()
            continue
        if len(frame) < EXCEPTION_LEN:
            raise LengthError(f"Modbus frame of {len(frame)} bytes is too short")
        address, function = frame[0], frame[1]
        if function & ERROR_FLAG:
            out["exception"] = {
                "address": address,
                "function": function & ~ERROR_FLAG & 0xFF,
                "code": frame[2],
            }
        elif function == WRITE:
            register, count = read_int(frame, 2, 2), read_int(frame, 4, 2)
            out["ack"] = {
                "address": address,
                "function": function,
                "register": register,
                "count": count,
            }
        elif function == READ:
            data = frame[3:-2]
            if len(data) != frame[2]:
                raise LengthError(f"FC 0x03 byte count {frame[2]}, carries {len(data)}")
            out["address"] = address
            if start_register is None:
                out["registers_hex"] = data.hex()  # the range is unknown without the request
            else:
                out |= decode_registers(start_register, data, cell_count=cell_count)
        else:
            raise FrameError(f"function {function:02X} is not used by JK-PB")
    return out


def _request(data: bytes) -> bytes | None:
    """``data`` if it is exactly one CRC-valid request, else None."""
    used, frame = request_framer(bytes(data))
    return frame if frame is not None and used == len(data) else None


def describe_request(frame: bytes) -> dict[str, Any]:
    """What a checked request asks: address, read or write, register, count, trigger, value."""
    register, count = read_int(frame, 2, 2), read_int(frame, 4, 2)
    out: dict[str, Any] = {"address": frame[0], "register": register, "count": count}
    if frame[1] == READ:
        return {"request": "read"} | out
    value = frame[7:-2]
    if register in TRIGGER_TYPES and value == bytes(2):
        return {"request": "trigger", "frame_type": TRIGGER_TYPES[register]} | out
    return {"request": "write", "value": int.from_bytes(value, "big")} | out


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode a master's request (FC 0x03 read, FC 0x10 write or trigger)."""
    frame = _request(data)
    if frame is None:
        raise FrameError(f"{bytes(data[:11]).hex(' ')} is not one JK-PB request")
    return describe_request(frame)


def decode_hex(
    data: bytes, *, start_register: int | None = None, cell_count: int | None = None, **_: Any
) -> dict[str, Any]:
    """Decode one answer (55 AA frame + ACK, or an FC 0x03 reply) for ``bmsgate decode``."""
    request = _request(data)
    if request is not None:
        what = describe_request(request)
        raise FrameError(
            f"{request.hex(' ')} is a request ({what['request']} of register "
            f"{what['register']:#06x} at address {what['address']}), not an answer"
        )
    return decode_frames(split_frames(data), start_register=start_register, cell_count=cell_count)


_NOT_EXTRAS: Final = frozenset({"frame_type", "frame_counter", "ack"})  # framing, not values


def to_reading(parts: dict[str, Any]) -> BmsReading:
    """Assemble a snapshot from a decoded type-0x02 frame (or the same fields read by FC 0x03)."""
    # current is signed on the wire: positive = charging
    return BmsReading.from_parts({k: v for k, v in parts.items() if k not in _NOT_EXTRAS})


# --- listening to a bus that a master (DIP 0) polls ---------------------------------------------
MASTER: Final = 0  # DIP address 0: the bus master; it polls 1..15 and sends its own frames
_BUS_STARTS: Final = (HEADER[0], *range(MASTER, MAX_ADDRESS + 1))


def _bus_lengths(buf: bytes) -> list[int] | None:
    """Lengths a Modbus frame at the start of ``buf`` may have, shortest first; None: none."""
    function = buf[1]
    if function in (READ | ERROR_FLAG, WRITE | ERROR_FLAG):
        return [EXCEPTION_LEN]
    if function == READ:  # request (8) or answer (5 + byte count)
        return [8] + ([5 + buf[2]] if len(buf) > 2 and buf[2] and not buf[2] % 2 else [])
    if function == WRITE:  # ACK (8) or request (9 + byte count)
        return [ACK_LEN] + ([9 + buf[6]] if len(buf) > 6 and buf[6] and not buf[6] % 2 else [])
    return None


def bus_framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find any frame heard on a bus (requests, answers, ACKs, 55 AA frames; see link.Framer).

    An FC 0x10 ACK and a trigger request begin alike: the CRC tells which one it is, and 0x00
    padding or junk is dropped a byte at a time.
    """
    if not buf:
        return 0, None
    if buf[0] == HEADER[0] and HEADER.startswith(buf[:4]):
        return framer(buf)
    if buf[0] > MAX_ADDRESS:
        return _skip(buf, _BUS_STARTS), None
    if len(buf) < 2:
        return 0, None
    lengths = _bus_lengths(buf)
    if lengths is None:
        return 1, None
    for size in sorted(lengths):
        if len(buf) < size:
            return 0, None  # the shorter reading failed its CRC: wait for the longer one
        if _crc_ok(buf[:size]):
            return size, bytes(buf[:size])
    return 1, None


class Heard(NamedTuple):
    """A 55 AA frame heard on the bus, with the address it belongs to."""

    address: int
    frame_type: int
    values: dict[str, Any]


class BusListener:
    """Tells whose each 55 AA frame heard on a master's bus is, sending nothing.

    A slave's frame is followed by its FC 0x10 ACK, whose address names it (the frame has
    none); the master's own frame comes with an ACK-shaped frame from address 0
    (txubelaxu/esphome-jk-bms jk_rs485_sniffer reads the address at byte 300, after the frame).
    A frame whose ACK is lost is given to the trigger request before it. Pure: feed it frames
    from ``bus_framer`` in order.
    """

    def __init__(self) -> None:
        self._asked: int | None = None  # address of the last trigger heard
        self._pending: bytes | None = None  # a 55 AA frame waiting for its ACK

    def _flush(self) -> list[Heard]:
        frame, address = self._pending, self._asked
        self._pending = self._asked = None
        if frame is None or address is None:
            return []
        return [Heard(address, frame[4], decode_frames([frame]))]

    def feed(self, frame: bytes) -> list[Heard]:
        """Take the next frame heard; return the 55 AA frames now attributed."""
        if is_status_frame(frame):
            heard = self._flush() if self._pending is not None else []
            self._pending = frame
            return heard
        if frame[1] == WRITE and len(frame) == ACK_LEN:
            if self._pending is None:  # an ACK-shaped header before the frame it announces
                self._asked = frame[0]
                return []
            if TRIGGER_TYPES.get(read_int(frame, 2, 2)) == self._pending[4]:
                self._asked = frame[0]
            return self._flush()
        heard = self._flush()
        if frame[1] == WRITE and describe_request(frame)["request"] == "trigger":
            self._asked = frame[0]
        return heard


# --- driver -------------------------------------------------------------------------------------
def check_ack(frame: bytes, address: int, register: int, count: int) -> None:
    """Raise unless ``frame`` is the FC 0x10 ACK of this write (ModbusExceptionError if refused)."""
    if is_status_frame(frame) or len(frame) < EXCEPTION_LEN:
        raise FrameError("expected an FC 0x10 acknowledgement")
    if frame[1] == WRITE | ERROR_FLAG:
        raise ModbusExceptionError("JK-PB", WRITE, frame[2], EXCEPTIONS.get(frame[2], "unknown"))
    want = ack_frame(address, register, count)
    if frame != want:
        raise FrameError(f"expected ACK {want.hex(' ')}, got {frame.hex(' ')}")


class JkPbDriver:
    """Polls one JK-PB at DIP address 1..15 with method B; several share one bus."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 1) -> None:
        _check_address(address)
        self._link = link
        self.address = address

    async def _trigger(self, register: int) -> dict[str, Any]:
        """Send a trigger; return the decoded 55 AA frame after checking it and the ACK."""
        frames = await self._link.exchange(trigger_request(register, self.address), framer, 2)
        status = [f for f in frames if is_status_frame(f)]
        acks = [f for f in frames if not is_status_frame(f)]
        if len(status) != 1 or len(acks) != 1:
            raise FrameError("a trigger is answered by one 55 AA frame and one ACK")
        check_ack(acks[0], self.address, register, 1)  # the 55 AA frame itself has no address
        if status[0][4] != TRIGGER_TYPES[register]:
            raise FrameError(f"trigger {register:#06x} answered by frame type {status[0][4]}")
        return decode_frames([status[0], acks[0]])

    async def read(self) -> BmsReading:
        """Trigger 0x1620 and return the live data as one snapshot."""
        return to_reading(await self._trigger(TRIGGER_LIVE))

    async def read_settings(self) -> dict[str, Any]:
        """Trigger 0x161E: every setting of SETPOINTS (limits, switches, cell count, capacity)."""
        return pick(SETPOINTS, await self._trigger(TRIGGER_SETTINGS))

    async def write_setting(
        self, key: str, value: float, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write one writable setting (FC 0x10, u32 high word first); return them read back.

        ``current`` (the settings as last read) bounds the value; SettingError refuses.
        """
        check_write(SETPOINTS, current, key, value)
        field = next(f for f in SETTINGS_FIELDS if f.key == key)
        register = SETTINGS_BASE + field.pos
        raw = round(value / field.scale) - field.offset
        frames = await self._link.exchange(
            write_request(register, raw.to_bytes(4, "big", signed=field.signed), self.address),
            framer,
        )
        check_ack(frames[0], self.address, register, 2)
        return await self.read_settings()

    async def read_device_info(self) -> dict[str, Any]:
        """Trigger 0x161C: model, versions, serial number, uptime."""
        return await self._trigger(TRIGGER_INFO)

    async def read_registers(self, register: int, count: int) -> dict[str, Any]:
        """Read ``count`` words from ``register`` with FC 0x03 (method A), decoded by name."""
        frames = await self._link.exchange(read_request(register, count, self.address), framer)
        frame = frames[0]
        if is_status_frame(frame) or frame[0] != self.address:
            raise FrameError("expected an FC 0x03 answer from this address")
        if frame[1] == READ | ERROR_FLAG:
            raise ModbusExceptionError("JK-PB", READ, frame[2], EXCEPTIONS.get(frame[2], "unknown"))
        if frame[1] != READ or frame[2] != 2 * count:
            raise FrameError(f"expected {2 * count} register bytes, got {frame.hex(' ')}")
        return decode_registers(register, frame[3:-2])

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Write switch 0x1070 (charge) or 0x1074 (discharge); return the MOS state read back."""
        register = CHARGE_SWITCH if charge else DISCHARGE_SWITCH
        frames = await self._link.exchange(write_mos_request(charge, on, self.address), framer)
        check_ack(frames[0], self.address, register, 2)
        await asyncio.sleep(0)  # let the board apply it before the read-back
        state = await self._trigger(TRIGGER_LIVE)
        return bool(state["charge_mos" if charge else "discharge_mos"])

    async def set_balancer(self, on: bool) -> bool:
        """Write the balancer switch 0x1078; return the switch read back from the settings."""
        frames = await self._link.exchange(
            write_switch_request(BALANCE_SWITCH, on, self.address), framer
        )
        check_ack(frames[0], self.address, BALANCE_SWITCH, 2)
        return bool((await self.read_settings())["balance_switch"])

    async def set_soc(self, soc: float) -> float:
        """Not possible: the V1.0 register map documents no SOC write."""
        raise UnsupportedCommand("JK-PB RS485 Modbus V1.0 has no documented SOC register")


Driver = JkPbDriver

SLOW_BAUDRATE: Final = 9600  # JK app protocol "013", the 9600-baud Modbus V1.0


async def probe(link: Link, address: int, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one live-data trigger, answered by one 55 AA frame."""
    reading = await JkPbDriver(link, address).read()
    return ProbeAnswer(reading.cell_count, reading.pack_voltage, reading.soc)


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="JK-PB (RS485 Modbus)",
    manufacturer="JK BMS",
    model="JK-PB BMS (RS485 Modbus)",
    baudrates=(BAUDRATE, SLOW_BAUDRATE),
    addresses=(1, MAX_ADDRESS),  # DIP switches; 0 is the bus master
    listen_addresses=(MASTER, MAX_ADDRESS),  # a listener hears the master and its slaves
    scan=(
        ScanStep(BAUDRATE, range(1, MAX_ADDRESS + 1)),
        ScanStep(SLOW_BAUDRATE, range(1, MAX_ADDRESS + 1), alternate=True),
    ),
    layout="jk",
)

"""JK-B 0x4E57 ("NW") UART protocol on the GPS / UART1 port.

JK calls it "4G-GPS Remote module Common protocol V4.2" in the app and "Communication protocol
between monitoring platform and BMS" (JKSerial TTL V2.5) in the PDF. Frame: ``4E 57 | length u16 |
terminal u32 | command | source | type | info[n] | record u32 | 68 | 00 00 sum16``, big-endian. A
read-all answer carries identifier/value records with no length byte of their own, so the walker
needs every identifier's length (RECORD_LENGTHS).

Facts (PROTOCOLS.md section 3): the JKSerial TTL PDF (jblance/mpp-solar:docs/protocols/
JK-TTL-20201217.pdf), syssi/esphome-jk-bms:docs/protocol-design-uart-ttl-gps-port.md and
components/jk_modbus, hoylabs/OpenDTU-OnBattery:src/battery/jkbms/SerialMessage.cpp. 115200 8N1,
no bus address (one BMS per line). No I/O above ``JkUartDriver``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .checksum import sum16
from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import ChecksumError, FrameError, LengthError, LinkTimeout
from .fields import Field, decode_field, read_int
from .link import Link
from .plausible import Limits
from .reading import BmsReading
from .setpoints import Setpoint, check_write, pick

NAME: Final = "jk_uart"
# [A] the class: above the rating of every JK board, with room for peaks
LIMITS: Final = Limits(max_current=600.0)
BAUDRATE: Final = 115200
START: Final = b"\x4e\x57"  # "NW"
END: Final = 0x68
HEADER_LEN: Final = 11  # start 2 + length 2 + terminal 4 + command + source + type
TRAILER_LEN: Final = 9  # record number 4 + end marker + 00 00 + sum16
MIN_FRAME_LEN: Final = HEADER_LEN + TRAILER_LEN  # a frame with an empty information field
MAX_FRAME_LEN: Final = 512  # a 32-cell read-all answer is ~320 bytes; longer = a false start

# command byte (offset 8)
ACTIVATE: Final = 0x01  # wakes a sleeping BMS (JKSerial PDF section 4.1)
WRITE: Final = 0x02
READ_ONE: Final = 0x03  # identifier 0x00 with this command also returns every record
PASSWORD: Final = 0x05
READ_ALL: Final = 0x06
COMMANDS: Final = frozenset((ACTIVATE, WRITE, READ_ONE, PASSWORD, READ_ALL))
# frame source (offset 9)
SOURCE_BMS: Final = 0
SOURCE_BLUETOOTH: Final = 1
SOURCE_GPS: Final = 2
SOURCE_PC: Final = 3
# transport type (offset 10)
REQUEST: Final = 0
RESPONSE: Final = 1
UPLOAD: Final = 2  # "active upload": the BMS talks on its own

# identifiers
CELLS: Final = 0x79  # count byte (3 x cells) then per cell: number (1-based) + u16 mV
CURRENT: Final = 0x84
PROTOCOL_VERSION: Final = 0xC0  # comes after 0x84: decode the current once the walk is done
CHARGE_SWITCH: Final = 0xAB
DISCHARGE_SWITCH: Final = 0xAC
BALANCER_SWITCH: Final = 0x9D  # active balancer 0 off / 1 on
RESTART: Final = 0xBB  # write-only
TEMPERATURE_IDS: Final = (0x80, 0x81, 0x82)  # MOSFET, sensor 1 (box), sensor 2 (battery)

# Numeric records: the value bytes of identifier -> Field at pos 0. Units in the comments.
RECORDS: Final[dict[int, Field]] = {
    0x80: Field("mos_temperature", 0, 2),  # [°C] encoded, see decode_temperature
    0x81: Field("temperature_1", 0, 2),  # [°C] encoded; battery box / sensor 1
    0x82: Field("temperature_2", 0, 2),  # [°C] encoded; battery / sensor 2
    0x83: Field("pack_voltage", 0, 2, scale=0.01),  # [V]
    0x84: Field("current_raw", 0, 2),  # encoding depends on 0xC0, see decode_current
    0x85: Field("soc", 0, 1),  # [%]
    0x86: Field("temperature_count", 0, 1),  # battery temperature sensors
    0x87: Field("cycles", 0, 2),
    0x89: Field("total_cycle_capacity", 0, 4),  # [Ah]
    0x8A: Field("cell_count", 0, 2),
    0x8B: Field("warning_bits", 0, 2),  # see WARNING_BITS
    0x8C: Field("status_bits", 0, 2),  # bit0 charge MOS, bit1 discharge MOS, bit2 balancing
    0x8E: Field("pack_ovp", 0, 2, scale=0.01),  # [V]
    0x8F: Field("pack_uvp", 0, 2, scale=0.01),  # [V]
    0x90: Field("cell_ovp", 0, 2, scale=0.001),  # [V]
    0x91: Field("cell_ovp_recovery", 0, 2, scale=0.001),  # [V]
    0x92: Field("cell_ovp_delay", 0, 2),  # [s]
    0x93: Field("cell_uvp", 0, 2, scale=0.001),  # [V]
    0x94: Field("cell_uvp_recovery", 0, 2, scale=0.001),  # [V]
    0x95: Field("cell_uvp_delay", 0, 2),  # [s]
    0x96: Field("cell_diff_protection", 0, 2, scale=0.001),  # [V]
    0x97: Field("discharge_ocp", 0, 2),  # [A]
    0x98: Field("discharge_ocp_delay", 0, 2),  # [s]
    0x99: Field("charge_ocp", 0, 2),  # [A]
    0x9A: Field("charge_ocp_delay", 0, 2),  # [s]
    0x9B: Field("balance_start_voltage", 0, 2, scale=0.001),  # [V]
    0x9C: Field("balance_trigger_diff", 0, 2, scale=0.001),  # [V]
    0x9D: Field("balancer_enabled", 0, 1),  # 0/1 switch
    0x9E: Field("mos_otp", 0, 2),  # [°C]
    0x9F: Field("mos_otp_recovery", 0, 2),  # [°C]
    0xA0: Field("box_otp", 0, 2),  # [°C]
    0xA1: Field("box_otp_recovery", 0, 2),  # [°C]
    0xA2: Field("temp_diff_protection", 0, 2),  # [°C]
    0xA3: Field("charge_otp", 0, 2),  # [°C]
    0xA4: Field("discharge_otp", 0, 2),  # [°C]
    0xA5: Field("charge_undertemp_protection", 0, 2, signed=True),  # [°C] plain s16, no offset
    0xA6: Field("charge_undertemp_recovery", 0, 2, signed=True),  # [°C]
    0xA7: Field("discharge_undertemp_protection", 0, 2, signed=True),  # [°C]
    0xA8: Field("discharge_undertemp_recovery", 0, 2, signed=True),  # [°C]
    0xA9: Field("cell_count_setting", 0, 1),
    0xAA: Field("nominal_capacity", 0, 4),  # [Ah] "battery capacity setting"
    0xAB: Field("charge_mos_switch", 0, 1),  # 0 off / 1 on: the switch, not the MOS state
    0xAC: Field("discharge_mos_switch", 0, 1),
    0xAD: Field("current_calibration", 0, 2, scale=0.001),  # [A] from mA
    0xAE: Field("board_address", 0, 1),  # for cascading; unused on one line
    0xAF: Field("battery_type", 0, 1),  # see BATTERY_TYPES
    0xB0: Field("sleep_time", 0, 2),  # [s]
    0xB1: Field("low_capacity_alarm", 0, 1),  # [%]
    0xB3: Field("dedicated_charger", 0, 1),  # 0/1 switch
    0xB6: Field("runtime", 0, 4),  # [min] system working time
    0xB8: Field("calibration_start", 0, 1),
    0xB9: Field("actual_capacity", 0, 4),  # [Ah]
    0xBB: Field("restart", 0, 1),  # write-only; listed so the walker can step over it
    0xBC: Field("factory_reset", 0, 1),  # write-only
    0xBD: Field("upgrade_flag", 0, 1),  # write-only
    0xBE: Field("gps_off_voltage", 0, 2, scale=0.001),  # [V]
    0xBF: Field("gps_on_voltage", 0, 2, scale=0.001),  # [V]
    0xC0: Field("protocol_version", 0, 1),  # 1 = sign-magnitude current in 0x84
}
_SETTING_IDS: Final = range(0x8E, 0xBA)  # the RW identifiers of the JKSerial table (0x8E..0xB9)
_NOT_SETTINGS: Final = frozenset({0xB6})  # system working time: a counter, not a setting
# fmt: off
_UNITS: Final = {
    0x8E: "V", 0x8F: "V", 0x90: "V", 0x91: "V", 0x92: "s", 0x93: "V", 0x94: "V", 0x95: "s",
    0x96: "V", 0x97: "A", 0x98: "s", 0x99: "A", 0x9A: "s", 0x9B: "V", 0x9C: "V", 0x9E: "°C",
    0x9F: "°C", 0xA0: "°C", 0xA1: "°C", 0xA2: "°C", 0xA3: "°C", 0xA4: "°C", 0xA5: "°C",
    0xA6: "°C", 0xA7: "°C", 0xA8: "°C", 0xAA: "Ah", 0xAD: "A", 0xB0: "s", 0xB1: "%", 0xB9: "Ah",
}
# fmt: on
# what bmsgate may write (identifier: bounds); multi-byte values go big-endian as in answers
# fmt: off
_WRITABLE: Final = {
    0x97: (1.0, 600.0), 0x99: (1.0, 600.0), 0x9B: (2.0, 4.5), 0x9C: (0.003, 1.0),
    0xAA: (1.0, 2000.0),
}
# fmt: on


def _setpoint(ident: int) -> Setpoint:
    key = RECORDS[ident].key
    low, high = _WRITABLE.get(ident, (None, None))
    around = {"above": "cell_uvp", "below": "cell_ovp"} if ident == 0x9B else {}
    step = 1.0 if RECORDS[ident].scale == 1.0 else RECORDS[ident].scale
    return Setpoint(key, _UNITS.get(ident, ""), low, high, step=step, **around)


SETPOINTS: Final = tuple(
    _setpoint(i) for i in _SETTING_IDS if i in RECORDS and i not in _NOT_SETTINGS
)
SETPOINT_IDS: Final = {RECORDS[i].key: i for i in _SETTING_IDS if i in RECORDS}

# ASCII records: identifier -> (key, bytes). NUL bytes are dropped (0xBA has them mid-string).
TEXT_RECORDS: Final[dict[int, tuple[str, int]]] = {
    0xB4: ("device_id", 8),
    0xB5: ("manufacture_date", 4),  # YYMM
    0xB7: ("software_version", 15),
    0xBA: ("manufacturer_id", 24),
}
# Walked over but never reported: 0xB2 is the parameter password in clear text.
HIDDEN_RECORDS: Final[dict[int, int]] = {0xB2: 10}
RECORD_LENGTHS: Final[dict[int, int]] = (
    {ident: f.size for ident, f in RECORDS.items()}
    | {ident: size for ident, (_, size) in TEXT_RECORDS.items()}
    | HIDDEN_RECORDS
)
MAX_CELLS: Final = 32

# 0x8B bit n -> alarm code (JKSerial PDF table 5.1 note; syssi protocol-design doc);
# None = reserved, reported as jk_bit_<n> if ever set
WARNING_BITS: Final[tuple[str | None, ...]] = (
    "soc_low_warning",  # 0 low capacity
    "mos_overtemp",  # 1 MOSFET over-temperature
    "pack_overvoltage",  # 2 charge over-voltage
    "pack_undervoltage",  # 3 discharge under-voltage
    "battery_overtemp",  # 4
    "charge_overcurrent",  # 5
    "discharge_overcurrent",  # 6
    "cell_voltage_diff",  # 7
    "box_overtemp",  # 8 battery-box over-temperature
    "battery_undertemp",  # 9
    "cell_overvoltage",  # 10
    "cell_undervoltage",  # 11
    "protection_309a",  # 12
    "protection_309b",  # 13
    None,
    None,
)
BATTERY_TYPES: Final = {0: "LiFePO4", 1: "ternary", 2: "LTO"}
# names that BmsReading has a field for; everything else decoded goes to extras


# --- requests ------------------------------------------------------------------------------
def build_frame(
    command: int, info: bytes, *, source: int = SOURCE_PC, transport: int = REQUEST
) -> bytes:
    """Any 0x4E57 frame around ``info``; terminal id and record number are zero as in captures."""
    total = HEADER_LEN + len(info) + TRAILER_LEN
    if total > 0xFFFF + 2:
        raise ValueError(f"information field of {len(info)} bytes does not fit a frame")
    body = (
        START
        + (total - 2).to_bytes(2, "big")  # the length counts every byte after the start marker
        + bytes(4)
        + bytes((command, source, transport))
        + info
        + bytes(4)
        + bytes((END,))
    )
    return body + sum16(body).to_bytes(4, "big")  # 00 00 (CRC "not yet enabled") + sum16


def read_all_request(source: int = SOURCE_PC) -> bytes:
    """21-byte read-all (identifier 0x00); the form JK's example, syssi and mpp-solar send."""
    return build_frame(READ_ALL, b"\x00", source=source)


def read_one_request(identifier: int, source: int = SOURCE_PC) -> bytes:
    """Command 0x03 for one identifier (jblance/mpp-solar issue #112)."""
    return build_frame(READ_ONE, bytes((identifier,)), source=source)


def write_request(identifier: int, value: bytes, source: int = SOURCE_GPS) -> bytes:
    """Command 0x02: identifier then the value; only 1-byte switches are confirmed on the wire.

    Source GPS as in syssi's jk_modbus write_register(), the one source for writes.
    """
    return build_frame(WRITE, bytes((identifier,)) + value, source=source)


def write_mos_request(charge: bool, on: bool, source: int = SOURCE_GPS) -> bytes:
    """Switch the charge (0xAB) or discharge (0xAC) MOSFET with 0x01 on / 0x00 off."""
    return write_request(CHARGE_SWITCH if charge else DISCHARGE_SWITCH, bytes((int(on),)), source)


def password_request(source: int = SOURCE_GPS) -> bytes:
    """Command 0x05, identifier 0x00, value 0x00: what syssi sends before every write."""
    return build_frame(PASSWORD, b"\x00\x00", source=source)


def activate_request(source: int = SOURCE_PC) -> bytes:
    """Command 0x01 in the read-all form; wakes a sleeping BMS (layout not seen in a capture)."""
    return build_frame(ACTIVATE, b"\x00", source=source)


# --- framing -------------------------------------------------------------------------------
def _header_plausible(buf: bytes) -> bool:
    """Command, source and type bytes hold known values (checked as soon as they arrived)."""
    if len(buf) > 8 and buf[8] not in COMMANDS:
        return False
    if len(buf) > 9 and buf[9] > SOURCE_PC:
        return False
    return not (len(buf) > 10 and buf[10] > UPLOAD)


def _frame_ok(frame: bytes) -> bool:
    return frame[-5] == END and sum16(frame[:-4]) == read_int(frame, len(frame) - 2, 2)


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next checksum-valid 0x4E57 frame; drop bytes before it (see link.Framer)."""
    start = buf.find(START)
    if start < 0:
        keep = 1 if buf[-1:] == START[:1] else 0  # maybe the first half of a start marker
        return len(buf) - keep, None
    if start > 0:
        return start, None
    if not _header_plausible(buf):
        return 1, None  # "NW" inside junk or data: resynchronise on the next one
    if len(buf) < 4:
        return 0, None
    total = read_int(buf, 2, 2) + 2
    if not MIN_FRAME_LEN <= total <= MAX_FRAME_LEN:
        return 1, None
    if len(buf) < total:
        return 0, None
    frame = bytes(buf[:total])
    if not _frame_ok(frame):
        return 1, None
    return total, frame


def response_framer(buf: bytes) -> tuple[int, bytes | None]:
    """``framer`` that drops valid frames which are not answers (another master's requests)."""
    used, frame = framer(buf)
    if frame is not None and frame[10] != RESPONSE:
        return used, None
    return used, frame


def check_frame(frame: bytes) -> None:
    """Raise a FrameError subclass unless ``frame`` is exactly one well-formed frame."""
    if len(frame) < MIN_FRAME_LEN:
        raise LengthError(f"JK frame needs at least {MIN_FRAME_LEN} bytes, got {len(frame)}")
    if frame[:2] != START:
        raise FrameError(f"JK frame must start with 4E 57, got {frame[:2].hex(' ')}")
    total = read_int(frame, 2, 2) + 2
    if total != len(frame):
        raise LengthError(f"JK length field says {total} bytes, frame has {len(frame)}")
    if frame[-5] != END:
        raise FrameError(f"JK end marker must be 68, got {frame[-5]:02X}")
    expected, got = sum16(frame[:-4]), read_int(frame, len(frame) - 2, 2)
    if expected != got:
        raise ChecksumError(f"JK checksum {got:04X}, expected {expected:04X}")


def split_frames(data: bytes) -> list[bytes]:
    """Cut a byte string into frames by their length fields, each checked."""
    if not data:
        raise LengthError("no JK frame in an empty answer")
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        total = read_int(data, pos + 2, 2) + 2 if len(data) >= pos + 4 else len(data) - pos
        frame = data[pos : pos + total]
        check_frame(frame)
        frames.append(frame)
        pos += total
    return frames


def frame_header(frame: bytes) -> dict[str, int]:
    """Command, source, type and first information byte of a checked frame."""
    check_frame(frame)
    info = frame[HEADER_LEN:-TRAILER_LEN]
    return {
        "command": frame[8],
        "frame_source": frame[9],
        "transport_type": frame[10],
        "length_field": read_int(frame, 2, 2),
        "terminal": read_int(frame, 4, 4),
        "identifier": info[0] if info else -1,
    }


# --- records -------------------------------------------------------------------------------
def walk_records(info: bytes) -> tuple[dict[int, bytes], int | None]:
    """Split an information field into identifier -> value bytes.

    Returns the records and the first unknown identifier (None if all were known). An unknown
    identifier ends the walk: with no length byte its value cannot be stepped over, so the
    records before it are kept and the rest is left undecoded (PROTOCOLS.md 6.4). A known record
    cut short by the end of the field is a malformed frame and raises LengthError.
    """
    records: dict[int, bytes] = {}
    pos = 0
    while pos < len(info):
        ident = info[pos]
        if ident == CELLS:
            if pos + 1 >= len(info):
                raise LengthError("0x79 record has no count byte")
            size = 1 + info[pos + 1]
            if info[pos + 1] % 3:
                raise LengthError(f"0x79 count {info[pos + 1]} is not a multiple of 3")
        elif ident in RECORD_LENGTHS:
            size = RECORD_LENGTHS[ident]
        else:
            return records, ident
        if pos + 1 + size > len(info):
            raise LengthError(f"record {ident:02X} needs {size} bytes, {len(info) - pos - 1} left")
        records.setdefault(ident, info[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return records, None


def decode_temperature(raw: int) -> float:
    """0x80-0x82: 0..100 = °C, above 100 negative (101 = -1 °C, 140 = -40 °C)."""
    return float(raw if raw <= 100 else 100 - raw)


def decode_current(raw: int, protocol_version: int | None) -> float:
    """0x84 [A], positive = charging.

    Protocol version 1: bit 15 set = charging, magnitude in bits 0-14 [10 mA]. Otherwise the
    2020 encoding: (10000 - raw) x 0.01 A ("(10000-11000)*0.01 = -10.00 A (discharge)" in the
    vendor's table, syssi protocol-design doc).
    """
    if protocol_version == 1:
        magnitude = (raw & 0x7FFF) / 100
        return magnitude if raw & 0x8000 or not magnitude else -magnitude
    return round((10000 - raw) / 100, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def decode_cells(value: bytes) -> list[float]:
    """0x79 value (count byte first): cell voltages [V] in cell-number order."""
    by_number = {value[i]: read_int(value, i + 1, 2) / 1000 for i in range(1, len(value), 3)}
    return [by_number[n] for n in sorted(by_number)]


def decode_warnings(bits: int) -> list[str]:
    """Alarm codes (bmsgate_bms.alarms) for the 0x8B warning bitmap."""
    return [WARNING_BITS[n] or f"jk_bit_{n}" for n in range(len(WARNING_BITS)) if bits >> n & 1]


def _text(value: bytes) -> str:
    return value.replace(b"\x00", b"").decode("ascii", "replace").strip()


def decode_records(
    records: dict[int, bytes], protocol_version: int | None = None
) -> dict[str, Any]:
    """Pack-state names plus extras from walked records (a whole read-all, or single reads)."""
    out: dict[str, Any] = {}
    for ident, value in records.items():
        if ident == CELLS:
            out["cell_voltages"] = decode_cells(value)
        elif ident in RECORDS:
            field = RECORDS[ident]
            number = decode_field(field, value)
            out[field.key] = int(number) if field.scale == 1.0 else number  # counts stay ints
        elif ident in TEXT_RECORDS:
            out[TEXT_RECORDS[ident][0]] = _text(value)
    for ident in TEMPERATURE_IDS:
        key = RECORDS[ident].key
        if key in out:
            out[key] = decode_temperature(int(out[key]))
    temps = [out.pop(k) for k in ("temperature_1", "temperature_2") if k in out]
    if temps:
        out["temperatures"] = temps
    if PROTOCOL_VERSION in records or protocol_version is None:
        protocol_version = int(out.get("protocol_version", 0))  # vendor default 0x00 if absent
    out["protocol_version"] = protocol_version
    if "current_raw" in out:
        out["current"] = decode_current(int(out.pop("current_raw")), protocol_version)
    if "cell_voltages" in out:
        out["cell_count"] = int(out.get("cell_count", len(out["cell_voltages"])))
    if "status_bits" in out:
        status = int(out["status_bits"])
        out["charge_mos"] = bool(status & 1)
        out["discharge_mos"] = bool(status & 2)
        out["balancing"] = bool(status & 4)
        # bit 3 "battery online (1 = normal)" is 0 in every capture of a working pack: not reported
    if "warning_bits" in out:
        out["alarms"] = decode_warnings(int(out["warning_bits"]))
    for key in (
        "charge_mos_switch",
        "discharge_mos_switch",
        "balancer_enabled",
        "dedicated_charger",
    ):
        if key in out:
            out[key] = bool(out[key])
    if "battery_type" in out:
        out["battery_type"] = BATTERY_TYPES.get(int(out["battery_type"]), str(out["battery_type"]))
    if "soc" in out and out.get("nominal_capacity"):
        # no remaining-capacity record exists: derived from SOC x the capacity setting (0xAA)
        out["remaining_capacity"] = round(out["soc"] * out["nominal_capacity"] / 100, 3)
    return out


def decode_frames(frames: Iterable[bytes], protocol_version: int | None = None) -> dict[str, Any]:
    """Decode checked response frames; records of several frames (single reads) are merged."""
    records: dict[int, bytes] = {}
    extra: dict[str, Any] = {}
    for frame in frames:
        header = frame_header(frame)
        info = frame[HEADER_LEN:-TRAILER_LEN]
        extra["command"] = header["command"]
        if header["command"] in (READ_ALL, READ_ONE) and header["transport_type"] != REQUEST:
            found, unknown = walk_records(info)
            for ident, value in found.items():
                records.setdefault(ident, value)
            if unknown is not None:
                extra["unknown_identifier"] = unknown  # the walk stopped here
        else:  # requests, write/password/activation answers: no record list to walk
            extra["identifier"] = header["identifier"]
            extra["info_hex"] = info.hex()
    return decode_records(records, protocol_version) | extra if records else extra


COMMAND_NAMES: Final = {
    ACTIVATE: "activate",
    WRITE: "write",
    READ_ONE: "read_one",
    PASSWORD: "password",
    READ_ALL: "read_all",
}


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode a host's request frame: the command, who sends it, the identifier and value."""
    frames = split_frames(data)
    if len(frames) != 1 or frames[0][10] != REQUEST:
        raise FrameError("not one JK request frame (transport type byte 10 must be 00)")
    head = frame_header(frames[0])
    info = frames[0][HEADER_LEN:-TRAILER_LEN]
    out: dict[str, Any] = {
        "request": COMMAND_NAMES.get(head["command"], f"cmd_{head['command']:02x}"),
        "frame_source": head["frame_source"],
        "identifier": head["identifier"],
    }
    if head["command"] == WRITE and len(info) > 1:
        out["value"] = read_int(info, 1, len(info) - 1)
    return out


def decode_hex(data: bytes, *, protocol_version: int | None = None, **_: Any) -> dict[str, Any]:
    """Decode one answer (one or more frames) for ``bmsgate decode``.

    ``protocol_version`` decodes a single 0x84 read whose frame does not carry 0xC0.
    """
    frames = split_frames(data)
    for frame in frames:
        if frame[10] == REQUEST:
            name = COMMAND_NAMES.get(frame[8], f"{frame[8]:02X}")
            raise FrameError(f"a request ({name}, transport type 00), not an answer")
    return decode_frames(frames, protocol_version)


def to_reading(parts: dict[str, Any]) -> BmsReading:
    """Assemble a snapshot from a decoded read-all answer."""
    return BmsReading.from_parts(parts)


class JkUartDriver:
    """Polls the one JK-B on a UART/RS485 line with read-all; switches MOSFETs with 0xAB/0xAC."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE
    frame_gap: float = 0.15  # [s] JK wants frames >= 100 ms apart; syssi waits ~150 ms

    def __init__(self, link: Link, address: int = 1) -> None:
        if address != 1:
            raise ValueError("JK 0x4E57 has no bus address: one BMS per line, address 1")
        self._link = link
        self.address = address

    async def _ask(self, request: bytes, commands: tuple[int, ...]) -> bytes:
        frame = (await self._link.exchange(request, response_framer))[0]
        if frame[8] not in commands:
            raise FrameError(f"expected an answer to command {commands[0]:02X}, got {frame[8]:02X}")
        return frame

    async def _send(self, request: bytes) -> None:
        """Send a frame whose answer is not needed and may not come: the read-back is the judge."""
        with contextlib.suppress(LinkTimeout):
            await self._link.exchange(request, response_framer)
        await asyncio.sleep(self.frame_gap)

    async def _read_all(self) -> dict[str, Any]:
        try:
            frame = await self._ask(read_all_request(), (READ_ALL, READ_ONE))
        except LinkTimeout:
            # a sleeping BMS answers nothing until it got an activation frame (JKSerial PDF 4.1)
            await self._send(activate_request())
            frame = await self._ask(read_all_request(), (READ_ALL, READ_ONE))
        return decode_frames([frame])

    async def read(self) -> BmsReading:
        """One read-all request, one snapshot."""
        return to_reading(await self._read_all())

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Write 0xAB/0xAC after the password frame; return the switch read back.

        The switch (0xAB/0xAC) is returned rather than the MOS state bit of 0x8C: a protection
        (a cold pack, say) may hold the MOSFET open while the switch is on (vector
        ``jk_resp_16s_b1a24s15p_opendtu_3``). The state bit is the fallback.
        """
        await self._send(password_request())
        await self._send(write_mos_request(charge, on))
        parts = await self._read_all()
        key = "charge_mos" if charge else "discharge_mos"
        return bool(parts.get(f"{key}_switch", parts.get(key)))

    async def read_settings(self) -> dict[str, Any]:
        """The settings records of one read-all answer (0x8E..0xB9), by SETPOINTS key."""
        return pick(SETPOINTS, await self._read_all())

    async def write_setting(
        self, key: str, value: float, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write one writable record after the password frame; return the settings read back.

        Multi-byte values are sent big-endian in the record's own width, as answers carry them
        (PROTOCOLS.md 3.4: presumed, confirmed on the wire only for 1-byte switches).
        """
        check_write(SETPOINTS, current, key, value)
        ident = SETPOINT_IDS[key]
        field = RECORDS[ident]
        raw = round(value / field.scale) - field.offset
        await self._send(password_request())
        await self._send(write_request(ident, raw.to_bytes(field.size, "big")))
        return await self.read_settings()

    async def set_balancer(self, on: bool) -> bool:
        """Write the active balancer switch 0x9D after the password frame; return it read back."""
        await self._send(password_request())
        await self._send(write_request(BALANCER_SWITCH, bytes((int(on),))))
        return bool((await self._read_all())["balancer_enabled"])

    async def reset(self) -> None:
        """Restart the BMS: write 0xBB (JKSerial table: "restart", write-only)."""
        await self._send(password_request())
        await self._send(write_request(RESTART, b"\x01"))

    async def set_soc(self, soc: float) -> float:
        """Refuse: the 0x4E57 protocol has no SOC write."""
        raise UnsupportedCommand("JK 0x4E57 has no command to set the SOC")


Driver = JkUartDriver


async def probe(link: Link, address: int = 1, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one read-all (no bus address: one BMS per line)."""
    frames = await link.exchange(read_all_request(), response_framer)
    parts = decode_frames(frames[:1])
    cells = parts.get("cell_count", len(parts.get("cell_voltages", [])))
    return ProbeAnswer(int(cells), parts.get("pack_voltage"), parts.get("soc"))


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="JK (UART, 0x4E57)",
    manufacturer="JK BMS",
    model="JK-B BMS (UART protocol)",
    baudrates=(BAUDRATE,),
    addresses=(1, 1),  # one BMS per line
    scan=(ScanStep(BAUDRATE, range(1, 2)),),
    layout="jk",
)

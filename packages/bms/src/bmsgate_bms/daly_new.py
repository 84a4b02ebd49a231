"""DALY "new" protocol: Modbus-RTU-like register reads (FC 0x03) and single writes (FC 0x06).

Facts (PROTOCOLS.md section 2; DALY's xlsx files in syssi/esphome-daly-bms:docs, patagonaa/
esphome-daly-hkms-bms, esphome/esphome daly_hkms_bms, syssi's protocol-register-map.md): 9600 8N1,
registers are u16 big-endian, CRC-16/Modbus sent low byte first. Two variants with their own
register maps:

* ``"d2"``: requests and answers use address 0xD2 whatever the board (DALY dongles and app);
  one BMS per line. 32 cell slots.
* ``"81"``: board n (1..16) is asked at 0x80 + n and answers from 0x50 + n (H/K/M/S boards, the
  "100 Balance" active-balance boards, DALY's BMSTool). 48 cell slots.

A response carries neither its register range nor its variant's map name, so ``decode_hex`` is
told the first register; the variant follows from the answer's address. No I/O above
``DalyNewDriver``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple

from .alarms import ALARMS
from .checksum import crc16_modbus
from .daly_classic import decode_failures
from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import ChecksumError, FrameError, LengthError, LinkTimeout, ModbusExceptionError
from .fields import Field, decode_field, read_int
from .link import Framer, Link
from .plausible import Limits
from .polling import FAST, SLOW, SlowReads, Tier
from .reading import BmsReading, Direction, signed_current
from .setpoints import Setpoint, check_write, pick

Variant = Literal["d2", "81"]

NAME: Final = "daly_new"
# [A] the class: the bound of the classic DALY protocol
LIMITS: Final = Limits(max_current=1000.0)
BAUDRATE: Final = 9600
D2_ADDRESS: Final = 0xD2  # request and response address of the D2 variant
REQUEST_BASE: Final = 0x80  # 0x81 variant: request address = 0x80 + board
RESPONSE_BASE: Final = 0x50  # 0x81 variant: response address = 0x50 + board
MAX_BOARDS: Final = 16
READ: Final = 0x03
WRITE: Final = 0x06
EXCEPTION: Final = 0x80  # set in the function code of a Modbus exception answer
MAX_REGISTERS: Final = 125  # Modbus limit for one read: the byte count must fit one byte
REQUEST_LEN: Final = 8
TEMP_OFFSET: Final = -40  # [°C] raw - 40
CURRENT_OFFSET: Final = -30000  # raw 30000 = 0 A
NOT_AVAILABLE: Final = (0x00FF, 0xFFFF)  # temperature raw values meaning "no sensor"
DIRECTIONS: Final[dict[int, Direction]] = {0: "idle", 1: "charging", 2: "discharging"}

RESPONSE_ADDRESSES: Final = frozenset(
    (D2_ADDRESS, *range(RESPONSE_BASE + 1, RESPONSE_BASE + MAX_BOARDS + 1))
)
REQUEST_ADDRESSES: Final = frozenset(
    (D2_ADDRESS, *range(REQUEST_BASE + 1, REQUEST_BASE + MAX_BOARDS + 1))
)


def _r(key: str, register: int, *, offset: int = 0, scale: float = 1.0) -> Field:
    """Describe a one-register field; ``pos`` is the byte offset from register 0 (2 x register)."""
    return Field(key, 2 * register, 2, offset=offset, scale=scale)


class TextField(NamedTuple):
    """An ASCII string over ``count`` registers, NUL padded."""

    key: str
    register: int
    size: int  # registers


class RegisterMap(NamedTuple):
    """Where one variant keeps each value. Blocks are (first register, number of registers)."""

    variant: Variant
    cells: tuple[int, int]  # [mV] one register per cell
    temperatures: tuple[int, int]  # [°C] raw - 40
    fields: tuple[Field, ...]
    balancing_bits: tuple[int, int]  # bit j of register i = cell 16 i + j + 1
    faults: tuple[int, int]
    texts: tuple[TextField, ...]
    settings: int  # first settings register (rated capacity)
    mos_state: int  # charge MOS state, discharge MOS state follows
    mos_switch: tuple[int, int]  # write 0/1: charge, discharge
    soc_setting: int | None  # write SOC x 10


# Settings in the same order on both variants (D2 from 0x80, 0x81 variant from 0x100; syssi's
# protocol-register-map.md and protocol-dl81-implementation-plan.md): (key, index, offset, scale)
_SETTINGS: Final = (
    ("nominal_capacity", 0x00, 0, 0.1),  # [Ah]
    ("cell_reference_voltage", 0x01, 0, 0.001),  # [V]
    ("acquisition_boards", 0x02, 0, 1.0),
    ("board1_cells", 0x03, 0, 1.0),
    ("board2_cells", 0x04, 0, 1.0),
    ("board3_cells", 0x05, 0, 1.0),
    ("board1_sensors", 0x06, 0, 1.0),
    ("board2_sensors", 0x07, 0, 1.0),
    ("board3_sensors", 0x08, 0, 1.0),
    ("battery_type", 0x09, 0, 1.0),  # 0 LiFePO4, 1 Li-ion (NMC), 2 LTO
    ("sleep_time", 0x0A, 0, 1.0),  # [s]
    ("cell_overvoltage_l1", 0x0B, 0, 0.001),  # [V] level 1 = warning, level 2 = protection
    ("cell_overvoltage_l2", 0x0C, 0, 0.001),
    ("cell_undervoltage_l1", 0x0D, 0, 0.001),
    ("cell_undervoltage_l2", 0x0E, 0, 0.001),
    ("pack_overvoltage_l1", 0x0F, 0, 0.1),  # [V]
    ("pack_overvoltage_l2", 0x10, 0, 0.1),
    ("pack_undervoltage_l1", 0x11, 0, 0.1),
    ("pack_undervoltage_l2", 0x12, 0, 0.1),
    # [A]; the sign of these thresholds is inconsistent on real captures: do not rely on it
    ("charge_overcurrent_l1", 0x13, CURRENT_OFFSET, 0.1),
    ("charge_overcurrent_l2", 0x14, CURRENT_OFFSET, 0.1),
    ("discharge_overcurrent_l1", 0x15, CURRENT_OFFSET, 0.1),
    ("discharge_overcurrent_l2", 0x16, CURRENT_OFFSET, 0.1),
    ("charge_overtemp_l1", 0x17, TEMP_OFFSET, 1.0),  # [°C]
    ("charge_overtemp_l2", 0x18, TEMP_OFFSET, 1.0),
    ("charge_undertemp_l1", 0x19, TEMP_OFFSET, 1.0),
    ("charge_undertemp_l2", 0x1A, TEMP_OFFSET, 1.0),
    ("discharge_overtemp_l1", 0x1B, TEMP_OFFSET, 1.0),
    ("discharge_overtemp_l2", 0x1C, TEMP_OFFSET, 1.0),
    ("discharge_undertemp_l1", 0x1D, TEMP_OFFSET, 1.0),
    ("discharge_undertemp_l2", 0x1E, TEMP_OFFSET, 1.0),
)


_SETTING_UNITS: Final = {0.1: "V", 0.001: "V"}  # by scale, for the voltage rows of _SETTINGS


def _unit(key: str, scale: float) -> str:
    if "current" in key:
        return "A"
    if "temp" in key:
        return "°C"
    if key == "nominal_capacity":
        return "Ah"
    if key == "sleep_time":
        return "s"
    return _SETTING_UNITS.get(scale, "")


# every documented setting; on D2 bmsgate may write the capacity and the balancing thresholds
# (0x80, 0xA3, 0xA4: PROTOCOLS.md 2.2); the 0x81 variant's write registers are not documented
_UVP, _OVP = "cell_undervoltage_l2", "cell_overvoltage_l2"  # the protection levels
_READ_ONLY: Final = tuple(Setpoint(k, _unit(k, sc)) for k, _, _, sc in _SETTINGS)
SETPOINTS: Final[dict[Variant, tuple[Setpoint, ...]]] = {
    "d2": (
        Setpoint("nominal_capacity", "Ah", 1.0, 2000.0, step=0.1),
        *_READ_ONLY[1:],
        Setpoint("balance_start_voltage", "V", 2.0, 4.5, above=_UVP, below=_OVP),
        Setpoint("balance_start_diff", "V", 0.003, 1.0),
    ),
    "81": _READ_ONLY,
}
SETTINGS_SPAN: Final = {"d2": 0xA5 - 0x80, "81": len(_SETTINGS)}  # registers read from .settings


def _settings(base: int) -> tuple[Field, ...]:
    return tuple(_r(k, base + i, offset=o, scale=s) for k, i, o, s in _SETTINGS)


D2_FIELDS: Final = (
    _r("pack_voltage", 0x28, scale=0.1),  # [V]
    _r("current", 0x29, offset=CURRENT_OFFSET, scale=0.1),  # [A] sign: see _apply_direction
    _r("soc", 0x2A, scale=0.1),  # [%]
    _r("max_cell_voltage", 0x2B, scale=0.001),  # [V]
    _r("min_cell_voltage", 0x2C, scale=0.001),  # [V]
    _r("max_temperature", 0x2D, offset=TEMP_OFFSET),  # [°C]
    _r("min_temperature", 0x2E, offset=TEMP_OFFSET),  # [°C]
    _r("state", 0x2F),  # 0 idle, 1 charging, 2 discharging
    _r("remaining_capacity", 0x30, scale=0.1),  # [Ah]
    _r("cell_count", 0x31),
    _r("temperature_count", 0x32),
    _r("cycles", 0x33),
    _r("balancer_state", 0x34),  # 0 off; 1 on/passive, 2 active (syssi)
    _r("charge_mos", 0x35),
    _r("discharge_mos", 0x36),
    _r("average_cell_voltage", 0x37, scale=0.001),  # [V]
    _r("cell_voltage_diff", 0x38, scale=0.001),  # [V]
    _r("power", 0x39),  # [W] unsigned; signed from the state register
    _r("balance_current", 0x40, offset=CURRENT_OFFSET, scale=0.001),  # [A] 80-register read
    _r("mos_temperature", 0x42, offset=TEMP_OFFSET),  # [°C]
    _r("board_temperature", 0x43, offset=TEMP_OFFSET),  # [°C]
    *_settings(0x80),
    _r("cell_voltage_diff_l1", 0x9F, scale=0.001),  # [V]
    _r("cell_voltage_diff_l2", 0xA0, scale=0.001),
    _r("temp_diff_l1", 0xA1),  # [°C]
    _r("temp_diff_l2", 0xA2),
    _r("balance_start_voltage", 0xA3, scale=0.001),  # [V]
    _r("balance_start_diff", 0xA4, scale=0.001),  # [V]
    _r("charge_mos_switch", 0xA5),
    _r("discharge_mos_switch", 0xA6),
    _r("soc_setting", 0xA7, scale=0.1),  # [%]
    _r("mos_overtemp_alarm", 0xA8, offset=TEMP_OFFSET),  # [°C]
    _r("balancer_switch", 0xCF),  # 0x0001 = on here, 0xFFFF on some 0x81 firmware
)

P81_FIELDS: Final = (
    _r("pack_voltage", 0x38, scale=0.1),  # [V]
    _r("current", 0x39, offset=CURRENT_OFFSET, scale=0.1),  # [A] sign: see _apply_direction
    _r("soc", 0x3A, scale=0.1),  # [%]
    _r("bms_life", 0x3B),  # patagonaa calls it SOH, but it counts between reads (syssi capture)
    _r("cell_count", 0x3C),
    _r("temperature_count", 0x3D),
    _r("max_cell_voltage", 0x3E, scale=0.001),  # [V]
    _r("max_cell", 0x3F),  # 1-based
    _r("min_cell_voltage", 0x40, scale=0.001),  # [V]
    _r("min_cell", 0x41),
    _r("cell_voltage_diff", 0x42, scale=0.001),  # [V]
    _r("max_temperature", 0x43, offset=TEMP_OFFSET),  # [°C]
    _r("max_temperature_sensor", 0x44),
    _r("min_temperature", 0x45, offset=TEMP_OFFSET),  # [°C]
    _r("min_temperature_sensor", 0x46),
    _r("temperature_diff", 0x47),  # [°C]
    _r("state", 0x48),  # 0 idle, 1 charging, 2 discharging
    _r("charger_connected", 0x49),  # 0x49/0x4A: syssi protocol-dl81-implementation-plan.md
    _r("load_connected", 0x4A),
    _r("remaining_capacity", 0x4B, scale=0.1),  # [Ah]
    _r("cycles", 0x4C),
    _r("balancer_state", 0x4D),  # non-zero = balancing
    _r("balance_current", 0x4E, offset=CURRENT_OFFSET, scale=0.001),  # [A]
    _r("charge_mos", 0x52),
    _r("discharge_mos", 0x53),
    _r("precharge_mos", 0x54),
    _r("heating_mos", 0x55),
    _r("fan_mos", 0x56),
    _r("average_cell_voltage", 0x57, scale=0.001),  # [V]
    _r("power", 0x58),  # [W] unsigned; signed from 0x48, which the same read must cover
    _r("energy", 0x59),  # [Wh]
    _r("mos_temperature", 0x5A, offset=TEMP_OFFSET),  # [°C]
    _r("board_temperature", 0x5B, offset=TEMP_OFFSET),  # [°C]
    _r("heating_temperature", 0x5C, offset=TEMP_OFFSET),  # [°C]
    _r("remaining_mileage", 0x5E, scale=0.1),  # [km]
    _r("remaining_charge_time", 0x64),  # [min]
    _r("balancer_switch", 0xCF),  # same register as D2 (syssi); reads 0xFFFF for on
    *_settings(0x100),
    _r("charge_mos_switch", 0x121),  # patagonaa; not 0xA5 + 0x80 as the settings shift suggests
    _r("discharge_mos_switch", 0x122),
)

# fmt: off
BOOLEANS: Final = frozenset(
    ("charge_mos", "discharge_mos", "charge_mos_switch", "discharge_mos_switch", "precharge_mos",
     "heating_mos", "fan_mos", "charger_connected", "load_connected")
)
# fmt: on

MAPS: Final[dict[Variant, RegisterMap]] = {
    "d2": RegisterMap(
        variant="d2",
        cells=(0x00, 32),
        temperatures=(0x20, 8),
        fields=D2_FIELDS,
        balancing_bits=(0x3E, 2),
        faults=(0x3A, 4),
        texts=(
            TextField("software_version", 0xA9, 8),
            TextField("hardware_version", 0xB1, 8),
            TextField("machine_code", 0xB9, 16),
            TextField("password", 0xC9, 3),
        ),
        settings=0x80,
        mos_state=0x35,
        mos_switch=(0xA5, 0xA6),
        soc_setting=0xA7,
    ),
    "81": RegisterMap(
        variant="81",
        cells=(0x00, 48),
        temperatures=(0x30, 8),
        fields=P81_FIELDS,
        balancing_bits=(0x4F, 3),
        faults=(0x6D, 7),
        texts=(),  # the version block (0x178, 74 registers) has no documented layout
        settings=0x100,
        mos_state=0x52,
        mos_switch=(0x121, 0x122),
        soc_setting=None,  # 0x127 is only inferred from the settings shift; see the docs
    ),
}

# 0x81 "type 2" fault registers 0x6D..0x73 = fault code bytes 0..13; byte 2k is the LOW byte of
# register 0x6D + k (patagonaa's DalyHkmsStatus overlay on a little-endian CPU, and the register
# list in patagonaa/esphome-daly-hkms-bms issue #2). 3-bit fields hold an alarm level 0..7.
# fmt: off
TYPE2_LEVELS: Final = (  # (code byte, lowest bit, alarm code)
    (0, 0, "cell_overvoltage"), (0, 3, "cell_undervoltage"),
    (1, 0, "cell_voltage_diff"), (1, 3, "charge_overtemp"),
    (2, 0, "charge_undertemp"), (2, 3, "discharge_overtemp"),
    (3, 0, "discharge_undertemp"), (3, 3, "temp_diff"),
    (4, 0, "pack_overvoltage"), (4, 3, "pack_undervoltage"),
    (5, 0, "charge_overcurrent"), (5, 3, "discharge_overcurrent"),
    (6, 0, "soc_low"), (6, 3, "soh_low"),
    (7, 0, "mos_overtemp"), (7, 3, "thermal_runaway"),
)
# fmt: on
# single fault bits: (code byte, bit) -> alarm code; None = no stable code (daly_t2_<byte>_<bit>)
TYPE2_FAULT_BITS: Final[dict[tuple[int, int], str | None]] = {
    (0, 7): None,  # smart charger connection failed
    (1, 7): None,  # smart discharger connection failed
    (2, 6): "charge_mos_overtemp",
    (2, 7): "charge_mos_temp_sensor_fault",
    (3, 6): "discharge_mos_overtemp",
    (3, 7): "discharge_mos_temp_sensor_fault",
    (4, 6): "short_circuit_fault",
    (5, 6): None,  # "charge undervoltage" error
    (5, 7): None,  # "discharge overvoltage" error
    (6, 7): "parallel_module_fault",
    (11, 0): "afe_fault",
    (11, 1): "internal_comm_fault",  # AFE communication
    (11, 2): "cell_sampling_fault",
    (11, 3): None,  # voltage detection
    (11, 4): None,  # voltage detection wire disconnected
    (11, 5): "pack_voltage_sensor_fault",
    (11, 6): "current_sensor_fault",
    (11, 7): "temp_sensor_fault",
    (12, 0): None,  # temperature sensor disconnected
    (12, 1): "eeprom_fault",
    (12, 2): None,  # flash
    (12, 3): "rtc_fault",
    (12, 4): "charge_mos_fault",
    (12, 5): "discharge_mos_fault",
    (12, 6): None,  # precharge MOSFET
    (12, 7): "precharge_fault",
    (13, 7): None,  # heating
}
# bits that report a state, not a fault: they go to ``status_flags``
TYPE2_STATUS_BITS: Final[dict[tuple[int, int], str]] = {
    (0, 6): "smart_charger_connected",
    (1, 6): "smart_discharger_connected",
    (4, 7): "firmware_upgrade",
    (6, 6): "parallel_comm",
    (13, 0): "charge_mos_off_by_bus",
    (13, 1): "discharge_mos_off_by_bus",
    (13, 2): "charge_mos_off_by_switch",
    (13, 3): "discharge_mos_off_by_switch",
    (13, 4): "fan_on",
    (13, 5): "heating_on",
    (13, 6): "current_limit_on",
}
_TYPE2_KNOWN: Final = frozenset(
    {(byte, low + i) for byte, low, _ in TYPE2_LEVELS for i in range(3)}
    | TYPE2_FAULT_BITS.keys()
    | TYPE2_STATUS_BITS.keys()
)


# --- requests ------------------------------------------------------------------------------


def _check_board(variant: Variant, board: int) -> None:
    if variant == "d2":
        if board != 1:
            raise ValueError("the D2 variant has no bus address: every board answers 0xD2")
    elif not 1 <= board <= MAX_BOARDS:
        raise ValueError(f"DALY board number must be 1..{MAX_BOARDS}, not {board}")


def request_address(variant: Variant = "81", board: int = 1) -> int:
    """Address a request to ``board`` is sent to."""
    _check_board(variant, board)
    return D2_ADDRESS if variant == "d2" else REQUEST_BASE + board


def response_address(variant: Variant = "81", board: int = 1) -> int:
    """Address ``board`` answers from (not the request's address on the 0x81 variant)."""
    _check_board(variant, board)
    return D2_ADDRESS if variant == "d2" else RESPONSE_BASE + board


def with_crc(body: bytes) -> bytes:
    """Append the CRC-16/Modbus, low byte first."""
    return body + crc16_modbus(body).to_bytes(2, "little")


def read_request(start: int, count: int, *, variant: Variant = "81", board: int = 1) -> bytes:
    """FC 0x03: read ``count`` registers from ``start``."""
    if not 0 <= start <= 0xFFFF or not 1 <= count <= MAX_REGISTERS or start + count > 0x10000:
        raise ValueError(f"cannot read {count} registers from {start:#x}")
    address = request_address(variant, board)
    return with_crc(bytes((address, READ)) + start.to_bytes(2, "big") + count.to_bytes(2, "big"))


def write_request(register: int, value: int, *, variant: Variant = "81", board: int = 1) -> bytes:
    """FC 0x06: write one register; the board echoes the request (from its response address)."""
    if not 0 <= register <= 0xFFFF or not 0 <= value <= 0xFFFF:
        raise ValueError(f"register {register:#x} / value {value:#x} out of range")
    address = request_address(variant, board)
    return with_crc(
        bytes((address, WRITE)) + register.to_bytes(2, "big") + value.to_bytes(2, "big")
    )


def write_mos_request(charge: bool, on: bool, *, variant: Variant = "81", board: int = 1) -> bytes:
    """Switch the charge or discharge MOSFET: 1 on, 0 off."""
    register = MAPS[variant].mos_switch[0 if charge else 1]
    return write_request(register, int(on), variant=variant, board=board)


def set_soc_request(soc: float, *, variant: Variant = "d2", board: int = 1) -> bytes:
    """Write the SOC x 10 (D2 register 0xA7); the 0x81 variant has no documented register."""
    register = MAPS[variant].soc_setting
    if register is None:
        raise UnsupportedCommand("the 0x81 variant has no documented SOC register")
    if not 0 <= soc <= 100:
        raise ValueError(f"SOC must be 0..100 %, not {soc}")
    return write_request(register, round(soc * 10), variant=variant, board=board)


# --- framing -------------------------------------------------------------------------------


def crc_ok(frame: bytes) -> bool:
    """Whether the last two bytes are the CRC-16/Modbus (low byte first) of the rest."""
    return len(frame) > 2 and crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _length_at(buf: bytes, pos: int) -> int:
    """Length of the answer whose header starts at ``pos``: 0 = need more bytes, -1 = no header."""
    if len(buf) - pos < 2:
        return 0
    function = buf[pos + 1]
    if function == WRITE:
        return 8  # the echo of the request
    if function in (READ | EXCEPTION, WRITE | EXCEPTION):
        return 5  # address, function, exception code, CRC
    if function != READ:
        return -1
    if len(buf) - pos < 3:
        return 0
    count = buf[pos + 2]
    return 5 + count if count and not count % 2 else -1


def _frame_at(buf: bytes, pos: int, addresses: frozenset[int]) -> int:
    """Length of a complete CRC-valid answer at ``pos``; 0 = maybe, need more bytes; -1 = none."""
    if buf[pos] not in addresses:
        return -1
    length = _length_at(buf, pos)
    if length <= 0:
        return length
    if len(buf) - pos < length:
        return 0
    return length if crc_ok(buf[pos : pos + length]) else -1


def _find(buf: bytes, addresses: frozenset[int]) -> tuple[int, bytes | None]:
    if not buf:
        return 0, None
    length = _frame_at(buf, 0, addresses)
    if length > 0:
        return length, bytes(buf[:length])
    if length < 0:  # junk: drop it up to the next byte that may start an answer
        return next((i for i in range(1, len(buf)) if buf[i] in addresses), len(buf)), None
    # the start may be a header still arriving, or junk that looks like one (say "D2 03 F0"):
    # a complete answer further on proves the latter
    for pos in range(1, len(buf)):
        if buf[pos] in addresses and _frame_at(buf, pos, addresses) > 0:
            return pos, None
    return 0, None


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next CRC-valid answer of either variant (see link.Framer)."""
    return _find(buf, RESPONSE_ADDRESSES)


def response_framer(address: int) -> Framer:
    """Make a framer that only takes answers from ``address`` (other boards' are junk)."""
    addresses = frozenset((address,))

    def frame(buf: bytes) -> tuple[int, bytes | None]:
        return _find(buf, addresses)

    return frame


def request_framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next 8-byte FC 0x03 / 0x06 request of either variant (for simulated boards)."""
    if not buf:
        return 0, None
    if buf[0] not in REQUEST_ADDRESSES:
        return next((i for i in range(1, len(buf)) if buf[i] in REQUEST_ADDRESSES), len(buf)), None
    if len(buf) < REQUEST_LEN:
        return 0, None
    frame = bytes(buf[:REQUEST_LEN])
    if frame[1] not in (READ, WRITE) or not crc_ok(frame):
        return 1, None
    return REQUEST_LEN, frame


class Answer(NamedTuple):
    """One checked answer frame."""

    variant: Variant
    board: int  # 1 on the D2 variant
    function: int
    payload: bytes  # FC 0x03: the register bytes; FC 0x06: register and value


def variant_of(address: int) -> tuple[Variant, int]:
    """Variant and board number of a response address."""
    if address == D2_ADDRESS:
        return "d2", 1
    if RESPONSE_BASE < address <= RESPONSE_BASE + MAX_BOARDS:
        return "81", address - RESPONSE_BASE
    raise FrameError(f"{address:02X} is not a DALY new-protocol response address")


def parse_answer(frame: bytes) -> Answer:
    """Check one complete answer frame; raise a FrameError subclass unless it is well-formed."""
    if len(frame) < 5:
        raise LengthError(f"an answer has at least 5 bytes, got {len(frame)}")
    variant, board = variant_of(frame[0])
    length = _length_at(frame, 0)
    if length < 0:
        raise FrameError(f"function {frame[1]:02X} / byte count {frame[2]:02X} is not an answer")
    if len(frame) != length:
        raise LengthError(f"header says {length} bytes, frame has {len(frame)}")
    if not crc_ok(frame):
        expected = crc16_modbus(frame[:-2]).to_bytes(2, "little")
        raise ChecksumError(f"CRC bytes {frame[-2:].hex(' ')}, expected {expected.hex(' ')}")
    if frame[1] & EXCEPTION:
        raise ModbusExceptionError("DALY", frame[1] & ~EXCEPTION, frame[2])
    payload = frame[3:-2] if frame[1] == READ else frame[2:6]
    return Answer(variant, board, frame[1], payload)


def read_payload(frame: bytes, count: int, *, address: int | None = None) -> bytes:
    """Register bytes of an FC 0x03 answer holding ``count`` registers."""
    answer = parse_answer(frame)
    if address is not None and frame[0] != address:
        raise FrameError(f"expected an answer from {address:02X}, got {frame[0]:02X}")
    if answer.function != READ:
        raise FrameError(f"expected function 03, got {answer.function:02X}")
    if len(answer.payload) != 2 * count:
        raise LengthError(f"asked for {count} registers, got {len(answer.payload) // 2}")
    return answer.payload


# --- decoding ------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    """Printable ASCII up to the first NUL (leading NULs skipped)."""
    raw = data.lstrip(b"\0").split(b"\0", 1)[0]
    return "".join(chr(b) for b in raw if 0x20 <= b < 0x7F).strip()


def _levelled(code: str, level: int) -> str:
    """Level 1 = the warning code where one exists, level 2..7 = the alarm code."""
    warning = f"{code}_warning"
    return warning if level == 1 and warning in ALARMS else code


def decode_type2(codes: bytes) -> tuple[list[str], dict[str, int], list[str]]:
    """0x81 fault code bytes 0..13 -> (alarm codes, non-zero levels, status flags)."""
    alarms: list[str] = []
    levels: dict[str, int] = {}
    for byte, bit, code in TYPE2_LEVELS:
        level = codes[byte] >> bit & 0b111
        if level:
            levels[code] = level
            alarms.append(_levelled(code, level))
    for (byte, bit), name in TYPE2_FAULT_BITS.items():
        if codes[byte] >> bit & 1:
            alarms.append(name or f"daly_t2_{byte}_{bit}")
    flags = [name for (byte, bit), name in TYPE2_STATUS_BITS.items() if codes[byte] >> bit & 1]
    alarms += [
        f"daly_t2_{byte}_{bit}"
        for byte in range(len(codes))
        for bit in range(8)
        if codes[byte] >> bit & 1 and (byte, bit) not in _TYPE2_KNOWN
    ]  # bits with no documented meaning
    return list(dict.fromkeys(alarms)), levels, flags


def _apply_direction(out: dict[str, Any]) -> None:
    """Sign current and power from the state register (gotcha 6.1): magnitude from the value."""
    direction = out.get("state")
    if direction not in DIRECTIONS.values():
        return
    for key in ("current", "power"):
        if key in out:
            out[key] = signed_current(out[key], direction)


def decode_registers(
    data: bytes,
    start: int,
    variant: Variant,
    *,
    cell_count: int | None = None,
    temp_count: int | None = None,
    hw_offset: int | None = None,
) -> dict[str, Any]:
    """Decode the registers ``start``.. (u16 BE each) of one answer into pack-state names.

    Only what the block covers is decoded. Current and power get their sign from the state
    register when the same block holds it; otherwise they stay as the registers say (the
    driver's ``to_reading`` signs them with the state read in the same poll).
    """
    rmap = MAPS[variant]
    end = start + len(data) // 2

    def covers(first: int, count: int = 1) -> bool:
        return start <= first and first + count <= end

    def reg(register: int) -> int:
        return read_int(data, 2 * (register - start), 2)

    out: dict[str, Any] = {}
    for field in rmap.fields:
        register = field.pos // 2
        if not covers(register):
            continue
        if field.offset == TEMP_OFFSET and reg(register) in NOT_AVAILABLE:
            continue  # no sensor there
        value = decode_field(field._replace(pos=field.pos - 2 * start), data)
        if field.key in BOOLEANS:
            out[field.key] = bool(value)
        else:
            out[field.key] = int(value) if field.scale == 1.0 else value  # counts stay integers
    if "state" in out:
        out["state"] = DIRECTIONS.get(int(out["state"]), "unknown")
    if "balancer_switch" in out:
        out["balancer_enabled"] = out["balancer_switch"] != 0

    first, slots = rmap.cells
    if covers(first):
        count = int(out.get("cell_count", cell_count if cell_count is not None else -1))
        volts = [reg(first + i) / 1000 for i in range(min(slots, end - first))]
        if count >= 0:
            volts = volts[:count]
        else:
            while volts and volts[-1] == 0:
                volts.pop()
        out["cell_voltages"] = volts
        out["cell_count"] = len(volts)

    first, slots = rmap.temperatures
    if covers(first):
        count = int(out.get("temperature_count", temp_count if temp_count is not None else -1))
        raws = [reg(first + i) for i in range(min(slots, end - first))]
        if count >= 0:
            raws = raws[:count]
        else:
            while raws and raws[-1] in (0, *NOT_AVAILABLE):
                raws.pop()
        out["temperatures"] = [float(r + TEMP_OFFSET) for r in raws if r not in NOT_AVAILABLE]
        missing = [i + 1 for i, r in enumerate(raws) if r in NOT_AVAILABLE]
        if missing:
            out["temperature_sensors_unavailable"] = missing

    first, count = rmap.balancing_bits
    if covers(first, count):
        bits = [reg(first + i) for i in range(count)]
        out["balancing_cells"] = [
            16 * i + j + 1 for i in range(count) for j in range(16) if bits[i] >> j & 1
        ]
    if "balancer_state" in out:
        out["balancing"] = out["balancer_state"] != 0
    elif "balancing_cells" in out:
        out["balancing"] = bool(out["balancing_cells"])

    first, count = rmap.faults
    if covers(first, count):
        values = [reg(first + i) for i in range(count)]
        out["fault_registers"] = [f"{v:04x}" for v in values]
        # code byte 2k = low byte of register k: the order of DALY's own fault tables
        codes = b"".join(v.to_bytes(2, "little") for v in values)
        if variant == "d2":
            out["alarms"] = decode_failures(codes)  # same bits as classic 0x98 bytes 0..7
        else:
            out["alarms"], levels, flags = decode_type2(codes)
            if levels:
                out["alarm_levels"] = levels
            out["status_flags"] = flags

    for text in rmap.texts:
        if covers(text.register, text.size):
            raw = data[2 * (text.register - start) : 2 * (text.register - start + text.size)]
            out[text.key] = _text(raw)
    _fix_versions(out, data, start, covers, hw_offset)
    _apply_direction(out)
    return out


def _fix_versions(
    out: dict[str, Any],
    data: bytes,
    start: int,
    covers: Callable[[int, int], bool],
    hw_offset: int | None,
) -> None:
    """Place the D2 hardware version: 16 bytes after the software on one firmware, 32 on another.

    With ``hw_offset`` unknown, an empty 16-byte hardware slot means the 32-byte layout.
    """
    if "software_version" not in out or not covers(0xA9, 32):
        return
    base = 2 * (0xA9 - start)
    if hw_offset is None:
        hw_offset = 16 if out.get("hardware_version") else 32
    if hw_offset == 32:
        out["hardware_version"] = _text(data[base + 32 : base + 64])
        out.pop("machine_code", None)
    else:
        out["hardware_version"] = _text(data[base + hw_offset : base + hw_offset + 16])


def decode_answer(
    frame: bytes,
    *,
    start_register: int = 0,
    variant: Variant | None = None,
    cell_count: int | None = None,
    temp_count: int | None = None,
    hw_offset: int | None = None,
) -> dict[str, Any]:
    """Decode one answer frame: FC 0x03 from ``start_register``, or the echo of an FC 0x06 write."""
    answer = parse_answer(frame)
    if variant is not None and variant != answer.variant:
        raise FrameError(f"expected a {variant} answer, got address {frame[0]:02X}")
    if not 0 <= start_register <= 0xFFFF:
        raise FrameError(f"start register {start_register} out of range")
    head: dict[str, Any] = {"variant": answer.variant}
    if answer.variant == "81":
        head["board"] = answer.board
    if answer.function == WRITE:
        register = read_int(answer.payload, 0, 2)
        value = answer.payload[2:]
        return (
            head
            | {"register": register, "value": read_int(value, 0, 2)}
            | decode_registers(value, register, answer.variant)
        )
    out = decode_registers(
        answer.payload,
        start_register,
        answer.variant,
        cell_count=cell_count,
        temp_count=temp_count,
        hw_offset=hw_offset,
    )
    if not out:  # nothing of the map: show the raw registers
        out["registers"] = [
            read_int(answer.payload, i, 2) for i in range(0, len(answer.payload), 2)
        ]
    return head | {"start_register": start_register} | out


def _request(data: bytes) -> bytes | None:
    """``data`` if it is exactly one CRC-valid request, else None."""
    used, frame = request_framer(bytes(data))
    return frame if frame is not None and used == len(data) else None


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode a master's request: which board, read or write, which registers or value."""
    frame = _request(data)
    if frame is None:
        raise FrameError(f"{bytes(data[:8]).hex(' ')} is not one DALY new-protocol request")
    variant: Variant = "d2" if frame[0] == D2_ADDRESS else "81"
    out: dict[str, Any] = {
        "request": "read" if frame[1] == READ else "write",
        "variant": variant,
        "register": read_int(frame, 2, 2),
    }
    if variant == "81":
        out["board"] = frame[0] - REQUEST_BASE
    if frame[1] == READ:
        out["count"] = read_int(frame, 4, 2)
    else:
        out["value"] = read_int(frame, 4, 2)
    return out


def decode_hex(
    data: bytes,
    *,
    start_register: int = 0,
    variant: Variant | None = None,
    cell_count: int | None = None,
    temp_count: int | None = None,
    hw_offset: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Decode one answer frame for ``bmsgate decode`` (the frame does not say where it starts)."""
    if variant is not None and variant not in MAPS:
        raise FrameError(f"unknown variant {variant!r}; known: {', '.join(MAPS)}")
    request = _request(data)
    # a D2 write is echoed byte for byte, so only a read or an 0x81-variant write is told apart
    if request is not None and (request[1] == READ or request[0] != D2_ADDRESS):
        what = decode_request(request)
        raise FrameError(
            f"{request.hex(' ')} is a request ({what['request']} from register "
            f"{what['register']:#06x}), not an answer"
        )
    return decode_answer(
        bytes(data),
        start_register=int(start_register),
        variant=variant,
        cell_count=cell_count,
        temp_count=temp_count,
        hw_offset=hw_offset,
    )


# fmt: off
EXTRAS: Final = (
    "state", "bms_life", "max_cell", "min_cell", "max_cell_voltage", "min_cell_voltage",
    "average_cell_voltage", "cell_voltage_diff", "balancer_state", "balance_current",
    "board_temperature", "heating_temperature", "energy", "charger_connected", "load_connected",
    "precharge_mos", "heating_mos", "fan_mos", "remaining_mileage", "remaining_charge_time",
    "alarm_levels", "status_flags", "temperature_sensors_unavailable",
)
# fmt: on


def to_reading(parts: dict[str, Any], ages: dict[str, float] | None = None) -> BmsReading:
    """Assemble a snapshot from the decoded answers to one poll (merged into one dict).

    ``ages``: of the values kept from an earlier, slow read.
    """
    direction = parts.get("state")
    known = direction if direction in DIRECTIONS.values() else None
    power = parts.get("power")
    return BmsReading.from_parts(
        parts,
        extras=EXTRAS,
        ages=ages,
        current=signed_current(parts["current"], known),
        power=None if power is None else signed_current(float(power), known),
    )


# --- driver --------------------------------------------------------------------------------

D2_STATUS: Final = 80  # 0x00-0x4F: adds the balancing bits, balance current and MOS temperature
D2_STATUS_SHORT: Final = 62  # 0x00-0x3D: what every D2 firmware answers (aiobmsble, the app)
P81_STATUS: Final = ((0x00, 64), (0x41, 62))  # DALY BMSTool's two reads (ESS-DL capture)
BALANCER_SWITCH: Final = 0xCF  # same register on both variants (syssi)
SETTINGS_TRIES: Final = 3  # polls that may try to read the rated capacity before giving up
# How often each read goes on the wire (bmsgate_bms.polling): the status registers (D2 one
# read, 0x81 two) at every poll (the current and the state that signs it are in them), the rated
# capacity (the settings block's first register) when the slow reads are due.
POLL: Final[dict[str, Tier]] = {"status": FAST, "rated_capacity": SLOW}


def _merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out |= part
    return out


class DalyNewDriver:
    """Polls one DALY board speaking the new protocol over a Link.

    Requests per snapshot (the rated capacity is read once and kept):

    * ``"d2"``: one read of 80 registers (0x00-0x4F), which syssi's captures show real boards
      answering; it holds everything, the fault bitmaps and the MOSFET temperature included.
      A board that does not answer 80 is asked for 62 (0x00-0x3D) from then on.
    * ``"81"``: two reads, 0x00 x 64 and 0x41 x 62 - exactly what DALY's own BMSTool sends
      (syssi's ESS-DL capture), so a real board is known to answer them; together they cover
      cells, temperatures, state, capacity, MOSFETs, power and the type-2 fault registers.
      esphome's single 0x00-0x5C read would still need a second read for the faults (0x6D-0x73),
      so it saves nothing. The current (0x39) and the state (0x48) come in different answers
      of the same poll; ``to_reading`` signs the current with that state.

    Several 0x81 boards share a bus (one driver per board number); D2 has no bus address.
    """

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 1, *, variant: Variant = "81") -> None:
        if variant not in MAPS:
            raise ValueError(f"variant must be one of {', '.join(MAPS)}, not {variant!r}")
        _check_board(variant, address)
        self._link = link
        self.address = address
        self.variant: Variant = variant
        self._map = MAPS[variant]
        self._answer_from = response_address(variant, address)
        self._framer = response_framer(self._answer_from)
        self._d2_count = D2_STATUS
        self.slow = SlowReads()  # the reader sets how often (its bus's slow_every)

    async def _exchange(self, request: bytes) -> bytes:
        frames = await self._link.exchange(request, self._framer)
        return frames[0]

    async def _read(self, start: int, count: int) -> dict[str, Any]:
        frame = await self._exchange(
            read_request(start, count, variant=self.variant, board=self.address)
        )
        payload = read_payload(frame, count, address=self._answer_from)
        return decode_registers(payload, start, self.variant)

    async def _write(self, register: int, value: int) -> None:
        request = write_request(register, value, variant=self.variant, board=self.address)
        try:
            answer = parse_answer(await self._exchange(request))
        except LinkTimeout:
            if self.variant != "d2":
                raise
            # a D2 answer is byte-identical to its request, so a link that strips the echo of
            # the request swallows it; the caller's read-back decides whether the write took
            return
        if answer.function != WRITE or answer.payload != request[2:6]:
            raise FrameError(f"write of {register:#x} not echoed: {answer.payload.hex(' ')}")

    async def _status(self) -> list[dict[str, Any]]:
        if self.variant == "81":
            return [await self._read(start, count) for start, count in P81_STATUS]
        try:
            return [await self._read(0, self._d2_count)]
        except (LinkTimeout, ModbusExceptionError):
            if self._d2_count == D2_STATUS_SHORT:
                raise
        parts = [await self._read(0, D2_STATUS_SHORT)]
        self._d2_count = D2_STATUS_SHORT  # this board only answers the short read
        return parts

    async def _rated_capacity(self) -> dict[str, Any]:
        value = (await self._read(self._map.settings, 1)).get("nominal_capacity")
        return {} if value is None else {"nominal_capacity": float(value)}

    async def read(self) -> BmsReading:
        """Read the status registers (one or two requests), the rated capacity when due."""
        parts = _merge(await self._status())
        now = time.monotonic()
        # a board without the settings block still gives a snapshot
        await self.slow.optional(now, self._rated_capacity, SETTINGS_TRIES)
        return to_reading(parts | self.slow.parts, self.slow.ages(now))

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Switch the charge or discharge MOSFET; return the state read back from the board."""
        await self._write(self._map.mos_switch[0 if charge else 1], int(on))
        await asyncio.sleep(0)  # let the board apply it before the read-back
        state = await self._read(self._map.mos_state, 2)
        return bool(state["charge_mos" if charge else "discharge_mos"])

    async def set_balancer(self, on: bool) -> bool:
        """Write the balancer switch 0xCF (syssi; both variants); return it read back.

        One firmware reads 0x0001 for on, another 0xFFFF: any non-zero value is on.
        """
        await self._write(BALANCER_SWITCH, int(on))
        await asyncio.sleep(0)
        return bool((await self._read(BALANCER_SWITCH, 1))["balancer_switch"])

    async def wake(self) -> None:
        """A harmless read (the SOC register) that keeps a sleepy board awake."""
        soc_field = next(f for f in self._map.fields if f.key == "soc")
        await self._read(soc_field.pos // 2, 1)

    async def read_settings(self) -> dict[str, Any]:
        """The settings block (D2 0x80-0xA4, 0x81 variant 0x100-0x11E), by SETPOINTS key."""
        parts = await self._read(self._map.settings, SETTINGS_SPAN[self.variant])
        return pick(SETPOINTS[self.variant], parts)

    async def write_setting(
        self, key: str, value: float, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write one writable setting (FC 0x06); return the settings read back."""
        check_write(SETPOINTS[self.variant], current, key, value)
        field = next(f for f in self._map.fields if f.key == key)
        await self._write(field.pos // 2, round(value / field.scale) - field.offset)
        return await self.read_settings()

    async def set_soc(self, soc: float) -> float:
        """Set the SOC [%] (D2 register 0xA7); return the SOC read back. Not on the 0x81 variant."""
        request = set_soc_request(soc, variant=self.variant, board=self.address)
        register = read_int(request, 2, 2)
        await self._write(register, read_int(request, 4, 2))
        soc_field = next(f for f in self._map.fields if f.key == "soc")
        return float((await self._read(soc_field.pos // 2, 1))["soc"])


Driver = DalyNewDriver

D2_PROBE: Final = (0x00, D2_STATUS_SHORT)  # the read every D2 firmware answers
P81_PROBE: Final = P81_STATUS[0]  # BMSTool's first read (cells, V, I, SOC, counts)


async def probe(link: Link, address: int, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one status read (0x81 variant at board ``address``, or D2)."""
    which: Variant = "d2" if variant == "d2" else "81"
    start, count = D2_PROBE if which == "d2" else P81_PROBE
    answer_from = response_address(which, address)
    frames = await link.exchange(
        read_request(start, count, variant=which, board=address), response_framer(answer_from)
    )
    parts = decode_registers(read_payload(frames[0], count, address=answer_from), start, which)
    return ProbeAnswer(int(parts["cell_count"]), parts["pack_voltage"], parts["soc"])


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="DALY (new: H/K/M/S, 100 Balance)",
    manufacturer="DALY",
    model="DALY BMS (new protocol)",
    baudrates=(BAUDRATE,),
    addresses=(1, MAX_BOARDS),  # 0x81..0x90
    variants={"81": (1, MAX_BOARDS), "d2": (1, 1)},  # D2 has no bus address
    scan=(
        ScanStep(BAUDRATE, range(1, MAX_BOARDS + 1), "81"),
        ScanStep(BAUDRATE, range(1, 2), "d2"),
    ),
    soc_setting=False,  # the default 0x81 variant has none; D2's register 0xA7 is written
)

"""DALY classic UART/RS485 protocol: 13-byte frames ``A5 addr cmd 08 data[8] sum8``.

Facts (PROTOCOLS.md section 1; DALY "UART/485 Communications Protocol V1.2" PDF): 9600 8N1,
big-endian, the host sends from address 0x3F + board (0x40 for board 1) and board n answers
from address n. 0x95 (cells) and 0x96 (temperatures) answer with several frames numbered from 1.
No I/O above ``DalyClassicDriver``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from .checksum import sum8
from .driver import ProbeAnswer, ProtocolInfo, ScanStep
from .errors import ChecksumError, FrameError, LengthError, LinkTimeout
from .fields import Field, decode, read_int
from .link import Link
from .plausible import Limits
from .polling import FAST, SLOW, SlowReads, Tier, tagged
from .reading import BmsReading, Direction, signed_current
from .setpoints import Setpoint, check_write, pick

NAME: Final = "daly_classic"
# [A] the class: dbus-serialbattery's bound for DALY boards (docs/protocols/daly_classic.md)
LIMITS: Final = Limits(max_current=1000.0)
BAUDRATE: Final = 9600
FRAME_LEN: Final = 13
START: Final = 0xA5
HOST_BASE: Final = 0x3F  # host address = 0x3F + board number (0x40 for board 1)
# A frame from address 0x20 or above is a host's request (0x20 GPRS, 0x40 PC, 0x80 Bluetooth in
# the PDFs; softwarecrash/Daly2MQTT takes such a frame for its own echo): boards answer from 1..
MIN_HOST: Final = 0x20

# read commands
SOC: Final = 0x90
CELL_RANGE: Final = 0x91
TEMP_RANGE: Final = 0x92
MOS: Final = 0x93
STATUS: Final = 0x94
CELLS: Final = 0x95
TEMPS: Final = 0x96
BALANCE: Final = 0x97
FAILURES: Final = 0x98
RATED: Final = 0x50  # rated capacity + nominal cell voltage (not in the PDFs; dbus-serialbattery)
# write commands
DISCHARGE_MOS: Final = 0xD9
CHARGE_MOS: Final = 0xDA
SET_SOC: Final = 0x21
RESET: Final = 0x00

MAX_CELL_FRAMES: Final = 16  # 48 cells; some boards always send all 16
MAX_TEMP_FRAMES: Final = 3  # 21 sensors
TEMP_OFFSET: Final = -40  # [°C] raw u8 - 40

SOC_FIELDS: Final = (
    Field("pack_voltage", 0, 2, scale=0.1),  # [V] cumulative total voltage
    Field("acquisition_voltage", 2, 2, scale=0.1),  # [V] 0 on every known capture
    Field("current", 4, 2, offset=-30000, scale=0.1),  # [A] sign firmware dependent, see 6.1
    Field("soc", 6, 2, scale=0.1),  # [%]
)
CELL_RANGE_FIELDS: Final = (
    Field("max_cell_voltage", 0, 2, scale=0.001),  # [V]
    Field("max_cell", 2, 1),  # 1-based
    Field("min_cell_voltage", 3, 2, scale=0.001),  # [V]
    Field("min_cell", 5, 1),
)
TEMP_RANGE_FIELDS: Final = (
    Field("max_temperature", 0, 1, offset=TEMP_OFFSET),  # [°C]
    Field("max_temperature_sensor", 1, 1),
    Field("min_temperature", 2, 1, offset=TEMP_OFFSET),  # [°C]
    Field("min_temperature_sensor", 3, 1),
)
MOS_FIELDS: Final = (
    Field("state", 0, 1),  # 0 idle, 1 charging, 2 discharging
    Field("charge_mos", 1, 1),
    Field("discharge_mos", 2, 1),
    Field("bms_life", 3, 1),  # wrapping counter ("heartbeat"), not cycles
    Field("remaining_capacity", 4, 4, scale=0.001),  # [Ah] from mAh
)
STATUS_FIELDS: Final = (
    Field("cell_count", 0, 1),
    Field("temperature_count", 1, 1),
    Field("charger_connected", 2, 1),
    Field("load_connected", 3, 1),
    Field("dio", 4, 1),  # bit0..3 DI1..4, bit4..7 DO1..4
    Field("cycles", 5, 2),  # V1.0 PDF and most implementations; low confidence (gotcha 6.7)
)
RATED_FIELDS: Final = (
    Field("rated_capacity", 0, 4, scale=0.001),  # [Ah] from mAh (dbus-serialbattery read_capacity)
    Field("nominal_cell_voltage", 4, 4, scale=0.001),  # [V]; mV assumed, no source states it
)
# The settings a documented read gives: 0x50 only. 0x59/0x5A (thresholds) are named in
# softwarecrash/Daly2MQTT without a field layout, so they are not read. No setting is written:
# the only documented write is the SOC (0x21, set_soc).
SETPOINTS: Final = (Setpoint("rated_capacity", "Ah"), Setpoint("nominal_cell_voltage", "V"))
# How often each read goes on the wire (bmsgate_bms.polling). 0x93's state signs the 0x90
# current, so both are fast, and so are the alarms (0x98). The cells (0x95, six frames for 16
# cells: over a third of a full poll's bytes), temperatures, balancing and 0x94 (counts, cycles,
# charger/load; 0x95/0x96 need its counts, so it comes first) are slow.
POLL: Final[dict[int, Tier]] = {
    SOC: FAST,
    MOS: FAST,
    FAILURES: FAST,
    STATUS: SLOW,
    CELLS: SLOW,
    TEMPS: SLOW,
    BALANCE: SLOW,
}
DIRECTIONS: Final[dict[int, Direction]] = {0: "idle", 1: "charging", 2: "discharging"}
# fmt: off
COMMAND_NAMES: Final = {
    SOC: "soc", CELL_RANGE: "cell_range", TEMP_RANGE: "temperature_range", MOS: "mos",
    STATUS: "status", CELLS: "cells", TEMPS: "temperatures", BALANCE: "balancing",
    FAILURES: "failures", DISCHARGE_MOS: "discharge_mos", CHARGE_MOS: "charge_mos",
    SET_SOC: "set_soc", RESET: "reset", RATED: "rated",
}
# fmt: on

# 0x98 data bytes 0..6, bit 0 first; None = reserved (reported as daly_bit_<byte>_<bit> if set)
# fmt: off
FAILURE_BITS: Final[tuple[tuple[str | None, ...], ...]] = (
    ("cell_overvoltage_warning", "cell_overvoltage", "cell_undervoltage_warning",
     "cell_undervoltage", "pack_overvoltage_warning", "pack_overvoltage",
     "pack_undervoltage_warning", "pack_undervoltage"),
    ("charge_overtemp_warning", "charge_overtemp", "charge_undertemp_warning", "charge_undertemp",
     "discharge_overtemp_warning", "discharge_overtemp", "discharge_undertemp_warning",
     "discharge_undertemp"),
    ("charge_overcurrent_warning", "charge_overcurrent", "discharge_overcurrent_warning",
     "discharge_overcurrent", "soc_high_warning", "soc_high", "soc_low_warning", "soc_low"),
    ("cell_voltage_diff_warning", "cell_voltage_diff", "temp_diff_warning", "temp_diff",
     None, None, None, None),
    ("charge_mos_overtemp", "discharge_mos_overtemp", "charge_mos_temp_sensor_fault",
     "discharge_mos_temp_sensor_fault", "charge_mos_stuck", "discharge_mos_stuck",
     "charge_mos_open", "discharge_mos_open"),
    ("afe_fault", "cell_sampling_fault", "temp_sensor_fault", "eeprom_fault", "rtc_fault",
     "precharge_fault", "vehicle_comm_fault", "internal_comm_fault"),
    ("current_sensor_fault", "pack_voltage_sensor_fault", "short_circuit_fault",
     "low_voltage_charge_forbidden", None, None, None, None),
)
# fmt: on


def host_address(board: int) -> int:
    """Address the host sends from to reach board n (1-based) on a shared bus."""
    return HOST_BASE + board


def request(cmd: int, board: int = 1, data: bytes = bytes(8)) -> bytes:
    """Build a 13-byte request for ``cmd`` to ``board``."""
    if len(data) != 8:
        raise ValueError("DALY data is always 8 bytes")
    body = bytes((START, host_address(board), cmd, 8)) + data
    return body + bytes((sum8(body),))


def write_mos_request(charge: bool, on: bool, board: int = 1) -> bytes:
    """0xDA (charge) or 0xD9 (discharge) with data byte 0 = 1 on / 0 off."""
    return request(CHARGE_MOS if charge else DISCHARGE_MOS, board, bytes((int(on),)) + bytes(7))


def set_soc_request(soc: float, board: int = 1) -> bytes:
    """0x21 with SOC x 10 in data bytes 6-7; bytes 0-5 (an optional timestamp) left zero."""
    if not 0 <= soc <= 100:
        raise ValueError(f"SOC must be 0..100 %, not {soc}")
    return request(SET_SOC, board, bytes(6) + round(soc * 10).to_bytes(2, "big"))


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next checksum-valid 13-byte frame; drop bytes before it (see link.Framer)."""
    start = buf.find(START)
    if start < 0:
        return len(buf), None
    if start > 0:
        return start, None
    if len(buf) < FRAME_LEN:
        return 0, None
    frame = bytes(buf[:FRAME_LEN])
    if frame[3] != 8 or sum8(frame[:-1]) != frame[-1]:
        return 1, None  # not a frame start after all: resynchronise on the next 0xA5
    return FRAME_LEN, frame


def check_frame(frame: bytes) -> None:
    """Raise a FrameError subclass unless ``frame`` is one well-formed 13-byte frame."""
    if len(frame) != FRAME_LEN:
        raise LengthError(f"DALY frame must be 13 bytes, got {len(frame)}")
    if frame[0] != START:
        raise FrameError(f"DALY frame must start with A5, got {frame[0]:02X}")
    if frame[3] != 8:
        raise LengthError(f"DALY data length byte must be 08, got {frame[3]:02X}")
    if sum8(frame[:-1]) != frame[-1]:
        raise ChecksumError(f"DALY checksum {frame[-1]:02X}, expected {sum8(frame[:-1]):02X}")


def frame_data(frame: bytes, cmd: int | None = None, board: int | None = None) -> bytes:
    """Return data[8] of a valid response frame for ``cmd`` from ``board``."""
    check_frame(frame)
    if cmd is not None and frame[2] != cmd:
        raise FrameError(f"expected command {cmd:02X}, got {frame[2]:02X}")
    if board is not None and frame[1] != board:
        raise FrameError(f"expected answer from board {board}, got address {frame[1]:02X}")
    return frame[4:12]


def split_frames(data: bytes) -> list[bytes]:
    """Cut a byte string into 13-byte frames, each checked."""
    if not data or len(data) % FRAME_LEN:
        raise LengthError(f"{len(data)} bytes is not a whole number of 13-byte DALY frames")
    frames = [data[i : i + FRAME_LEN] for i in range(0, len(data), FRAME_LEN)]
    for frame in frames:
        check_frame(frame)
    return frames


def _numbered(frames: Sequence[bytes], cmd: int) -> dict[int, bytes]:
    """Multi-frame answer: frame number (from 1) -> data bytes 1..7; duplicates keep the first."""
    out: dict[int, bytes] = {}
    for frame in frames:
        data = frame_data(frame, cmd)
        if not 1 <= data[0] <= MAX_CELL_FRAMES:
            raise FrameError(f"frame number {data[0]} out of range 1..16")
        out.setdefault(data[0], data[1:])
    return out


def decode_cells(frames: Sequence[bytes], cell_count: int | None = None) -> list[float]:
    """Cell voltages [V] of a 0x95 answer: cells 1..N when N is known, else up to an empty slot."""
    slots = _numbered(frames, CELLS)
    volts: list[float] = []
    for number in range(1, max(slots, default=0) + 1):
        part = slots.get(number)
        if part is None:
            break  # a missing frame: the cells after it cannot be placed
        volts.extend(read_int(part, 2 * k, 2) / 1000 for k in range(3))
    if cell_count is not None:
        if len(volts) < cell_count:
            raise LengthError(f"0x95 answer holds {len(volts)} cells, the BMS reports {cell_count}")
        return volts[:cell_count]
    while volts and volts[-1] == 0:
        volts.pop()
    return volts


def decode_temperatures(frames: Sequence[bytes], count: int | None = None) -> list[float]:
    """Sensor temperatures [°C] from a 0x96 answer, cut to the sensor count when known."""
    slots = _numbered(frames, TEMPS)
    temps: list[float] = []
    for number in range(1, max(slots, default=0) + 1):
        part = slots.get(number)
        if part is None:
            break
        temps.extend(float(b + TEMP_OFFSET) for b in part)
    if count is not None:
        if len(temps) < count:
            raise LengthError(f"0x96 answer holds {len(temps)} sensors, the BMS reports {count}")
        return temps[:count]
    return temps[: next((i for i, b in enumerate(temps) if b in (-40.0, 215.0)), len(temps))]


def decode_balancing(data: bytes) -> list[int]:
    """Cells balancing (1-based): data byte i bit j = cell 8i+j+1 (order unconfirmed, see 0x97)."""
    return [8 * i + j + 1 for i in range(6) for j in range(8) if data[i] >> j & 1]


def decode_failures(data: bytes) -> list[str]:
    """Alarm codes from 0x98 data bytes 0..6; byte 7 (a fault number) as ``fault_code``."""
    codes = [
        code or f"daly_bit_{i}_{j}"
        for i, names in enumerate(FAILURE_BITS)
        for j, code in enumerate(names)
        if data[i] >> j & 1
    ]
    if data[7]:
        codes.append("fault_code")
    return codes


def decode_frames(
    frames: Iterable[bytes], *, cell_count: int | None = None, temp_count: int | None = None
) -> dict[str, Any]:
    """Decode the answers to any set of read commands into pack-state names plus extras."""
    by_cmd: dict[int, list[bytes]] = {}
    for frame in frames:
        check_frame(frame)
        by_cmd.setdefault(frame[2], []).append(frame)
    out: dict[str, Any] = {}
    for cmd, group in by_cmd.items():
        data = frame_data(group[0])
        if cmd == SOC:
            out |= decode(SOC_FIELDS, data)
        elif cmd == CELL_RANGE:
            out |= decode(CELL_RANGE_FIELDS, data)
        elif cmd == TEMP_RANGE:
            out |= decode(TEMP_RANGE_FIELDS, data)
        elif cmd == MOS:
            mos = decode(MOS_FIELDS, data)
            out |= mos | {
                "state": DIRECTIONS.get(int(mos["state"]), "unknown"),
                "charge_mos": bool(mos["charge_mos"]),
                "discharge_mos": bool(mos["discharge_mos"]),
            }
        elif cmd == STATUS:
            status = decode(STATUS_FIELDS, data)
            out |= status | {
                "charger_connected": bool(status["charger_connected"]),
                "load_connected": bool(status["load_connected"]),
            }
        elif cmd == CELLS:
            count = cell_count if cell_count is not None else out.get("cell_count")
            out["cell_voltages"] = decode_cells(group, None if count is None else int(count))
            out["cell_count"] = len(out["cell_voltages"])
        elif cmd == TEMPS:
            count = temp_count if temp_count is not None else out.get("temperature_count")
            out["temperatures"] = decode_temperatures(group, None if count is None else int(count))
        elif cmd == BALANCE:
            out["balancing_cells"] = decode_balancing(data)
            out["balancing"] = bool(out["balancing_cells"])
        elif cmd == FAILURES:
            out["alarms"] = decode_failures(data)
        elif cmd == RATED:
            out |= decode(RATED_FIELDS, data)
        elif cmd in (CHARGE_MOS, DISCHARGE_MOS):
            out["charge_mos" if cmd == CHARGE_MOS else "discharge_mos"] = bool(data[0])
        else:
            out[f"cmd_{cmd:02x}_data"] = data.hex()
    return out


def is_request(frame: bytes) -> bool:
    """Whether a checked frame comes from a host (a request), not from a board."""
    return frame[1] >= MIN_HOST


def _describe(frame: bytes) -> dict[str, Any]:
    cmd, data = frame[2], frame[4:12]
    out: dict[str, Any] = {
        "request": COMMAND_NAMES.get(cmd, f"cmd_{cmd:02x}"),
        "command": cmd,
        "host_address": frame[1],
        "board": frame[1] - HOST_BASE if frame[1] > HOST_BASE else None,
    }
    if cmd in (CHARGE_MOS, DISCHARGE_MOS):
        out["on"] = bool(data[0])
    elif cmd == SET_SOC:
        out["soc"] = read_int(data, 6, 2) / 10  # [%]
    return out


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode a host's request (one 13-byte frame): which board is asked what."""
    frames = split_frames(data)
    if len(frames) != 1 or not is_request(frames[0]):
        raise FrameError(f"{data[:13].hex(' ')} is not one request (a host sends from 20..FF)")
    return _describe(frames[0])


def decode_hex(
    data: bytes, *, cell_count: int | None = None, temp_count: int | None = None, **_: Any
) -> dict[str, Any]:
    """Decode one answer (all the frames of one or more commands) for ``bmsgate decode``.

    The current is assembled as the reader does (``assemble``); the field as sent stays in
    ``current_field``.
    """
    frames = split_frames(data)
    for frame in frames:
        if is_request(frame):
            what = _describe(frame)
            raise FrameError(
                f"{frame.hex(' ')} is a request (host {frame[1]:02X} asks for "
                f"{what['request']} {frame[2]:02X}), not an answer"
            )
    return assemble(decode_frames(frames, cell_count=cell_count, temp_count=temp_count))


EXTRAS: Final = ("state", "bms_life", "charger_connected", "load_connected", "max_cell", "min_cell")


def assemble(parts: dict[str, Any]) -> dict[str, Any]:
    """Sign the 0x90 current as the reader does; the field as sent stays in ``current_field``.

    The raw field's sign differs between boards (gotcha 6.1), so the 0x93 state byte gives the
    direction. Without one (idle, or 0x93 unread), take raw < 30000 as charging, as
    python-daly-bms, batmon-ha and dbus-serialbattery do.
    """
    if "current" not in parts or "current_field" in parts:
        return parts  # nothing to sign, or signed already
    direction = parts.get("state")
    raw = parts["current"]
    current = signed_current(
        -raw if raw else 0.0, direction if direction in DIRECTIONS.values() else None
    )
    return parts | {"current": current, "current_field": raw}


def to_reading(parts: dict[str, Any], ages: dict[str, float] | None = None) -> BmsReading:
    """Assemble a snapshot from the decoded answers to one poll (``ages``: of kept values)."""
    return BmsReading.from_parts(assemble(parts), extras=EXTRAS, ages=ages)


class DalyClassicDriver:
    """Polls one DALY board over a Link; several drivers may share one bus (one per address)."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 1) -> None:
        if not 1 <= address <= 0xC0:
            raise ValueError(f"DALY board address must be 1..192, not {address}")
        self._link = link
        self.address = address
        # frames this board sends for 0x95/0x96, learnt on the first poll: most send ceil(n/3)
        # (ceil(n/7)), some always 16 (3); knowing it spares waiting for frames that never come
        self._frames: dict[int, int] = {}
        self.slow = SlowReads()  # the reader sets how often (its bus's slow_every)

    async def _ask(
        self, cmd: int, count: int = 1, max_count: int | None = None, data: bytes = bytes(8)
    ) -> list[bytes]:
        frames = await self._link.exchange(
            request(cmd, self.address, data), framer, count, max_count=max_count
        )
        for frame in frames:
            frame_data(frame, cmd, self.address)
        return frames

    async def read(self) -> BmsReading:
        """Read the fast commands of POLL, the slow ones when due, and return one snapshot.

        The slow reads are due every ``slow.every`` polls, after MAX_AGE, and at once when the
        fast answer changes the direction, a MOSFET or the alarms (cells, balancing and the
        charger flag follow such a change).
        """
        try:
            fast = await self._read_commands(tagged(POLL, FAST))
        except (FrameError, LinkTimeout):
            self.slow.owed = True  # after a missed poll (asleep, a lost line) everything is read
            raise
        now = time.monotonic()
        signal = (fast["state"], fast["charge_mos"], fast["discharge_mos"], tuple(fast["alarms"]))
        if self.slow.due(now, signal):
            self.slow.keep(await self._read_commands(tagged(POLL, SLOW)), now)
        return to_reading(self.slow.parts | fast, self.slow.ages(now))

    async def _read_commands(self, commands: Iterable[int]) -> dict[str, Any]:
        """Ask each command in turn and decode the answers; 0x94 must come before 0x95/0x96."""
        frames: list[bytes] = []
        counts: dict[str, Any] = {}
        for cmd in commands:
            if cmd == CELLS:
                needed = max(1, math.ceil(int(counts["cell_count"]) / 3))
                frames += await self._ask_multi(CELLS, needed, MAX_CELL_FRAMES)
            elif cmd == TEMPS:
                temps = int(counts["temperature_count"])
                if temps:
                    frames += await self._ask_multi(TEMPS, math.ceil(temps / 7), MAX_TEMP_FRAMES)
            else:
                answer = await self._ask(cmd)
                frames += answer
                if cmd == STATUS:
                    counts = decode_frames(answer)
        return decode_frames(frames)

    async def _ask_multi(self, cmd: int, needed: int, most: int) -> list[bytes]:
        """A multi-frame answer: wait for extra frames only until the board's habit is known."""
        known = self._frames.get(cmd)
        if known is not None and known >= needed:
            return await self._ask(cmd, known, known)
        frames = await self._ask(cmd, needed, most)
        self._frames[cmd] = len(frames)
        return frames

    async def reset(self) -> None:
        """Restart the BMS (0x00); it answers again once it is back (see the reader's read-back)."""
        await self._link.exchange(request(RESET, self.address), framer)

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Switch the charge or discharge MOSFET; return the state read back with 0x93."""
        cmd = CHARGE_MOS if charge else DISCHARGE_MOS
        await self._ask(cmd, data=bytes((int(on),)) + bytes(7))
        await asyncio.sleep(0)  # let the board apply it before the read-back
        state = decode_frames(await self._ask(MOS))
        return bool(state["charge_mos" if charge else "discharge_mos"])

    async def wake(self) -> None:
        """A harmless read (0x90) that keeps a board from going to sleep."""
        await self._ask(SOC)

    async def read_settings(self) -> dict[str, Any]:
        """The rated capacity and nominal cell voltage (0x50), by SETPOINTS key."""
        return pick(SETPOINTS, decode_frames(await self._ask(RATED)))

    async def write_setting(
        self, key: str, value: float, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Refuse: DALY classic documents no settings write (SettingError names why)."""
        check_write(SETPOINTS, current, key, value)
        raise AssertionError("unreachable: every DALY classic setting is read-only")

    async def set_soc(self, soc: float) -> float:
        """Set the SOC; return the SOC read back with 0x90."""
        frames = await self._link.exchange(set_soc_request(soc, self.address), framer)
        frame_data(frames[0], SET_SOC, self.address)
        return float(decode_frames(await self._ask(SOC))["soc"])


Driver = DalyClassicDriver


async def probe(link: Link, address: int, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: 0x90 (voltage, SOC), then 0x94 for the cell count."""
    soc = await link.exchange(request(SOC, address), framer)
    frame_data(soc[0], SOC, address)
    await asyncio.sleep(0.12)  # boards want a quiet gap between frames
    status = await link.exchange(request(STATUS, address), framer)
    frame_data(status[0], STATUS, address)
    parts = decode_frames([soc[0], status[0]])
    return ProbeAnswer(int(parts["cell_count"]), parts["pack_voltage"], parts["soc"])


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="DALY (classic, UART/RS485)",
    manufacturer="DALY",
    model="DALY BMS (UART protocol)",
    baudrates=(BAUDRATE,),
    addresses=(1, 0xC0),  # host address 0x3F + board must fit in a byte
    scan=(ScanStep(BAUDRATE, range(1, 17)),),  # boards 1..16 unless the user names others
    soc_setting=True,
)

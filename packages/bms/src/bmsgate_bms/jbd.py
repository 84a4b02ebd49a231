"""JBD "smart BMS" (Jiabaida; sold as Overkill Solar and Xiaoxiang): binary ``DD ... 77`` frames.

Facts (NEW_MAKES.md section 1; JBD "General Protocol V4" PDF in syssi/esphome-jbd-bms:docs;
the EEPROM register map of bms-tools' JBD_REGISTER_MAP.md): 9600 8N1, big-endian, no bus address
(one BMS per line). Request ``DD A5|5A register length data[n] checksum u16 77`` (A5 = read,
5A = write); answer ``DD register status length data[n] checksum u16 77`` with status 0 = OK.
The checksum is 0x10000 minus the byte sum of register/status, length and data. No I/O above
``JbdDriver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import ChecksumError, FrameError, LengthError, LinkTimeout
from .fields import Field, decode, read_int
from .link import Link
from .plausible import Limits
from .polling import FAST, SLOW, SlowReads, Tier
from .reading import BmsReading
from .setpoints import Setpoint, SettingError, check_write

NAME: Final = "jbd"
BAUDRATE: Final = 9600
LIMITS: Final = Limits(max_current=500.0)  # JBD boards are sold up to ~300 A
START: Final = 0xDD
END: Final = 0x77
READ: Final = 0xA5
WRITE: Final = 0x5A
MIN_FRAME_LEN: Final = 7  # DD, register/status, ..., length 0, checksum 2, 77

# registers
ENTER_FACTORY: Final = 0x00  # data 56 78
EXIT_FACTORY: Final = 0x01  # data 00 00 (28 28 would save the EEPROM: never sent)
BASIC: Final = 0x03
CELLS: Final = 0x04
HARDWARE: Final = 0x05
# How often each read goes on the wire (bmsgate_bms.polling): the model text is slow; a board
# that never answers it is not asked again.
POLL: Final[dict[int, Tier]] = {BASIC: FAST, CELLS: FAST, HARDWARE: SLOW}
ERROR_COUNTS: Final = 0xAA
MOS_CONTROL: Final = 0xE1  # data 00 XX: bit0 = charge MOS forced off, bit1 = discharge
FACTORY_KEY: Final = b"\x56\x78"
TEMP_OFFSET: Final = 2731  # [0.1 K] at 0 °C
SOFTWARE_LOCK_BIT: Final = 12  # protection bit set while 0xE1 forces a MOSFET off

BalanceOrder = Literal["pdf", "reversed"]
# which bit of the balance words names which cell (NEW_MAKES.md 1.8.4, docs/protocols/jbd.md)
VARIANTS: Final[dict[str, tuple[int, int]]] = {"pdf": (1, 1), "reversed": (1, 1)}

# 0x03 basic information, offsets into the answer's data
BASIC_FIELDS: Final = (
    Field("pack_voltage", 0, 2, scale=0.01),  # [V]
    Field("current", 2, 2, signed=True, scale=0.01),  # [A], + = charging on the wire
    Field("remaining_capacity", 4, 2, scale=0.01),  # [Ah]
    Field("nominal_capacity", 6, 2, scale=0.01),  # [Ah]
    Field("cycles", 8, 2),
    Field("date_raw", 10, 2),  # day bits 0-4, month 5-8, year - 2000 bits 9-15
    Field("balance_low", 12, 2),  # cells 1-16
    Field("balance_high", 14, 2),  # cells 17-32
    Field("protection_raw", 16, 2),
    Field("software_raw", 18, 1),  # nibbles: 0x12 = "1.2"
    Field("soc", 19, 1),  # [%]
    Field("fet_raw", 20, 1),  # bit0 charge MOS on, bit1 discharge MOS on
    Field("cell_count", 21, 1),
    Field("ntc_count", 22, 1),
)
BASIC_LEN: Final = 23  # the data before the NTC temperatures

# protection bits of 0x03 -> alarm codes (bmsgate_bms.alarms); bit 12 is a state, not an alarm
PROTECTION_BITS: Final[tuple[str | None, ...]] = (
    "cell_overvoltage",
    "cell_undervoltage",
    "pack_overvoltage",
    "pack_undervoltage",
    "charge_overtemp",
    "charge_undertemp",
    "discharge_overtemp",
    "discharge_undertemp",
    "charge_overcurrent",
    "discharge_overcurrent",
    "discharge_short_circuit",
    "afe_fault",
    None,  # MOS software lock: reported as extras["mos_software_lock"]
)
ERROR_COUNT_NAMES: Final = (
    "short_circuit",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overtemp",
    "charge_undertemp",
    "discharge_overtemp",
    "discharge_undertemp",
    "pack_overvoltage",
    "pack_undervoltage",
)


# EEPROM settings read by ``JbdDriver.read_settings``: register -> name, scale, unit in comment
SETTINGS: Final[dict[int, Field]] = {
    0x10: Field("design_capacity", 0, 2, scale=0.01),  # [Ah]
    0x11: Field("cycle_capacity", 0, 2, scale=0.01),  # [Ah]
    0x17: Field("cycle_count", 0, 2),
    0x18: Field("charge_overtemp", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x19: Field("charge_overtemp_release", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1A: Field("charge_undertemp", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1B: Field("charge_undertemp_release", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1C: Field("discharge_overtemp", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1D: Field("discharge_overtemp_release", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1E: Field("discharge_undertemp", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x1F: Field("discharge_undertemp_release", 0, 2, offset=-TEMP_OFFSET, scale=0.1),  # [°C]
    0x20: Field("pack_overvoltage", 0, 2, scale=0.01),  # [V]
    0x21: Field("pack_overvoltage_release", 0, 2, scale=0.01),  # [V]
    0x22: Field("pack_undervoltage", 0, 2, scale=0.01),  # [V]
    0x23: Field("pack_undervoltage_release", 0, 2, scale=0.01),  # [V]
    0x24: Field("cell_overvoltage", 0, 2, scale=0.001),  # [V]
    0x25: Field("cell_overvoltage_release", 0, 2, scale=0.001),  # [V]
    0x26: Field("cell_undervoltage", 0, 2, scale=0.001),  # [V]
    0x27: Field("cell_undervoltage_release", 0, 2, scale=0.001),  # [V]
    0x28: Field("charge_overcurrent", 0, 2, signed=True, scale=0.01),  # [A]
    0x29: Field("discharge_overcurrent", 0, 2, signed=True, scale=0.01),  # [A], negative
    0x2A: Field("balance_start", 0, 2, signed=True, scale=0.001),  # [V]
    0x2B: Field("balance_window", 0, 2, scale=0.001),  # [V]
    0x2D: Field("function_config", 0, 2),  # bit2 balancer on, bit3 only while charging
    0x2F: Field("cell_count", 0, 2),
}


def _unit(key: str) -> str:
    """The SI unit a SETTINGS value is decoded in (see the comments above)."""
    if key.endswith("capacity"):
        return "Ah"
    if "temp" in key:
        return "°C"
    if "voltage" in key or key.startswith("balance_"):
        return "V"
    return "A" if key.endswith("current") else ""


# the same registers as the reader's settings table: read only, bmsgate writes none of them
SETPOINTS: Final = tuple(Setpoint(f.key, _unit(f.key)) for f in SETTINGS.values())


# --- requests --------------------------------------------------------------------------------
def checksum(body: bytes) -> int:
    """0x10000 minus the byte sum, 16 bits (the JBD PDF's "sum, invert, plus one")."""
    return (0x10000 - sum(body)) & 0xFFFF


def request(register: int, data: bytes = b"", *, write: bool = False) -> bytes:
    """A read (A5) or write (5A) request for ``register``."""
    body = bytes((register, len(data))) + data
    return (
        bytes((START, WRITE if write else READ))
        + body
        + checksum(body).to_bytes(2, "big")
        + bytes((END,))
    )


def mos_request(charge_off: bool, discharge_off: bool) -> bytes:
    """0xE1: force the MOSFETs off (True) or release them to the BMS (False)."""
    return request(MOS_CONTROL, bytes((0, charge_off | discharge_off << 1)), write=True)


def enter_factory_request() -> bytes:
    """Factory mode: the EEPROM registers answer only inside it."""
    return request(ENTER_FACTORY, FACTORY_KEY, write=True)


def exit_factory_request() -> bytes:
    """Leave factory mode without saving anything."""
    return request(EXIT_FACTORY, b"\x00\x00", write=True)


# --- framing ---------------------------------------------------------------------------------
def _frame_ok(frame: bytes) -> bool:
    return frame[-1] == END and checksum(frame[2:-3]) == read_int(frame, len(frame) - 3, 2)


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next checksum-valid frame, request or answer (see link.Framer)."""
    start = buf.find(bytes((START,)))
    if start < 0:
        return len(buf), None
    if start > 0:
        return start, None
    if len(buf) < 4:
        return 0, None
    total = MIN_FRAME_LEN + buf[3]
    if len(buf) < total:
        # a DD in junk promises a long frame: a complete frame behind it must not wait for it
        return _later_frame(buf), None
    frame = bytes(buf[:total])
    if not _frame_ok(frame):
        return 1, None  # a DD in junk or data: resynchronise on the next one
    return total, frame


def _complete(buf: bytes) -> bool:
    """``buf`` starts with a whole valid frame."""
    return (
        len(buf) >= 4
        and len(buf) >= MIN_FRAME_LEN + buf[3]
        and _frame_ok(buf[: MIN_FRAME_LEN + buf[3]])
    )


def _later_frame(buf: bytes) -> int:
    """Where a complete valid frame starts after position 0, else 0 (wait for more bytes)."""
    at = buf.find(START, 1)
    while at > 0:
        if _complete(buf[at:]):
            return at
        at = buf.find(START, at + 1)
    return 0


def is_request(frame: bytes) -> bool:
    """A request carries A5/5A where an answer carries the register it answers."""
    return frame[1] in (READ, WRITE)


def response_framer(buf: bytes) -> tuple[int, bytes | None]:
    """``framer`` that drops requests (another master's, or an echo the link did not catch)."""
    used, frame = framer(buf)
    if frame is not None and is_request(frame):
        return used, None
    return used, frame


def split_frames(data: bytes) -> list[bytes]:
    """Every frame in ``data``; LengthError/ChecksumError if anything else is left."""
    frames: list[bytes] = []
    rest = data
    while rest:
        used, frame = framer(rest)
        if frame is None:
            if used == 0:
                raise LengthError(f"incomplete JBD frame: {rest.hex(' ')}")
            if rest[0] == START:
                raise ChecksumError(f"JBD frame with a bad checksum or end byte: {rest.hex(' ')}")
            raise FrameError(f"not a JBD frame: {rest[:used].hex(' ')}")
        frames.append(frame)
        rest = rest[used:]
    if not frames:
        raise LengthError("no bytes")
    return frames


def answer_data(frame: bytes, register: int | None = None) -> bytes:
    """The data of an OK answer (to ``register`` if given); FrameError otherwise."""
    if is_request(frame):
        raise FrameError("a request, not an answer")
    if register is not None and frame[1] != register:
        raise FrameError(f"expected an answer to register 0x{register:02X}, got 0x{frame[1]:02X}")
    if frame[2] != 0:
        raise FrameError(f"the BMS refused register 0x{frame[1]:02X}: status 0x{frame[2]:02X}")
    return frame[4:-3]


# --- decoding --------------------------------------------------------------------------------
def balancing_cells(low: int, high: int, cells: int, order: BalanceOrder = "pdf") -> list[int]:
    """1-based cells being balanced.

    ``pdf``: bit n of the first word = cell n + 1, the second word cells 17-32 (JBD PDF,
    aiobmsble, dbus-serialbattery). ``reversed``: the two words as one u32, bit (cells - 1 - i)
    = cell i + 1 (syssi/esphome-jbd-bms).
    """
    if order == "reversed":
        word = low << 16 | high
        return [i + 1 for i in range(cells) if word >> (cells - 1 - i) & 1]
    word = high << 16 | low
    return [n + 1 for n in range(min(cells, 32)) if word >> n & 1]


def decode_protection(raw: int) -> list[str]:
    """Alarm codes of the protection word; reserved bits as ``jbd_bit_<n>``."""
    codes = []
    for bit in range(16):
        if raw >> bit & 1 and bit != SOFTWARE_LOCK_BIT:
            code = PROTECTION_BITS[bit] if bit < len(PROTECTION_BITS) else None
            codes.append(code or f"jbd_bit_{bit}")
    return codes


def decode_basic(data: bytes, order: BalanceOrder = "pdf") -> dict[str, Any]:
    """The 0x03 answer's data in pack-state names; bytes after the NTCs are ignored."""
    if len(data) < BASIC_LEN:
        raise LengthError(f"0x03 data is {len(data)} bytes, at least {BASIC_LEN} expected")
    raw = decode(BASIC_FIELDS, data)
    ntcs = int(raw["ntc_count"])
    if len(data) < BASIC_LEN + 2 * ntcs:
        raise LengthError(f"0x03 data too short for {ntcs} temperature sensors")
    date, cells, software = int(raw["date_raw"]), int(raw["cell_count"]), int(raw["software_raw"])
    protection = int(raw["protection_raw"])
    balancing = balancing_cells(int(raw["balance_low"]), int(raw["balance_high"]), cells, order)
    fet = int(raw["fet_raw"])
    return {
        "pack_voltage": raw["pack_voltage"],
        "current": raw["current"],
        "remaining_capacity": raw["remaining_capacity"],
        "nominal_capacity": raw["nominal_capacity"],
        "cycles": int(raw["cycles"]),
        "soc": raw["soc"],
        "cell_count": cells,
        "temperatures": [
            round((read_int(data, BASIC_LEN + 2 * i, 2) - TEMP_OFFSET) / 10, 1) for i in range(ntcs)
        ],
        "charge_mos": bool(fet & 1),
        "discharge_mos": bool(fet & 2),
        "balancing": bool(balancing),
        "balancing_cells": balancing,
        "alarms": decode_protection(protection),
        "protection_raw": protection,
        "mos_software_lock": bool(protection >> SOFTWARE_LOCK_BIT & 1),
        "software_version": f"{software >> 4}.{software & 0xF}",
        "manufacture_date": f"{2000 + (date >> 9)}-{date >> 5 & 0xF:02d}-{date & 0x1F:02d}",
    }


def decode_cells(data: bytes) -> list[float]:
    """0x04: one u16 [mV] per cell; a checksum-valid 0 mV is real (an unconnected cell)."""
    if len(data) % 2:
        raise LengthError(f"0x04 data has an odd length {len(data)}")
    return [read_int(data, i, 2) / 1000 for i in range(0, len(data), 2)]


def describe_request(frame: bytes) -> dict[str, Any]:
    """A request: read or write of which register, with the value written."""
    data = frame[4:-3]
    out: dict[str, Any] = {"request": "read" if frame[1] == READ else "write", "register": frame[2]}
    if len(data) == 2:
        out["value"] = read_int(data, 0, 2)
    elif data:
        out["data_hex"] = data.hex()
    return out


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode one request; an answer is a FrameError."""
    frames = split_frames(data)
    if len(frames) != 1 or not is_request(frames[0]):
        raise FrameError(f"{data.hex(' ')} is not one JBD request (DD A5 or DD 5A)")
    return describe_request(frames[0])


def decode_frame(frame: bytes, order: BalanceOrder = "pdf") -> dict[str, Any]:
    """One answer in pack-state names; a request is a FrameError."""
    if is_request(frame):
        what = describe_request(frame)
        raise FrameError(
            f"{frame.hex(' ')} is a request ({what['request']} of register "
            f"0x{frame[2]:02X}), not an answer"
        )
    register, status = frame[1], frame[2]
    if status != 0:
        return {"register": register, "status": status, "refused": True}
    data = frame[4:-3]
    if register == BASIC:
        return decode_basic(data, order)
    if register == CELLS:
        cells = decode_cells(data)
        return {"cell_voltages": cells, "cell_count": len(cells)}
    if register == HARDWARE:
        return decode_hardware(data)
    if register == ERROR_COUNTS:
        if len(data) < 2 * len(ERROR_COUNT_NAMES):
            raise LengthError(f"0xAA data is {len(data)} bytes, 22 expected")
        counts = {n: read_int(data, 2 * i, 2) for i, n in enumerate(ERROR_COUNT_NAMES)}
        return {"error_counts": counts}
    if register in SETTINGS and len(data) == 2:
        return decode((SETTINGS[register],), data)
    return {"register": register, "status": status, "data_hex": data.hex()}


def decode_frames(frames: Iterable[bytes], order: BalanceOrder = "pdf") -> dict[str, Any]:
    """Merge the decoded frames of one poll (0x03 then 0x04, say)."""
    out: dict[str, Any] = {}
    for frame in frames:
        out |= decode_frame(frame, order)
    return out


def decode_hex(data: bytes, *, variant: str | None = None, **_: Any) -> dict[str, Any]:
    """Decode pasted frames for ``bmsgate decode``; FrameError for anything broken."""
    return decode_frames(split_frames(data), _order(variant))


def _order(variant: str | None) -> BalanceOrder:
    return "reversed" if variant == "reversed" else "pdf"


def decode_hardware(data: bytes) -> dict[str, Any]:
    """The hardware model text of a 0x05 answer."""
    return {"hardware_model": data.decode("ascii", errors="replace").strip("\x00 ")}


EXTRAS: Final = (
    "mos_software_lock",
    "software_version",
    "manufacture_date",
    "hardware_model",
    "protection_raw",
)


def to_reading(parts: Mapping[str, Any], ages: Mapping[str, float] | None = None) -> BmsReading:
    """A snapshot from the decoded 0x03 and 0x04 answers (``ages``: of kept values)."""
    if "cell_voltages" in parts and len(parts["cell_voltages"]) != parts.get("cell_count"):
        raise FrameError(
            f"0x04 carries {len(parts['cell_voltages'])} cells, 0x03 says {parts.get('cell_count')}"
        )
    return BmsReading.from_parts(parts, extras=EXTRAS, ages=ages)


# --- driver ----------------------------------------------------------------------------------
class JbdDriver:
    """Polls the one JBD board on a line: 0x03 and 0x04; 0xE1 switches its MOSFETs."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 1, *, variant: str | None = None) -> None:
        if address != 1:
            raise ValueError("JBD has no bus address: one BMS per line, address 1")
        if variant not in (None, *VARIANTS):
            raise ValueError(f"JBD variant is one of {', '.join(VARIANTS)}, not {variant!r}")
        self._link = link
        self.address = address
        self.order = _order(variant)
        self.slow = SlowReads()  # the reader sets how often (its bus's slow_every)

    async def _ask(self, req: bytes) -> bytes:
        frames = await self._link.exchange(req, response_framer)
        return answer_data(frames[0], req[2])

    async def _basic(self) -> dict[str, Any]:
        return decode_basic(await self._ask(request(BASIC)), self.order)

    async def read(self) -> BmsReading:
        """0x03 then 0x04; the hardware model (0x05) when POLL's slow reads are due."""
        parts = await self._basic()
        parts["cell_voltages"] = decode_cells(await self._ask(request(CELLS)))
        now = time.monotonic()
        await self.slow.optional(now, self._hardware)
        return to_reading(parts | self.slow.parts, self.slow.ages(now))

    async def _hardware(self) -> dict[str, Any]:
        return decode_hardware(await self._ask(request(HARDWARE)))

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """0xE1 write, then 0x03 read back: the MOSFET's state as the BMS reports it.

        0xE1 sets both MOSFETs at once. The other one stays as it is: forced off only if it is
        off now while the software lock (protection bit 12) says a forced-off MOSFET exists, so
        a MOSFET a protection opened is not forced off for good.
        """
        now = await self._basic()
        locked = now["mos_software_lock"]
        charge_off = not on if charge else locked and not now["charge_mos"]
        discharge_off = not on if not charge else locked and not now["discharge_mos"]
        frames = await self._link.exchange(mos_request(charge_off, discharge_off), response_framer)
        answer_data(frames[0], MOS_CONTROL)
        await asyncio.sleep(0)
        after = await self._basic()
        return bool(after["charge_mos" if charge else "discharge_mos"])

    async def set_soc(self, soc: float) -> float:
        """Refuse: JBD has no SOC register (only capacity-voltage tables in the EEPROM)."""
        raise UnsupportedCommand("JBD has no command to set the SOC")

    async def write_setting(
        self, key: str, value: float, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Refuse before a byte is sent: bmsgate writes no JBD EEPROM register."""
        check_write(SETPOINTS, current, key, value)  # raises: none is writable
        raise SettingError(f"{key} is read-only: bmsgate never writes it")

    async def read_settings(self) -> dict[str, Any]:
        """The EEPROM settings (SETTINGS) read in factory mode, left without saving."""
        frames = await self._link.exchange(enter_factory_request(), response_framer)
        answer_data(frames[0], ENTER_FACTORY)
        out: dict[str, Any] = {}
        try:
            for register, field in SETTINGS.items():
                out |= decode((field,), await self._ask(request(register)))
        finally:
            with contextlib.suppress(FrameError, LinkTimeout):
                await self._link.exchange(exit_factory_request(), response_framer)
        return out


Driver = JbdDriver


async def probe(link: Link, address: int = 1, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one 0x03 read (no bus address: one BMS per line)."""
    frames = await link.exchange(request(BASIC), response_framer)
    parts = decode_basic(answer_data(frames[0], BASIC))
    return ProbeAnswer(int(parts["cell_count"]), parts["pack_voltage"], parts["soc"])


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="JBD / Overkill / Xiaoxiang",
    manufacturer="JBD",
    model="JBD smart BMS",
    baudrates=(BAUDRATE,),
    addresses=(1, 1),  # no address byte: one BMS per line
    variants=VARIANTS,
    scan=(ScanStep(BAUDRATE, range(1, 2)),),
)

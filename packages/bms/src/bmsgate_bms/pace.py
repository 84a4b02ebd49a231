"""Pace (PBmsTools "paceic" v2.5) on RS485/RS232: ASCII ``~25 ADR 46 CID2 LENGTH INFO CHKSUM CR``.

Facts (NEW_MAKES.md section 3: the PACE RS485 PDF (2018-06-15) in syssi/esphome-pace-bms:docs,
the PACEEX RS232 V3.1 document in fancyui/Gobel-Battery-HA-Addon, nkinnan/esphome-pace-bms's
v25 decoder and its PBmsTools captures, batmon-ha): the framing of bmsgate_bms.yd1363 with VER
0x25; packs 0-15 by DIP switch, each answering only its own address (and, for 0x42/0x44, its
own address again as the INFO's command). Units differ from Seplos: pack voltage in mV,
temperatures (raw - 2730) / 10, MOSFET before ambient, SOC only from firmware with P >= 9.
An answer does not say which command it answers: the decoder is told (``command``).
No I/O above ``PaceDriver``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

from . import yd1363
from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import FrameError, LengthError
from .fields import Field, decode, read_int
from .link import Link
from .plausible import Limits
from .polling import FAST, SLOW, SlowReads, Tier
from .reading import BmsReading
from .yd1363 import bits

NAME: Final = "pace"
BAUDRATE: Final = 9600  # both PACE documents; some packs are set to 19200
FAST_BAUDRATE: Final = 19200
LIMITS: Final = Limits(max_current=400.0)
VERSION: Final = 0x25
CID1: Final = 0x46
MAX_ADDRESS: Final = yd1363.MAX_ADDRESS
ALL_PACKS: Final = 0xFF  # 0x42 COMMAND on the master's RS232 port: every pack in one answer
TEMP_OFFSET: Final = 2730  # [0.1 K] at 0 °C (Seplos: 2731)
ABSENT: Final = 0x8000  # temperature of a sensor that is not fitted (RS232 V3.1)

ANALOG: Final = 0x42
STATUS: Final = 0x44
PACK_NUMBER: Final = 0x90
CHARGE_MOS: Final = 0x9A
DISCHARGE_MOS: Final = 0x9B
VERSION_INFO: Final = 0xC1
SERIAL_INFO: Final = 0xC2
# How often each read goes on the wire (bmsgate_bms.polling): the version text is slow; a
# board that never answers it is not asked again.
POLL: Final[dict[int, Tier]] = {ANALOG: FAST, STATUS: FAST, VERSION_INFO: SLOW}
REQUEST_NAMES: Final = {
    ANALOG: "analog",
    STATUS: "status",
    PACK_NUMBER: "pack_number",
    0x99: "switch",
    CHARGE_MOS: "charge_mos",
    DISCHARGE_MOS: "discharge_mos",
    0x9C: "shutdown",
    0xB1: "read_time",
    0xB2: "set_time",
    VERSION_INFO: "version",
    SERIAL_INFO: "serial",
}

Order = Literal["pdf", "u16"]
# which bit of the two balancing bytes is which cell (docs/protocols/pace.md)
VARIANTS: Final[dict[str, tuple[int, int]]] = {"pdf": (0, MAX_ADDRESS), "u16": (0, MAX_ADDRESS)}

# 0x42 after the temperatures (offset k into the INFO, or into a pack's block)
TAIL_FIELDS: Final = (
    Field("current", 0, 2, signed=True, scale=0.01),  # [A], + = charging
    Field("pack_voltage", 2, 2, scale=0.001),  # [V] from mV
    Field("remaining_capacity", 4, 2, scale=0.01),  # [Ah]
    Field("custom_count", 6, 1),  # P: 3 on old firmware, 9 with SOC and SOH
    Field("full_capacity", 7, 2, scale=0.01),  # [Ah]
    Field("cycles", 9, 2),
    Field("nominal_capacity", 11, 2, scale=0.01),  # [Ah] design capacity
)
TAIL_LEN: Final = 13
EXTENDED_FIELDS: Final = (  # P >= 9, after the design capacity
    Field("soc", 0, 1),  # [%]
    Field("charged_total", 1, 4),  # [Ah] cumulative; not to be trusted (0x4E204E20 seen)
    Field("discharged_total", 5, 4),  # [Ah]
    Field("soh", 9, 1),  # [%]
    Field("independent_voltage", 10, 2, scale=0.001),  # [V]
    Field("independent_current", 12, 2, signed=True, scale=0.01),  # [A]
)
EXTENDED_LEN: Final = 14

# 0x44 state bytes -> alarm codes, bit 0 first (PACE RS485 PDF charts A.16-A.23)
PROTECT_1: Final = (
    "cell_overvoltage",
    "cell_undervoltage",
    "pack_overvoltage",
    "pack_undervoltage",
    "charge_overcurrent",
    "discharge_overcurrent",
    "discharge_short_circuit",
    None,
)
# fmt: off
PROTECT_2: Final = (
    "charge_overtemp",
    "discharge_overtemp",
    "charge_undertemp",
    "discharge_undertemp",
    "mos_overtemp",
    "box_overtemp",
    None,
    None,
)  # (bit 6 ambient low; bit 7 fully charged: not a fault)
# fmt: on
FAULTS: Final = (
    "charge_mos_fault",
    "discharge_mos_fault",
    "temp_sensor_fault",
    None,
    None,
    "cell_sampling_fault",
    None,
    None,
)
WARN_1: Final = (*(f"{c}_warning" for c in PROTECT_1[:6] if c), None, None)
WARN_2: Final = (
    "charge_overtemp_warning",
    "discharge_overtemp_warning",
    "charge_undertemp_warning",
    "discharge_undertemp_warning",
    None,
    None,
    None,
    "soc_low_warning",
)
# (name, bit table, offset from j = the byte after the temperature alarms)
STATE_BYTES: Final = (
    ("protect1", PROTECT_1, 3),
    ("protect2", PROTECT_2, 4),
    ("fault", FAULTS, 7),
    ("warn1", WARN_1, 10),
    ("warn2", WARN_2, 11),
)
FULLY_CHARGED_BIT: Final = 7  # protect state 2


# --- requests --------------------------------------------------------------------------------
def request(cid2: int, address: int, info: bytes | None = None) -> bytes:
    """A request to pack ``address``; 0x42/0x44 carry the address again as the command."""
    return yd1363.request("Pace", VERSION, CID1, cid2, address, info)


def mos_request(charge: bool, on: bool, address: int) -> bytes:
    """0x9A (charge) / 0x9B (discharge) with INFO 00 = on, 01 = off."""
    return request(CHARGE_MOS if charge else DISCHARGE_MOS, address, bytes((0 if on else 1,)))


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Any checked frame, request or answer (the sniffer's; the driver matches its address)."""
    return yd1363.framer(buf)


# --- decoding --------------------------------------------------------------------------------
def _sensors(raws: list[int]) -> dict[str, Any]:
    """Six sensors are cells 1-4, MOSFET, ambient (Seplos: ambient, then power); 0x8000 absent."""
    temps = [None if r == ABSENT else round((r - TEMP_OFFSET) / 10, 1) for r in raws]
    named: dict[str, Any] = {}
    if len(temps) >= 6:
        named = {"mos_temperature": temps[-2], "ambient_temperature": temps[-1]}
        temps = temps[:-2]
    return {"temperatures": [t for t in temps if t is not None]} | {
        k: v for k, v in named.items() if v is not None
    }


def decode_pack(block: bytes) -> dict[str, Any]:
    """One pack's analog values from M (cell count) on; extra bytes are tolerated."""
    volts, raws, tail = yd1363.cells_and_sensors(block)
    if len(block) < tail + TAIL_LEN:
        raise LengthError(f"analog block is {len(block)} bytes, {tail + TAIL_LEN} needed")
    values = decode(TAIL_FIELDS, block[tail:])
    custom = int(values.pop("custom_count"))
    rest = block[tail + TAIL_LEN :]
    if custom >= 9 and len(rest) >= EXTENDED_LEN:
        values |= decode(EXTENDED_FIELDS, rest)
    elif rest:  # a block that says P = 2 and still carries the SOC byte (RS232 all-packs)
        values["soc"] = rest[0]
    if "soc" not in values:  # the P = 3 layout has none: remaining of full, as nkinnan does
        full = values["full_capacity"]
        values["soc"] = round(100 * values["remaining_capacity"] / full, 1) if full else 0.0
    return {
        "cell_voltages": volts,
        "cell_count": len(volts),
        **_sensors(raws),
        **values,
        "cycles": int(values["cycles"]),
    }


def decode_analog(
    info: bytes, all_packs: bool | None = None, address: int | None = None
) -> dict[str, Any]:
    """0x42: one pack's values; with ``all_packs`` every pack's.

    Left open (None), byte 1 decides: the pack's own address echoed (RS485), or a pack count
    that differs from the answer's address and splits the rest evenly (the master's RS232).

    The all-packs answer is split by its length over the pack count, not by P: a real one
    says P = 2 and still carries full capacity, cycles, design capacity and SOC per pack.
    """
    second = read_int(info, 1, 1)
    if all_packs is None:
        all_packs = second not in (address, 0, 1) and (len(info) - 2) % second == 0
    if not all_packs:
        return {"pack_address": second} | decode_pack(info[2:])
    if second == 0 or (len(info) - 2) % second:
        raise LengthError(f"{len(info) - 2} bytes do not split into {second} packs")
    size = (len(info) - 2) // second
    packs = [decode_pack(info[2 + n * size : 2 + (n + 1) * size]) for n in range(second)]
    return {"pack_count": second, "packs": packs}


def balancing_cells(first: int, second: int, cells: int, order: Order = "pdf") -> list[int]:
    """1-based balancing cells: ``pdf`` byte 1 = cells 1-8; ``u16`` the two as one BE word."""
    word = first << 8 | second if order == "u16" else second << 8 | first
    return [n + 1 for n in bits(word, min(cells, 16))]


def decode_status(info: bytes, order: Order = "pdf") -> dict[str, Any]:
    """0x44: protections, faults and warnings as alarm codes; MOSFETs; balancing."""
    cells, j, cell_alarms = yd1363.status_head(info)
    read_int(info, j + 11, 1)  # LengthError if the answer stops before warn state 2
    alarms: list[str] = []
    for name, table, offset in STATE_BYTES:
        for bit in bits(info[j + offset]):
            if name == "protect2" and bit == FULLY_CHARGED_BIT:
                continue
            alarms.append(table[bit] or f"pace_{name}_bit{bit}")
    system = info[j + 5]
    balancing = balancing_cells(info[j + 8], info[j + 9], cells, order)
    return {
        "cell_count": cells,
        "alarms": alarms,
        "current_limiter": bool(system & 1),
        "charge_mos": bool(system & 2),
        "discharge_mos": bool(system & 4),
        "discharging": bool(system & 8),
        "charging": bool(system & 32),
        "fully_charged": bool(info[j + 4] >> FULLY_CHARGED_BIT & 1),
        "balancing": bool(balancing),
        "balancing_cells": balancing,
        "cell_alarms": cell_alarms,
    }


def decode_mos_answer(info: bytes) -> dict[str, Any]:
    """0x9A/0x9B: the indicator state after the command (bit1 charge, bit2 discharge MOS)."""
    state = read_int(info, 0, 1)
    return {"charge_mos": bool(state & 2), "discharge_mos": bool(state & 4)}


def decode_text(info: bytes) -> dict[str, Any]:
    """0xC1: the software/hardware version, 20 characters."""
    return {"firmware_version": info.decode("ascii", errors="replace").strip("\x00 ")}


def decode_answer(
    frame: yd1363.Frame, command: int | None, order: Order = "pdf", all_packs: bool | None = None
) -> dict[str, Any]:
    """One answer, decoded as the answer to ``command``."""
    if frame.version != VERSION:
        raise FrameError(f"VER 0x{frame.version:02X} is not Pace v2.5 (0x25)")
    out = yd1363.answer_head(frame, REQUEST_NAMES)
    if not frame.info:
        return out
    if command is None:
        raise yd1363.unsaid(
            "Pace", "66 = 0x42 analog values, 68 = 0x44 status, 154/155 = 0x9A/0x9B MOS, 193 = 0xC1"
        )
    if command == ANALOG:
        return out | decode_analog(frame.info, all_packs, frame.address)
    if command == STATUS:
        return out | decode_status(frame.info, order)
    if command in (CHARGE_MOS, DISCHARGE_MOS):
        return out | decode_mos_answer(frame.info)
    if command in (VERSION_INFO, SERIAL_INFO):
        return out | decode_text(frame.info)
    return out | {"info_hex": frame.info.hex()}


def _order(variant: str | None) -> Order:
    return "u16" if variant == "u16" else "pdf"


def decode_hex(
    data: bytes,
    *,
    command: int | None = None,
    cid2: int | None = None,
    variant: str | None = None,
    all_packs: bool | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Decode pasted answers (as text) to ``command``; FrameError for anything broken."""
    out: dict[str, Any] = {}
    which = command if command is not None else cid2
    for frame in yd1363.split(data):
        out |= decode_answer(frame, which, _order(variant), all_packs)
    return out


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode one request: which pack is asked what."""
    frames = yd1363.split(data)
    frame = frames[0]
    if len(frames) != 1 or frame.is_answer or frame.version != VERSION:
        raise FrameError("not one Pace request (VER 25, a command rather than a return code)")
    out = yd1363.request_fields(frame, REQUEST_NAMES)
    if frame.info:
        out["command"] = frame.info[0]
    return out


EXTRAS: Final = (
    "ambient_temperature",
    "full_capacity",
    "soh",
    "charging",
    "discharging",
    "current_limiter",
    "fully_charged",
    "firmware_version",
    "pack_address",
)


def to_reading(parts: Mapping[str, Any], ages: Mapping[str, float] | None = None) -> BmsReading:
    """A snapshot from the decoded 0x42 and 0x44 answers (``ages``: of kept values)."""
    return BmsReading.from_parts(parts, extras=EXTRAS, ages=ages)


# --- driver ----------------------------------------------------------------------------------
class PaceDriver:
    """Polls one Pace pack (address 0-15) on a shared bus: 0x42 and 0x44; 0x9A/0x9B switch MOS."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 1, *, variant: str | None = None) -> None:
        yd1363.check_address("Pace", address)
        if variant not in (None, *VARIANTS):
            raise ValueError(f"Pace variant is one of {', '.join(VARIANTS)}, not {variant!r}")
        self._link = link
        self.address = address
        self.order = _order(variant)
        self._framer = yd1363.answer_framer(VERSION, address)
        self.slow = SlowReads()  # the reader sets how often (its bus's slow_every)

    async def _exchange(self, req: bytes) -> yd1363.Frame:
        return yd1363.parse((await self._link.exchange(req, self._framer))[0])

    async def _ask(self, cid2: int) -> dict[str, Any]:
        frame = await self._exchange(request(cid2, self.address))
        yd1363.answer_info(frame, REQUEST_NAMES[cid2])
        return decode_answer(frame, cid2, self.order, all_packs=False)

    async def read(self) -> BmsReading:
        """0x42 then 0x44; the version text (0xC1) when POLL's slow reads are due."""
        parts = await self._ask(ANALOG) | await self._ask(STATUS)
        now = time.monotonic()
        await self.slow.optional(now, lambda: self._ask(VERSION_INFO))
        return to_reading(parts | self.slow.parts, self.slow.ages(now))

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """0x9A/0x9B, then 0x44 read back: the MOSFET as the BMS reports it.

        A refusal (RTN 0x09: e.g. charge off while discharge is forced off) is not an error
        here: the read-back says the MOSFET did not change, and the caller reports that.
        """
        frame = await self._exchange(mos_request(charge, on, self.address))
        if frame.cid2 not in (0, 0x09):
            yd1363.answer_info(frame, "the MOS command")
        await asyncio.sleep(0)
        status = await self._ask(STATUS)
        return bool(status["charge_mos" if charge else "discharge_mos"])

    async def set_soc(self, soc: float) -> float:
        """Refuse: paceic v2.5 documents no SOC command."""
        raise UnsupportedCommand("Pace (paceic v2.5) has no command to set the SOC")


Driver = PaceDriver


async def probe(link: Link, address: int, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one 0x42 analog request."""
    answers = yd1363.answer_framer(VERSION, address)
    frames = await link.exchange(request(ANALOG, address), answers)
    frame = yd1363.parse(frames[0])
    parts = decode_analog(yd1363.answer_info(frame, "analog values"), all_packs=False)
    return ProbeAnswer(parts["cell_count"], parts["pack_voltage"], parts["soc"])


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="Pace (~25 ASCII)",
    manufacturer="Pace",
    model="Pace BMS (paceic v2.5)",
    baudrates=(BAUDRATE, FAST_BAUDRATE),
    addresses=(0, MAX_ADDRESS),  # DIP switches: 0 stand-alone, 1 master, 2-15 slaves
    variants=VARIANTS,
    scan=(
        ScanStep(BAUDRATE, range(0, MAX_ADDRESS + 1)),
        ScanStep(FAST_BAUDRATE, range(0, MAX_ADDRESS + 1), alternate=True),
    ),
)

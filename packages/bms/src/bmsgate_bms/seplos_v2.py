"""Seplos v2 (10E, 1101-series boards) on RS485: ASCII ``~20 ADR 46 CID2 LENGTH INFO CHKSUM CR``.

Facts (NEW_MAKES.md section 2: the Seplos "BMS Communication Protocol V2.0" PDF in
syssi/esphome-seplos-bms:docs, syssi's component and captures, dbus-serialbattery's seplos.py):
the framing of bmsgate_bms.yd1363 with VER 0x20 and CID1 0x46; packs 0-15 by DIP switch on one
bus, each answering only requests with its own address (and, for 0x42/0x44, its own address
again as the INFO's command group). An answer does not say which command it answers: the
decoder is told (``command``). Read-only: no MOS command is documented over RS485.
No I/O above ``SeplosDriver``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from . import yd1363
from .driver import ProbeAnswer, ProtocolInfo, ScanStep, UnsupportedCommand
from .errors import FrameError, LengthError
from .fields import Field, decode, read_int
from .link import Link
from .plausible import Limits
from .polling import FAST, SLOW, SlowReads, Tier
from .reading import BmsReading
from .yd1363 import bits

NAME: Final = "seplos_v2"
BAUDRATE: Final = 19200  # the 10E / 1101 boards in the field; the PDF says 9600 (docs/protocols)
SLOW_BAUDRATE: Final = 9600
LIMITS: Final = Limits(max_current=400.0)  # Seplos v2 boards are sold up to 200 A
VERSION: Final = 0x20
CID1: Final = 0x46  # LiFePO4 BMS
MAX_ADDRESS: Final = yd1363.MAX_ADDRESS
TEMP_OFFSET: Final = 2731  # [0.1 K] at 0 °C

TELEMETRY: Final = 0x42
ALARMS: Final = 0x44
PARAMETERS: Final = 0x47
PROTOCOL_VERSION: Final = 0x4F
VENDOR_INFO: Final = 0x51
# How often each read goes on the wire (bmsgate_bms.polling): the vendor text is slow; a board
# that never answers it is not asked again.
POLL: Final[dict[int, Tier]] = {TELEMETRY: FAST, ALARMS: FAST, VENDOR_INFO: SLOW}
REQUEST_NAMES: Final = {
    TELEMETRY: "telemetry",
    ALARMS: "alarms",
    0x45: "control",
    PARAMETERS: "parameters",
    0x49: "set_parameters",
    0x4B: "history",
    PROTOCOL_VERSION: "protocol_version",
    VENDOR_INFO: "vendor_info",
}

# 0x42 after the temperatures (offset k = 4 + 2 cells + 2 sensors into the INFO)
TAIL_FIELDS: Final = (
    Field("current", 0, 2, signed=True, scale=0.01),  # [A], + = charging
    Field("pack_voltage", 2, 2, scale=0.01),  # [V]
    Field("remaining_capacity", 4, 2, scale=0.01),  # [Ah]
    Field("custom_count", 6, 1),  # P = 10
    Field("full_capacity", 7, 2, scale=0.01),  # [Ah]
    Field("soc", 9, 2, scale=0.1),  # [%]
    Field("nominal_capacity", 11, 2, scale=0.01),  # [Ah] rated capacity
    Field("cycles", 13, 2),
    Field("soh", 15, 2, scale=0.1),  # [%]
    Field("port_voltage", 17, 2, scale=0.01),  # [V]
)
TAIL_LEN: Final = 19

# 0x44 alarm events (INFO j+3.. j+8, then j+15, j+16) -> alarm codes, bit 0 first. Event 2, 3,
# 5 and 6 as the V2.0 PDF tables 11-13 and dbus-serialbattery's seplos.py read them; the other
# bits are passed on as seplos_event<k>_bit<n>.
# fmt: off
EVENT_BITS: Final[dict[int, tuple[str | None, ...]]] = {
    2: ("cell_overvoltage_warning", "cell_overvoltage", "cell_undervoltage_warning",
        "cell_undervoltage", "pack_overvoltage_warning", "pack_overvoltage",
        "pack_undervoltage_warning", "pack_undervoltage"),
    3: ("charge_overtemp_warning", "charge_overtemp", "charge_undertemp_warning",
        "charge_undertemp", "discharge_overtemp_warning", "discharge_overtemp",
        "discharge_undertemp_warning", "discharge_undertemp"),
    5: ("charge_overcurrent_warning", "charge_overcurrent", "discharge_overcurrent_warning",
        "discharge_overcurrent", None, "discharge_short_circuit", None, None),
    6: (None, None, "soc_low_warning", "soc_low", None, None, None, None),
}
# fmt: on
HEATING_BIT: Final = (4, 6)  # event 4 bit 6: cell heating on, a state rather than an alarm
SYSTEM_STATES: Final = {0: "discharging", 1: "charging", 2: "float", 4: "standby", 5: "shutdown"}


# --- requests --------------------------------------------------------------------------------
def request(cid2: int, address: int, info: bytes | None = None) -> bytes:
    """A request to pack ``address``; 0x42/0x44 carry the address again as command group."""
    return yd1363.request("Seplos", VERSION, CID1, cid2, address, info)


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Any checked frame, request or answer (the sniffer's; the driver matches its address)."""
    return yd1363.framer(buf)


# --- decoding --------------------------------------------------------------------------------
def _temperature(raw: int) -> float:
    return round((raw - TEMP_OFFSET) / 10, 1)


def _sensors(temps: list[float]) -> dict[str, Any]:
    """Six sensors are cells 1-4, ambient, power (MOSFET); fewer are all cell sensors."""
    if len(temps) >= 6:
        return {
            "temperatures": temps[:-2],
            "ambient_temperature": temps[-2],
            "mos_temperature": temps[-1],
        }
    return {"temperatures": temps}


def decode_telemetry(info: bytes) -> dict[str, Any]:
    """0x42: cells, temperatures, current, voltage, capacities, SOC, SOH, cycles."""
    volts, raws, after = yd1363.cells_and_sensors(info[2:])
    temps = [_temperature(raw) for raw in raws]
    tail = 2 + after
    if len(info) < tail + TAIL_LEN:
        raise LengthError(f"0x42 INFO is {len(info)} bytes, {tail + TAIL_LEN} needed")
    values = decode(TAIL_FIELDS, info[tail:])
    del values["custom_count"]
    return {
        "command_group": info[1],
        "cell_voltages": volts,
        "cell_count": len(volts),
        **_sensors(temps),
        **values,
        "cycles": int(values["cycles"]),
    }


def decode_events(events: Mapping[int, int]) -> list[str]:
    """Alarm codes of the alarm event bytes (event number -> byte)."""
    codes = []
    for event, byte in sorted(events.items()):
        names = EVENT_BITS.get(event, (None,) * 8)
        for bit in bits(byte):
            if (event, bit) != HEATING_BIT:
                codes.append(names[bit] or f"seplos_event{event}_bit{bit}")
    return codes


def decode_alarms(info: bytes) -> dict[str, Any]:
    """0x44: alarm events, MOSFET switches, balancing and the system state."""
    cells, j, cell_alarms = yd1363.status_head(info)
    switches = read_int(info, j + 9, 1)  # LengthError if the answer stops before it
    events = {k + 1: info[j + 3 + k] for k in range(6)}
    events |= {k + 7: info[j + 15 + k] for k in range(2) if j + 15 + k < len(info)}
    balance = read_int(info, j + 10, 2, byteorder="little")  # byte 1 = cells 1-8
    system = read_int(info, j + 12, 1)
    disconnected = info[j + 13] | info[j + 14] << 8 if j + 14 < len(info) else 0
    cells_balancing = [n + 1 for n in bits(balance, min(cells, 16))]
    return {
        "cell_count": cells,
        "alarms": decode_events(events),
        "discharge_mos": bool(switches & 1),
        "charge_mos": bool(switches & 2),
        "current_limiter": bool(switches & 4),
        "heater": bool(switches & 8),
        "heating": bool(events[4] >> 6 & 1),
        "balancing": bool(cells_balancing),
        "balancing_cells": cells_balancing,
        "system_state": ",".join(SYSTEM_STATES[b] for b in bits(system) if b in SYSTEM_STATES),
        "disconnected_cells": [n + 1 for n in bits(disconnected, min(cells, 16))],
        "cell_alarms": cell_alarms,
    }


def decode_vendor(info: bytes) -> dict[str, Any]:
    """0x51: device name (10 characters), software version, manufacturer field (20)."""
    if len(info) < 12:
        raise LengthError(f"0x51 INFO is {len(info)} bytes, 32 expected")
    text = info.decode("ascii", errors="replace")
    return {
        "hardware_model": text[:10].strip(),
        "software_version": f"{info[10]}.{info[11]}",
        "manufacturer": text[12:32].strip(),
    }


DECODERS: Final = {TELEMETRY: decode_telemetry, ALARMS: decode_alarms, VENDOR_INFO: decode_vendor}


def decode_answer(frame: yd1363.Frame, command: int | None) -> dict[str, Any]:
    """One answer, decoded as the answer to ``command``."""
    out = yd1363.answer_head(frame, REQUEST_NAMES)
    if out.get("refused") or not frame.info:
        return out
    if command is None:
        raise yd1363.unsaid(
            "Seplos", "66 = 0x42 telemetry, 68 = 0x44 alarms, 81 = 0x51 vendor information"
        )
    decoder = DECODERS.get(command)
    if decoder is None:
        return out | {"info_hex": frame.info.hex()}
    return out | decoder(frame.info)


def _version_ok(frame: yd1363.Frame) -> yd1363.Frame:
    if frame.version != VERSION:
        raise FrameError(f"VER 0x{frame.version:02X} is not Seplos v2 (0x20)")
    return frame


def decode_hex(
    data: bytes, *, command: int | None = None, cid2: int | None = None, **_: Any
) -> dict[str, Any]:
    """Decode pasted answers (as text) to ``command``; FrameError for anything broken."""
    out: dict[str, Any] = {}
    for frame in yd1363.split(data):
        out |= decode_answer(_version_ok(frame), command if command is not None else cid2)
    return out


def decode_request(data: bytes, **_: Any) -> dict[str, Any]:
    """Decode one request: which pack is asked what."""
    frames = yd1363.split(data)
    frame = _version_ok(frames[0])
    if len(frames) != 1 or frame.is_answer:
        raise FrameError("not one Seplos request (an answer carries a return code)")
    out = yd1363.request_fields(frame, REQUEST_NAMES)
    if frame.info:
        out["command_group"] = frame.info[0]
    return out


EXTRAS: Final = (
    "ambient_temperature",
    "full_capacity",
    "soh",
    "port_voltage",
    "current_limiter",
    "heater",
    "heating",
    "system_state",
    "hardware_model",
    "software_version",
    "manufacturer",
)


def to_reading(parts: Mapping[str, Any], ages: Mapping[str, float] | None = None) -> BmsReading:
    """A snapshot from the decoded 0x42 and 0x44 answers (``ages``: of kept values)."""
    return BmsReading.from_parts(parts, extras=EXTRAS, ages=ages)


# --- driver ----------------------------------------------------------------------------------
class SeplosDriver:
    """Polls one Seplos v2 pack (address 0-15) on a shared RS485 bus: 0x42 and 0x44. Read-only."""

    protocol: Final = NAME
    baudrate: Final = BAUDRATE

    def __init__(self, link: Link, address: int = 0, *, variant: str | None = None) -> None:
        yd1363.check_address("Seplos", address)
        self._link = link
        self.address = address
        self._framer = yd1363.answer_framer(VERSION, address)
        self.slow = SlowReads()  # the reader sets how often (its bus's slow_every)

    async def _ask(self, cid2: int) -> dict[str, Any]:
        frames = await self._link.exchange(request(cid2, self.address), self._framer)
        frame = yd1363.parse(frames[0])
        yd1363.answer_info(frame, REQUEST_NAMES[cid2])
        return decode_answer(frame, cid2)

    async def read(self) -> BmsReading:
        """0x42 then 0x44; the vendor information (0x51) when POLL's slow reads are due."""
        parts = await self._ask(TELEMETRY) | await self._ask(ALARMS)
        now = time.monotonic()
        await self.slow.optional(now, lambda: self._ask(VENDOR_INFO))
        return to_reading(parts | self.slow.parts, self.slow.ages(now))

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Refuse: Seplos v2 documents no MOS command over RS485."""
        raise UnsupportedCommand(INFO.read_only_note)

    async def set_soc(self, soc: float) -> float:
        """Refuse: Seplos v2 documents no SOC command over RS485."""
        raise UnsupportedCommand(INFO.read_only_note)


Driver = SeplosDriver


async def probe(link: Link, address: int, variant: str | None = None) -> ProbeAnswer:
    """Scan probe: one 0x42 telemetry request."""
    frames = await link.exchange(
        request(TELEMETRY, address), yd1363.answer_framer(VERSION, address)
    )
    info = yd1363.answer_info(_version_ok(yd1363.parse(frames[0])), "telemetry")
    parts = decode_telemetry(info)
    return ProbeAnswer(parts["cell_count"], parts["pack_voltage"], parts["soc"])


INFO: Final = ProtocolInfo(
    name=NAME,
    limits=LIMITS,
    label="Seplos v2 (~20 ASCII)",
    manufacturer="Seplos",
    model="Seplos BMS v2",
    baudrates=(BAUDRATE, SLOW_BAUDRATE),
    addresses=(0, MAX_ADDRESS),  # DIP switches
    scan=(
        ScanStep(BAUDRATE, range(0, MAX_ADDRESS + 1)),
        ScanStep(SLOW_BAUDRATE, range(0, MAX_ADDRESS + 1), alternate=True),
    ),
    mos_switching=False,
    read_only_note="Seplos v2 documents no MOSFET or SOC command over RS485: bmsgate only reads it",
)

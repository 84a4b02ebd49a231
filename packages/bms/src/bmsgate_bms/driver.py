"""The contract every protocol module fulfils; the reader, the scan and the CLI only use this."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

from .link import Framer, Link
from .plausible import Limits
from .reading import BmsReading

Layout = Literal["daly", "jk"]  # which status card of the web UI suits the make


class UnsupportedCommand(Exception):
    """The protocol or board has no way to carry out this command."""


class Driver(Protocol):
    """Polls one BMS (one address) over a shared Link."""

    protocol: ClassVar[str]
    baudrate: ClassVar[int]
    address: int

    def __init__(self, link: Link, address: int = 1) -> None: ...

    async def read(self) -> BmsReading:
        """Poll everything a snapshot needs; raise FrameError or LinkTimeout on failure."""
        ...

    async def set_mos(self, charge: bool, on: bool) -> bool:
        """Switch a MOSFET and return the state read back from the BMS."""
        ...

    async def set_soc(self, soc: float) -> float:
        """Set the SOC [%] and return the value read back; UnsupportedCommand if impossible."""
        ...


@dataclass(frozen=True)
class ScanStep:
    """Probes the scan sends for a protocol: one per address, at one baud rate."""

    baudrate: int
    addresses: range  # probed when the user names none
    variant: str | None = None
    alternate: bool = False  # a rarely used line speed: probed after every default one


class ProbeAnswer(NamedTuple):
    """What the answer to a scan probe told about the BMS."""

    cell_count: int
    pack_voltage: float | None = None  # [V]
    soc: float | None = None  # [%]


@dataclass(frozen=True, kw_only=True)
class ProtocolInfo:
    """What a protocol module says about itself; every list of protocols is made from these."""

    name: str  # the configuration's `protocol`
    label: str  # what a person picks on the setup page and in the wizard
    manufacturer: str  # Home Assistant device info
    model: str
    baudrates: tuple[int, ...]  # [baud] the default first, then others boards are set to
    addresses: tuple[int, int]  # board addresses one bus can carry, inclusive
    scan: tuple[ScanStep, ...]
    limits: Limits  # what a snapshot of this make can hold: its class (bmsgate_bms.plausible)
    # variant -> its own address range; the first is the default (empty: no variants)
    variants: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    layout: Layout = "daly"
    mos_switching: bool = True  # charge/discharge MOSFETs can be switched over this line
    soc_setting: bool = False  # the SOC can be set over this line
    read_only_note: str = ""  # why commands are refused, said in the web UI
    # a bus another master polls can be read by listening (the module's BusListener and
    # bus_framer), with these addresses; None: this protocol cannot be listened to
    listen_addresses: tuple[int, int] | None = None

    @property
    def baudrate(self) -> int:
        """The default line speed [baud]."""
        return self.baudrates[0]

    def address_range(self, variant: str | None = None) -> tuple[int, int]:
        """The addresses one bus can carry with this variant (None: the default variant)."""
        if variant is not None and variant in self.variants:
            return self.variants[variant]
        return self.addresses

    def as_dict(self) -> dict[str, Any]:
        """The description as JSON for the web UI."""
        return {
            "name": self.name,
            "label": self.label,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "baudrates": list(self.baudrates),
            "addresses": list(self.addresses),
            "variants": {k: list(v) for k, v in self.variants.items()},
            "layout": self.layout,
            "mos_switching": self.mos_switching,
            "soc_setting": self.soc_setting,
            "read_only_note": self.read_only_note,
            "listen_addresses": list(self.listen_addresses) if self.listen_addresses else None,
        }


class ProtocolModule(Protocol):
    """What a protocol file exports (see registry.PROTOCOLS)."""

    NAME: str
    BAUDRATE: int
    INFO: ProtocolInfo
    Driver: type[Driver]

    def framer(self, buf: bytes) -> tuple[int, bytes | None]: ...

    def decode_hex(self, data: bytes, **context: Any) -> dict[str, Any]:
        """Decode an answer; a request is a FrameError saying so."""
        ...

    def decode_request(self, data: bytes, **context: Any) -> dict[str, Any]:
        """Decode a master's request; an answer is a FrameError."""
        ...

    async def probe(self, link: Link, address: int, variant: str | None) -> ProbeAnswer:
        """One scan probe: what answered, or LinkTimeout (silence) / FrameError (wrong bytes)."""
        ...


__all__ = [
    "BmsReading",
    "Driver",
    "Framer",
    "Link",
    "ProbeAnswer",
    "ProtocolInfo",
    "ProtocolModule",
    "ScanStep",
    "UnsupportedCommand",
]

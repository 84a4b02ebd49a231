"""The contract every protocol module fulfils; the reader and the CLI only use this."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from .link import Framer, Link
from .plausible import Limits
from .reading import BmsReading


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


class ProtocolModule(Protocol):
    """What a protocol file exports (see registry.PROTOCOLS)."""

    NAME: str
    BAUDRATE: int
    LIMITS: Limits  # what a snapshot of this make can hold (bmsgate_bms.plausible)
    Driver: type[Driver]

    def framer(self, buf: bytes) -> tuple[int, bytes | None]: ...

    def decode_hex(self, data: bytes, **context: Any) -> dict[str, Any]: ...


__all__ = ["BmsReading", "Driver", "Framer", "Link", "ProtocolModule", "UnsupportedCommand"]

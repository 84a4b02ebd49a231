"""The protocols bmsgate speaks: adding one is a module here and one line in PROTOCOLS.

Each module describes itself in ``INFO`` (bmsgate_bms.driver.ProtocolInfo): its label, make and
model, line speeds, addresses, scan probes. The settings' validation, the scan, the setup page,
Home Assistant's device info, the benches and docs/protocols/README.md's table are all made
from here. Modules are imported when first asked for, so a name check imports none of them.
"""

from __future__ import annotations

import importlib
from typing import Final, cast

from .driver import ProtocolInfo, ProtocolModule

PROTOCOLS: Final[dict[str, str]] = {
    "daly_classic": "bmsgate_bms.daly_classic",
    "daly_new": "bmsgate_bms.daly_new",
    "jk_uart": "bmsgate_bms.jk_uart",
    "jk_pb": "bmsgate_bms.jk_pb",
    "jbd": "bmsgate_bms.jbd",
    "seplos_v2": "bmsgate_bms.seplos_v2",
    "pace": "bmsgate_bms.pace",
}
NAMES: Final[tuple[str, ...]] = tuple(PROTOCOLS)  # in scan order


def protocol(name: str) -> ProtocolModule:
    """The protocol module called ``name``; KeyError names the known ones."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return cast(ProtocolModule, importlib.import_module(PROTOCOLS[name]))


def info(name: str) -> ProtocolInfo:
    """What protocol ``name`` says about itself; KeyError names the known ones."""
    return protocol(name).INFO


def infos() -> list[ProtocolInfo]:
    """Every protocol's description, in scan order."""
    return [info(name) for name in PROTOCOLS]

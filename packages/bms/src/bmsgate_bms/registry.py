"""The protocols bmsgate speaks: adding one is a module here and one line in PROTOCOLS."""

from __future__ import annotations

import importlib
from typing import Final, cast

from .driver import ProtocolModule

PROTOCOLS: Final[dict[str, str]] = {
    "daly_classic": "bmsgate_bms.daly_classic",
    "daly_new": "bmsgate_bms.daly_new",
    "jk_uart": "bmsgate_bms.jk_uart",
    "jk_pb": "bmsgate_bms.jk_pb",
}


def protocol(name: str) -> ProtocolModule:
    """The protocol module called ``name``; KeyError names the known ones."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return cast(ProtocolModule, importlib.import_module(PROTOCOLS[name]))

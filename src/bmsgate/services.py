"""The services bmsgate runs: one line each; `bmsgate run` and the CLI both read this table."""

from __future__ import annotations

from typing import Final, NamedTuple


class Service(NamedTuple):
    """A service's module (``python -m <module>``) and whether it runs once per serial bus."""

    module: str
    per_bus: bool = False


SERVICES: Final[dict[str, Service]] = {
    "reader": Service("bmsgate_reader", per_bus=True),
    "api": Service("bmsgate_api"),
    "publisher": Service("bmsgate_publisher"),
    "modbus": Service("bmsgate_modbus"),
    "history": Service("bmsgate_history"),
    "notifier": Service("bmsgate_notifier"),
    "tunnel": Service("bmsgate_tunnel"),
}

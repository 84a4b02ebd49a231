"""The services bmsgate runs: one line each; `bmsgate run` and the CLI both read this table."""

from __future__ import annotations

from typing import Final, NamedTuple

# every service reads these sections; a change to one restarts them all
COMMON_SECTIONS: Final = ("mqtt", "data_dir", "log_level")


class Service(NamedTuple):
    """A service: its module (``python -m <module>``), once per serial bus or not, what it reads.

    ``reads`` are the configuration sections besides COMMON_SECTIONS ("*": every section);
    ``bmsgate run`` restarts a service when one of them changes; a reader reads its own bus.
    """

    module: str
    per_bus: bool = False
    reads: tuple[str, ...] = ()


SERVICES: Final[dict[str, Service]] = {
    "reader": Service("bmsgate_reader", per_bus=True, reads=("control",)),
    "api": Service("bmsgate_api", reads=("*",)),  # it shows the whole configuration
    "publisher": Service("bmsgate_publisher", reads=("buses", "banks", "control", "publisher")),
    "modbus": Service("bmsgate_modbus", reads=("buses", "banks", "control", "history", "modbus")),
    "history": Service("bmsgate_history", reads=("buses", "banks", "history")),
    "notifier": Service("bmsgate_notifier", reads=("buses", "banks", "history", "notifier")),
    "tunnel": Service("bmsgate_tunnel", reads=("buses", "control", "tunnel")),
}

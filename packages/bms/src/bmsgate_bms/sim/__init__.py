"""The BMS simulator: a physical pack model behind boards that speak each protocol."""

from __future__ import annotations

import importlib
from typing import Final

from .bus import Board, SimBus
from .model import PackModel

BOARDS: Final[dict[str, str]] = {
    "daly_classic": "bmsgate_bms.sim.daly_classic",
    "daly_new": "bmsgate_bms.sim.daly_new",
    "jk_uart": "bmsgate_bms.sim.jk_uart",
    "jk_pb": "bmsgate_bms.sim.jk_pb",
}


def make_bus(protocol: str, boards: int = 1, cells: int = 16, seed: int = 1) -> SimBus:
    """A bus of ``boards`` simulated boards (addresses 1..N), each with its own pack."""
    if protocol not in BOARDS:
        raise KeyError(f"no simulator for {protocol!r}; known: {', '.join(BOARDS)}")
    module = importlib.import_module(BOARDS[protocol])
    made: list[Board] = [
        module.Board(PackModel.create(cells=cells, seed=seed + n), address=n + 1)
        for n in range(boards)
    ]
    baud = importlib.import_module(f"bmsgate_bms.{protocol}").BAUDRATE
    return SimBus(made, baudrate=baud)


__all__ = ["BOARDS", "Board", "PackModel", "SimBus", "make_bus"]

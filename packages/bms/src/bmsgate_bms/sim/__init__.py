"""The BMS simulator: a physical pack model behind boards that speak each protocol."""

from __future__ import annotations

import importlib
from typing import Final

from ..registry import NAMES, info
from .bus import Board, SimBus
from .model import PackModel

# a protocol's simulated board lives in bmsgate_bms.sim.<protocol> and is called Board
BOARDS: Final[dict[str, str]] = {name: f"bmsgate_bms.sim.{name}" for name in NAMES}


def make_bus(protocol: str, boards: int = 1, cells: int = 16, seed: int = 1) -> SimBus:
    """A bus of ``boards`` simulated boards (addresses 1..N), each with its own pack."""
    if protocol not in BOARDS:
        raise KeyError(f"no simulator for {protocol!r}; known: {', '.join(BOARDS)}")
    module = importlib.import_module(BOARDS[protocol])
    made: list[Board] = [
        module.Board(PackModel.create(cells=cells, seed=seed + n), address=n + 1)
        for n in range(boards)
    ]
    return SimBus(made, baudrate=info(protocol).baudrate)


__all__ = ["BOARDS", "Board", "PackModel", "SimBus", "make_bus"]

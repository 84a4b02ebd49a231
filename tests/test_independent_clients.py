"""A published client that is not ours reads the simulator: the simulated wire is the real one.

dalybms 0.5.0 (PyPI; dreadnought/python-daly-bms) speaks DALY classic over pyserial. It is
blocking, so it runs in a thread while the event loop serves the simulated board on a pty. The
pack model is frozen (no clock task), so every value can be compared exactly.

No JK client is here: mppsolar (jblance/mpp-solar) has the JK protocols, but every release with
its JK serial transport (``jkserialio``) pins paho-mqtt < 2, which conflicts with aiomqtt 2.x in
the dev group; the newest release that resolves (0.16.19) reads a JK answer with
``read_until(b"\\r")`` and stops at the first 0x0D byte of the frame (cell 13's record number).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dalybms import DalyBMS

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_bms.sim.model import PackModel

DALYBMS_PC = 4  # dalybms "address" 4 = host address 0x40 (RS485/PC), which board 1 answers


@pytest.fixture
async def daly_board() -> AsyncIterator[tuple[SimBus, str]]:
    bus = make_bus("daly_classic", cells=16)
    async with PtyServer(bus) as pty:
        yield bus, pty.port


def _read_with_dalybms(port: str) -> dict[str, Any]:
    bms = DalyBMS(request_retries=1, address=DALYBMS_PC)
    bms.connect(port)  # reads 0x94 (cell and sensor counts) as part of connecting
    try:
        return {
            "status": bms.status,
            "soc": bms.get_soc(),
            "cells": bms.get_cell_voltages(),
            "temperatures": bms.get_temperatures(),
            "mosfet": bms.get_mosfet_status(),
            "errors": bms.get_errors(),
        }
    finally:
        bms.disconnect()


@pytest.mark.parametrize("current", [12.3, -8.0, 0.0])
async def test_dalybms_reads_the_simulated_daly_classic_board(
    daly_board: tuple[SimBus, str], current: float
) -> None:
    bus, port = daly_board
    model: PackModel = bus.boards[0].model
    model.current = current  # [A], + = charging in the model
    got = await asyncio.to_thread(_read_with_dalybms, port)

    assert got["status"]["cells"] == len(model.cells)
    assert got["status"]["temperature_sensors"] == len(model.temperatures)
    assert got["status"]["cycles"] == model.cycles  # 0x94 data bytes 5-6, as bmsgate reads them
    assert list(got["cells"]) == list(range(1, len(model.cells) + 1))
    assert list(got["cells"].values()) == model.cell_voltages
    assert list(got["temperatures"].values()) == [round(t) for t in model.temperatures]
    assert got["soc"]["soc_percent"] == model.soc
    assert got["soc"]["total_voltage"] == round(model.pack_voltage, 1)
    assert got["mosfet"]["capacity_ah"] == model.remaining_capacity
    assert got["mosfet"]["charging_mosfet"] is model.charge_mos
    assert got["mosfet"]["discharging_mosfet"] is model.discharge_mos
    assert got["errors"] == []

    # dalybms computes (raw - 30000) / 10 and documents it as "negative=charging,
    # positive=discharging", the convention the simulated board follows (raw < 30000 while
    # charging; bmsgate's to_reading assumes the same when no state byte says otherwise). Real
    # firmware disagrees on this sign (PROTOCOLS.md 6.1), which is why bmsgate takes the direction
    # from the 0x93 state byte; dalybms reports that byte as "mode".
    assert got["soc"]["current"] == -current
    mode = "charging" if current > 0 else "discharging" if current < 0 else "stationary"
    assert got["mosfet"]["mode"] == mode

"""SerialLink against simulated boards on a real pseudo-terminal (no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bmsgate_bms import LinkTimeout, daly_classic
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_serial.link import LinkDown, SerialLink


@pytest.fixture
async def bus_on_pty() -> AsyncIterator[tuple[SimBus, SerialLink]]:
    bus = make_bus("daly_classic", boards=2)
    async with PtyServer(bus) as pty:
        link = SerialLink(pty.port, 9600, timeout=0.3)
        yield bus, link
        await link.close()


async def test_reads_every_board_on_the_bus(bus_on_pty: tuple[SimBus, SerialLink]) -> None:
    bus, link = bus_on_pty
    for address in (1, 2):
        reading = await daly_classic.Driver(link, address).read()
        assert reading.cell_voltages == bus.boards[address - 1].model.cell_voltages


@pytest.mark.parametrize("fault", ["echo", "split", "glued", "none"])
async def test_wire_faults_are_absorbed(bus_on_pty: tuple[SimBus, SerialLink], fault: str) -> None:
    bus, link = bus_on_pty
    bus.faults.mode = fault  # type: ignore[assignment]
    reading = await daly_classic.Driver(link).read()
    assert reading.cell_voltages == bus.boards[0].model.cell_voltages
    if fault == "echo":
        assert link.echoes > 0


@pytest.mark.parametrize("fault", ["silent", "garbage", "bad_checksum"])
async def test_no_valid_answer_is_a_timeout(
    bus_on_pty: tuple[SimBus, SerialLink], fault: str
) -> None:
    bus, link = bus_on_pty
    bus.faults.mode = fault  # type: ignore[assignment]
    with pytest.raises(LinkTimeout):
        await daly_classic.Driver(link).read()
    bus.faults.mode = "none"
    reading = await daly_classic.Driver(link).read()  # the next poll is clean again
    assert reading.cell_count == 16


async def test_missing_port_names_the_port(tmp_path: Path) -> None:
    port = str(tmp_path / "ttyUSB9")
    link = SerialLink(port, 9600)
    with pytest.raises(LinkDown, match="ttyUSB9"):
        await link.exchange(daly_classic.request(0x90), daly_classic.framer)
    assert not link.is_open


async def test_all_sixteen_cell_frames_are_taken_and_the_line_left_clean() -> None:
    bus = make_bus("daly_classic", cells=4)
    bus.boards[0].all_frames = True  # type: ignore[attr-defined]
    async with PtyServer(bus) as pty:
        link = SerialLink(pty.port, 9600, timeout=0.3)
        try:
            for _ in range(3):
                reading = await daly_classic.Driver(link).read()
                assert reading.cell_voltages == bus.boards[0].model.cell_voltages
        finally:
            await link.close()

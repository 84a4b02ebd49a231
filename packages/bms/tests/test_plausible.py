"""Snapshots with valid frames and impossible values are recognised, whatever the protocol."""

from __future__ import annotations

import pytest

from bmsgate_bms.plausible import Limits, implausible
from bmsgate_bms.reading import BmsReading
from bmsgate_bms.registry import PROTOCOLS, protocol
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.link import SimLink
from bmsgate_bms.sim.model import lying

DALY = Limits(max_current=1000.0)


def reading(**over: object) -> BmsReading:
    values: dict[str, object] = {
        "pack_voltage": 53.1,
        "current": -12.0,
        "soc": 64.0,
        "cell_voltages": [3.31] * 16,
        "temperatures": [21.0, 22.5],
        "mos_temperature": 30.0,
    }
    return BmsReading(**(values | over))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"soc": 250.0}, "SOC 250 %"),
        ({"soc": -1.0}, "SOC -1 %"),
        ({"cell_voltages": [3.31] * 15 + [0.0]}, "cell 16 at 0 V"),
        ({"cell_voltages": [3.31] * 15 + [6.5]}, "cell 16 at 6.5 V"),
        ({"pack_voltage": 6000.0}, "pack 6000 V but its cells sum to 52.960 V"),
        ({"pack_voltage": 0.0}, "pack 0 V"),
        ({"current": -3000.0}, "current -3000 A"),
        ({"current": 1000.5}, "current 1000.5 A"),
        ({"temperatures": [21.0, 200.0]}, "temperature 2 200 °C"),
        ({"temperatures": [-200.0]}, "temperature 1 -200 °C"),
        ({"mos_temperature": 125.0}, "MOS temperature 125 °C"),
        ({"cell_voltages": [], "pack_voltage": 6000.0}, "pack 6000 V"),
    ],
)
def test_impossible_values_are_named(over: dict[str, object], words: str) -> None:
    problem = implausible(reading(**over), DALY)
    assert problem is not None and problem.startswith(words)


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"soc": 0.0},
        {"soc": 100.0},
        {"current": -999.9},
        {"pack_voltage": 52.0},  # measured apart from the cells: a volt off is normal
        {"cell_voltages": [2.5] * 16, "pack_voltage": 40.0},
        {"temperatures": [-40.0, 120.0], "mos_temperature": None},
        {"cell_voltages": [], "pack_voltage": 26.5},
    ],
)
def test_possible_values_pass(over: dict[str, object]) -> None:
    assert implausible(reading(**over), DALY) is None


def test_each_protocol_states_its_class() -> None:
    for name in PROTOCOLS:
        assert protocol(name).INFO.limits.max_current >= 300.0


# what each protocol's frames can carry: JK's 0x4E57 current and temperatures cannot say -3000 A
# or 200 °C at all, so those lies need no check there
# fmt: off
LIES: dict[str, list[dict[str, object]]] = {
    "daly_classic": [{"soc": 250.0}, {"current": -3000.0}, {"temperatures": [21.0, 200.0]},
                     {"pack_voltage": 6000.0}],
    "daly_new": [{"soc": 250.0}, {"current": -3000.0}, {"temperatures": [21.0, 200.0]}],
    "jk_uart": [{"soc": 250.0}, {"pack_voltage": 600.0}],
    "jk_pb": [{"soc": 250.0}, {"current": -3000.0}, {"temperatures": [21.0, 200.0]},
              {"pack_voltage": 6000.0}],
}
# fmt: on
CASES = [(name, lie) for name, lies in LIES.items() for lie in [*lies, {"dead_cell": 4}]]


@pytest.mark.parametrize(("name", "lie"), CASES)
async def test_lies_in_valid_frames_decode_and_are_caught(
    name: str, lie: dict[str, object]
) -> None:
    bus = make_bus(name)
    board = bus.boards[0]
    module = protocol(name)
    assert implausible(await module.Driver(SimLink(bus)).read(), module.INFO.limits) is None
    if "dead_cell" in lie:
        volts = board.model.cell_voltages
        lie = {"cell_voltages": [0.0 if n == lie["dead_cell"] else v for n, v in enumerate(volts)]}
    board.model = lying(board.model, **lie)
    problem = implausible(await module.Driver(SimLink(bus)).read(), module.INFO.limits)
    assert problem is not None
    assert problem.split()[0].lower() in " ".join(lie).replace("_", " ") + " cell"

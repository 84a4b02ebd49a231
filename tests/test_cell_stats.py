"""Cell statistics are computed in one place (CellStats) and every output shows the same ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bmsgate_api.store import PackStore
from bmsgate_api.views import pack_view
from bmsgate_common.models import Availability, CellStats, PackState
from bmsgate_common.units import from_mv, to_mv, whole_mv
from bmsgate_history.influx import to_line
from bmsgate_modbus.logic import MapOptions, pack_quantities
from bmsgate_outputs.entities import descriptions, values

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CELLS = [3.301, 3.287, 3.312, 3.287, 3.312, 3.300]


def test_one_computation_of_the_cell_statistics_shown_everywhere() -> None:
    stats = CellStats.of(CELLS)
    assert stats is not None and CellStats.of([]) is None
    assert (stats.low, stats.low_cell, stats.high, stats.high_cell) == (3.287, 2, 3.312, 3)
    assert stats.average == pytest.approx(sum(CELLS) / 6) and stats.delta == pytest.approx(0.025)
    assert to_mv(3.3051) == pytest.approx(3305.1) and whole_mv(3.3051) == 3305
    assert from_mv(3305.1) == pytest.approx(3.3051)

    state = PackState(
        pack="garage",
        name="Garage",
        protocol="daly_classic",
        ts=NOW,
        pack_voltage=19.8,
        current=1.0,
        power=19.8,
        soc=50.0,
        cell_voltages=CELLS,
        cell_count=6,
    )
    assert state.cells == stats and state.cell_delta == stats.delta
    registers = pack_quantities(state, None, offline=False, now=NOW, opts=MapOptions(tz=UTC))
    assert (registers["cell_min"], registers["cell_max"]) == (3.287, 3.312)  # SI: the map scales
    assert registers["cell_delta"] == pytest.approx(0.025)
    mqtt = values(state, descriptions(state, control=False))
    assert (mqtt["cell_min_index"], mqtt["cell_max_index"], mqtt["cell_delta"]) == (2, 3, 25)
    assert (mqtt["cell_min_mv"], mqtt["cell_max_mv"]) == (3287, 3312)
    store = PackStore()
    store.states["garage"] = state
    store.availability["garage"] = Availability(pack="garage", state="online", ts=NOW)
    page = pack_view(store, "garage", NOW)
    assert (page.cell_min_index, page.cell_max_index, page.cell_delta) == (2, 3, 0.025)
    assert "cell_min=3.287,cell_max=3.312,cell_delta=0.025" in to_line(state)

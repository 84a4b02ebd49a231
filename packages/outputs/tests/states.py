"""Pack states for the publisher's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bmsgate_common.models import PackState

# the manual's type2 example (SEED.md feature 2), cell by cell
MANUAL_CELLS_MV = [
    2927,
    2956,
    2957,
    2951,
    2957,
    2944,
    2956,
    2956,
    2955,
    2957,
    2957,
    2956,
    2937,
    2956,
    2956,
    2945,
]
T0 = datetime(2025, 12, 22, 12, 12, 47, tzinfo=UTC)


def make_state(**over: Any) -> PackState:
    cells = over.pop("cell_voltages", [mv / 1000 for mv in MANUAL_CELLS_MV])
    data: dict[str, Any] = {
        "pack": "garage",
        "name": "Garage",
        "protocol": "daly_classic",
        "ts": T0,
        "pack_voltage": 47.2,
        "current": 6.2,
        "power": 292.64,
        "soc": 27.0,
        "cell_voltages": cells,
        "cell_count": len(cells),
        "temperatures": [12.0, 12.4],
        "charge_mos": True,
        "discharge_mos": True,
        "alarms": ["charge_undertemp_warning"],
    }
    data.update(over)
    return PackState(**data)

"""What the captured vectors (packages/bms/tests/vectors) call things, in bmsgate's names."""

from __future__ import annotations

# the vectors' own key names -> pack-state names, for the keys every make shares
PACK_STATE_NAMES: dict[str, str] = {
    "total_voltage_V": "pack_voltage",
    "current_A": "current",
    "soc_pct": "soc",
    "cells_V": "cell_voltages",
    "cell_count": "cell_count",
    "cycles": "cycles",
    "remaining_capacity_Ah": "remaining_capacity",
    "temps_C": "temperatures",
    "charge_mos_on": "charge_mos",
    "discharge_mos_on": "discharge_mos",
    "balancing": "balancing",
    "balancing_cells": "balancing_cells",
}

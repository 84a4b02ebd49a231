"""Every register and push write of a few packs and a bank, pinned as the map gave them.

The golden file was written before the register table declared its units and scales; any
change of a served register or a pushed value shows here. Regenerate only for an intended
change: ``BMSGATE_PIN=write pytest <this file>``.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from services.modbus.tests.known import NOW, known_daily, known_state

from bmsgate_common.settings import ModbusPushTarget
from bmsgate_modbus.logic import QUANTITY_UNITS, MapOptions, RegisterStore, push_writes
from tests.support.golden import assert_pinned

GOLDEN = Path(__file__).parent / "golden" / "registers.json"
UNITS = {1: "garage", 2: "shed", 3: "wide", 4: "empty", 5: "house"}
BANKS = {"house": ["garage", "shed"]}


def _store(**opts: Any) -> RegisterStore:
    store = RegisterStore(UNITS, BANKS, MapOptions(tz=UTC, **opts))
    store.on_state(known_state())
    store.on_daily(known_daily())
    store.on_state(
        known_state(
            "shed",
            cell_voltages=[3.3005, 3.2995, 3.30049, 3.29951],  # half millivolts: rounding
            cell_count=4,
            temperatures=[],
            mos_temperature=-4.25,
            energy_in=12.3456,
            energy_out=0.0015,
            charge_in=7.25,
            charge_out=3.05,
            remaining_capacity=0.05,
        )
    )
    wide = [round(3.1 + n / 997, 4) for n in range(40)]  # more cells than the map's 32
    store.on_state(known_state("wide", cell_voltages=wide, cell_count=40, current=3276.9))
    store.on_state(known_state("empty", cell_voltages=[], cell_count=0, temperatures=[]))
    store.set_system(uptime=70000, free_memory=1e9, now=NOW)
    store.refresh(NOW)
    return store


def _pins() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for order in ("little", "big"):
        for unit in ("C", "F"):
            store = _store(word_order=order, temperature_unit=unit)
            out[f"blocks {order} {unit}"] = {str(u): store.block(u) for u in sorted(UNITS)}
    store = _store()
    quantities = {p: store.quantities(p, NOW) for p in ("garage", "shed", "wide", "house")}
    for reg_type, scale in (("float32", 1.0), ("u32", 1000.0), ("s16", 1.0)):
        values = [
            {"pack": p, "value": q, "address": 2 * i, "type": reg_type, "scale": scale}
            for i, (p, q) in enumerate(
                (p, q) for p in ("garage", "shed", "wide", "house") for q in QUANTITY_UNITS
            )
        ]
        target = ModbusPushTarget.model_validate({"host": "h", "values": values})
        out[f"push {reg_type} x{scale}"] = push_writes(target, quantities)
    return out


def test_every_register_and_push_is_as_pinned() -> None:
    assert_pinned(_pins(), GOLDEN)

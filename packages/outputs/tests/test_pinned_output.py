"""Every message the output tables produce for a few packs, pinned byte for byte.

The golden file was written by the code before the entity table declared its units; a change
of any discovery payload, JSON state, flat topic, dongle packet or openHASP command shows here.
Regenerate only for an intended change: ``BMSGATE_PIN=write pytest <this file>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packages.outputs.tests.states import T0, make_state

from bmsgate_common.models import PackState
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs.plan import HeardPacks, Plan
from tests.support.golden import assert_pinned

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
HASP = {
    "p1b1.text": "{soc:.0f} %",
    "p1b2.text": "Δ {cell_delta} mV, avg {cell_average_mv} mV",
    "p1b3.text": "min {cell_min_mv} mV ({cell_min_index}) max {cell_max_mv} mV",
    "p1b4.text": "{energy_in} / {energy_out} kWh, {cell_average} V",
}


def _states() -> list[PackState]:
    bank_extras: dict[str, Any] = {
        "bank": True,
        "cell_min_pack": "garage",
        "cell_max_pack": "shed",
        "cell_min_cell": 3,
        "cell_max_cell": 7,
    }
    return [
        make_state(),
        make_state(
            pack="shed",
            name="Shed",
            cell_voltages=[3.3051, 3.2949, 3.31, 3.2999],
            cell_count=4,
            energy_in=12.34567,
            energy_out=0.0004999,
            charge_in=1.25,
            charge_out=333.333,
            mos_temperature=31.5,
            temperatures=[21.25, 22.75],
            extras={"soh": 97, "balance_current": 0.0315, "state": "charging"},
            balancing_cells=[2, 4],
        ),
        make_state(pack="empty", name="Empty", cell_voltages=[], cell_count=0, temperatures=[]),
        make_state(
            pack="house",
            name="House",
            cell_voltages=[3.2, 3.4005, 3.3333, 3.30049],
            cell_count=4,
            energy_in=0.1,
            energy_out=1.0,
            extras=bank_extras,
        ),
    ]


def _messages() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for control in (False, True):
        for style in ("type2",):
            target = TargetSettings.model_validate(
                {
                    "name": "pin",
                    "flat": True,
                    "dongle": {"style": style},
                    "homeassistant": {"enabled": True},
                    "openhasp": [
                        {"plate": "plate", "pack": p, "objects": HASP}
                        for p in ("garage", "shed", "empty", "house")
                    ],
                }
            )
            plan = Plan(target=target, control=control, version="9.9", stale_after=60.0)
            hub = HeardPacks()
            for state in _states():
                hub.on_state(state)
            for m in plan.tick(hub, T0, T0, 1.0, 1000):
                out.append(
                    {
                        "control": control,
                        "style": style,
                        "topic": m.topic,
                        "payload": m.payload.decode(),
                        "qos": m.qos,
                        "retain": m.retain,
                    }
                )
    return out


def test_every_output_message_is_as_pinned() -> None:
    assert_pinned(_messages(), GOLDEN, indent=1)

"""How long one target's tick takes: ``uv run python services/publisher/bench/bench_tick.py``.

Every output on (dongle, Home Assistant, flat, openHASP), 16 packs of 16 cells, each with a new
state every tick, so every message is rebuilt. Prints ms per tick and messages per second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bmsgate_common.models import PackState
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs.plan import HeardPacks, Plan

PACKS = 16
ROUNDS = 200


def state(pack: str, ts: datetime) -> PackState:
    """A 16-cell pack with every optional value filled."""
    cells = [3.300 + i / 1000 for i in range(16)]
    return PackState(
        pack=pack,
        name=pack,
        protocol="jk_pb",
        ts=ts,
        pack_voltage=52.9,
        current=-12.5,
        power=-661.2,
        soc=64.0,
        cell_voltages=cells,
        cell_count=16,
        temperatures=[20.0, 21.5],
        mos_temperature=30.0,
        cycles=42,
        remaining_capacity=180.0,
        nominal_capacity=280.0,
        charge_mos=True,
        discharge_mos=True,
        balancing=False,
        energy_in=120.5,
        energy_out=99.1,
    )


def main() -> None:
    """Run the rounds and print the figures."""
    # fmt: off
    target = TargetSettings.model_validate(
        {"name": "bench", "flat": True, "homeassistant": {"enabled": True},
         "openhasp": [{"plate": "p", "pack": "pack0", "objects": {"p1b2.val": "{soc:.0f}"}}]}
    )
    # fmt: on
    plan = Plan(target, control=True, version="bench", stale_after=60)
    hub = HeardPacks()
    t0 = datetime.now(UTC)
    messages = 0
    started = time.perf_counter()
    for r in range(ROUNDS):
        ts = t0 + timedelta(seconds=r)
        for p in range(PACKS):
            hub.on_state(state(f"pack{p}", ts))
        messages += len(plan.tick(hub, ts, ts.astimezone(), r, 0))
    took = time.perf_counter() - started
    per_tick = f"{1000 * took / ROUNDS:.2f} ms per tick, {messages / ROUNDS:.0f} messages per tick"
    print(f"{PACKS} packs, {ROUNDS} ticks: {per_tick}, {messages / took:.0f} messages/s")  # noqa: T201


if __name__ == "__main__":
    main()

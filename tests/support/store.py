"""The API's pack store with a pack in it, as the API's in-process tests start from."""

from __future__ import annotations

from typing import Any

from bmsgate_api.store import PackStore
from bmsgate_common.models import Availability, PackState, utcnow


def with_garage(store: PackStore | None = None, **fields: Any) -> PackStore:
    """``store`` (a new one if None) holding ``garage`` online and read just now.

    A JK-PB of two cells discharging at 3 A (80 W out) at 88 %; ``fields`` change the state.
    """
    store = store if store is not None else PackStore()
    state = {
        "pack": "garage",
        "name": "Garage",
        "protocol": "jk_pb",
        "ts": utcnow(),
        "pack_voltage": 26.8,
        "current": -3.0,
        "power": -80.0,
        "soc": 88,
        "cell_voltages": [3.35, 3.36],
        "cell_count": 2,
    }
    store.states["garage"] = PackState.model_validate({**state, **fields})
    store.availability["garage"] = Availability(pack="garage", state="online", ts=utcnow())
    return store

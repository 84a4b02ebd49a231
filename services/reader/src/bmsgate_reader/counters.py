"""Energy counters on disk, so kWh totals survive restarts.

Home Assistant's Energy dashboard needs ``total_increasing`` values that never fall back to zero.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from bmsgate_common.durable import discard_temporary, write_durably

from .logic import EnergyCounter

log = logging.getLogger(__name__)


class CounterStore:
    """One JSON file per pack under ``<data_dir>/reader/``, replaced atomically and durably."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, pack: str) -> Path:
        return self.directory / f"energy-{pack}.json"

    def load(self, pack: str) -> EnergyCounter:
        """The saved counter, or a new one; a damaged file is reported and set aside."""
        path = self._path(pack)
        discard_temporary(path)  # a write cut short (a power cut) left it; the reader owns the file
        try:
            data = json.loads(path.read_text())
            return EnergyCounter(
                energy_in=float(data["energy_in"]),
                energy_out=float(data["energy_out"]),
                charge_in=float(data["charge_in"]),
                charge_out=float(data["charge_out"]),
                last_ts=datetime.fromisoformat(data["last_ts"]) if data.get("last_ts") else None,
            )
        except FileNotFoundError:
            return EnergyCounter()
        except (OSError, ValueError, KeyError, TypeError) as err:
            kept = path.with_suffix(".damaged")
            log.error("energy counter %s unreadable (%s); kept as %s, now 0", path, err, kept)
            path.replace(kept)
            return EnergyCounter()

    def load_soc(self, pack: str) -> float | None:
        """Bmsgate's own SOC [%] as last saved with the counter, if it was counted."""
        try:
            value = json.loads(self._path(pack).read_text()).get("own_soc")
        except (OSError, ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) and 0 <= value <= 100 else None

    def save(self, pack: str, counter: EnergyCounter, own_soc: float | None = None) -> None:
        """Write the counter durably: a power cut leaves the old or the new one (durable.py)."""
        body = counter.totals() | {
            "last_ts": counter.last_ts.isoformat() if counter.last_ts else None
        }
        if own_soc is not None:
            body["own_soc"] = round(own_soc, 3)
        write_durably(self._path(pack), json.dumps(body).encode(), mode=0o644)

"""Energy counters on disk, so kWh totals survive restarts.

Home Assistant's Energy dashboard needs ``total_increasing`` values that never fall back to zero.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from bmsgate_common.durable import write_durably

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

    def save(self, pack: str, counter: EnergyCounter) -> None:
        """Write the counter durably: a power cut leaves the old or the new one (durable.py)."""
        body = counter.totals() | {
            "last_ts": counter.last_ts.isoformat() if counter.last_ts else None
        }
        write_durably(self._path(pack), json.dumps(body).encode(), mode=0o644)

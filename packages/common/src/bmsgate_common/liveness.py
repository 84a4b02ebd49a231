"""Whether a pack is live: the one rule behind the web UI, Modbus, MQTT, Home Assistant and banks.

A pack is live when it has a state, the reader has not said "offline" since that state was read,
and that state is not older than the top-level ``stale_after``. A state read after an offline
message counts (the pack answers again before its "online" arrives); an availability that never
came does not make a fresh state stale.
"""

from __future__ import annotations

from datetime import datetime

from .models import Availability, PackState


def liveness(
    state: PackState | None, availability: Availability | None, now: datetime, stale_after: float
) -> tuple[bool, str]:
    """``(live, reason)``: the reason is why the pack is not live, in words; empty when live."""
    if state is None:
        return False, "no state received yet"
    if availability is not None and availability.state == "offline" and availability.ts >= state.ts:
        return False, availability.reason or "the reader reports it offline"
    if (now - state.ts).total_seconds() > stale_after:
        return False, f"no new state since {state.ts.isoformat(timespec='seconds')}"
    return True, ""

"""Test helpers: a hand-driven clock, settings and backbone messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bmsgate_common.models import AlarmEvent, Availability, PackState
from bmsgate_common.settings import NotifierSettings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POVER = "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi"
PSAFER = "psafer://XXXXXXXXXXXXXXXXXXXX"


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.seconds = 1000.0  # [s] the monotonic clock

    def __call__(self) -> datetime:
        return self.now

    def mono(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> datetime:
        """Time passes: both clocks move."""
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds
        return self.now

    def set(self, seconds: float) -> datetime:
        """The wall clock is set (NTP, a person): only it moves."""
        self.now += timedelta(seconds=seconds)
        return self.now


def settings(**kw: Any) -> NotifierSettings:
    base: dict[str, Any] = {"gather": 0, "retry_min": 10, "retry_max": 40}
    return NotifierSettings.model_validate({**base, **kw})


def state(
    soc: float = 50.0,
    cells: list[float] | None = None,
    name: str = "Garage",
    pack: str = "garage",
    ts: datetime = T0,
) -> PackState:
    cells = cells or [3.30] * 16
    return PackState(
        pack=pack,
        name=name,
        protocol="daly_classic",
        ts=ts,
        pack_voltage=sum(cells),
        current=1.0,
        power=50.0,
        soc=soc,
        cell_voltages=cells,
        cell_count=len(cells),
    )


def alarm(
    active: bool = True,
    text: str = "cell 12 over-voltage, 3.65 V",
    ts: datetime = T0,
    code: str = "cell_overvoltage",
    level: str = "alarm",
) -> AlarmEvent:
    return AlarmEvent.model_validate(
        {"pack": "garage", "ts": ts, "code": code, "level": level, "text": text, "active": active}
    )


def avail(online: bool, ts: datetime = T0) -> Availability:
    return Availability(
        pack="garage",
        state="online" if online else "offline",
        ts=ts,
        reason=None if online else "no answer 3 times",
    )

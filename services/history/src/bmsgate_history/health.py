"""Battery health from the history: weak cell, balancing fault, capacity fade; pure.

Samples go in one at a time (live or replayed); per local day the tracker keeps a few figures per
cell, and ``findings()`` turns the last days into HealthFinding with their evidence. The rules and
thresholds are in docs/history.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta, tzinfo
from statistics import median
from typing import Final, Literal

from bmsgate_common.models import CellStats, HealthFinding
from bmsgate_common.settings import HealthSettings
from bmsgate_common.units import to_mv

from .sample import Sample, local_day

WINDOW_DAYS: Final = 7  # weak cell and out-of-band evidence is counted over this many days
KEEP_DAYS: Final = 60  # day figures kept for the rules
KEEP_CAPACITY: Final = 400  # capacity measurements kept
FADE_WINDOW_DAYS: Final = 365
FLAT_SOC: Final = (20.0, 90.0)  # [%] the flat part of the curve, where a delta means imbalance
DEFAULT_LOAD_A: Final = 5.0  # [A] counts as load when the capacity is unknown
STANDS_OUT: Final = 2.0  # the leading cell deviates this many times more than the next one


@dataclass
class DayFigures:
    """What one local day contributed, per cell (index 0 = cell 1)."""

    day: str  # ISO date
    lead_charge: list[float]  # [min] risen most (alone, beyond weak_mv) since charging began
    lead_discharge: list[float]  # [min] sagged most likewise since the load began
    peak_charge: list[float]  # [mV] largest rise against the average on charge
    peak_discharge: list[float]  # [mV] largest sag against the average under load
    out_of_band: list[float]  # [min] beyond band_mv from the median while balancing
    band_peak: list[float]  # [mV]
    dev_sum: list[float]  # [mV] sum of deviations from the average in the flat region
    flat_n: int = 0  # samples in the flat region
    delta_sum: float = 0.0  # [mV] sum of the cell delta in the flat region

    @classmethod
    def empty(cls, day: date, cells: int) -> DayFigures:
        """Figures of a day with nothing seen yet."""

        def zeros() -> list[float]:
            return [0.0] * cells

        return cls(day.isoformat(), zeros(), zeros(), zeros(), zeros(), zeros(), zeros(), zeros())

    @property
    def delta(self) -> float | None:
        """Mean cell delta [mV] in the flat region, or None without such samples."""
        return self.delta_sum / self.flat_n if self.flat_n else None


@dataclass
class HealthTracker:
    """One pack's health evidence; ``dump``/``load`` keep it across restarts."""

    pack: str
    cfg: HealthSettings
    tz: tzinfo
    max_gap_ms: int = 120_000
    days: dict[str, DayFigures] = field(default_factory=dict)
    capacity: list[tuple[int, float]] = field(default_factory=list)  # (ms at empty, Ah)
    anchor: Literal["full", "empty"] | None = None
    ah_since_full: float = 0.0  # [Ah] net discharged since the last moment at full
    prev: Sample | None = None
    phase: Literal["charge", "discharge"] | None = None  # of the current load
    base: list[float] = field(default_factory=list)  # [mV] deviations when the phase began
    prev_devs: list[float] = field(default_factory=list)

    # --- taking in samples -----------------------------------------------------------------
    def add(self, s: Sample) -> None:
        """Take in one sample in time order."""
        prev = self.prev
        if prev is not None and s.ts <= prev.ts:
            return
        dt = s.ts - prev.ts if prev is not None else 0
        joined = prev is not None and dt <= self.max_gap_ms
        minutes = dt / 60_000 if joined else 0.0
        self.prev = s
        self._capacity(s, prev if joined else None)
        cells = s.cell_voltages
        if len(cells) < 2:
            return
        day = local_day(s.ts, self.tz)
        figures = self.days.get(day.isoformat())
        if figures is None or len(figures.dev_sum) != len(cells):
            figures = self.days[day.isoformat()] = DayFigures.empty(day, len(cells))
            self._forget(day)
        stats = CellStats.of(cells)
        assert stats is not None  # two cells or more
        devs = [to_mv(v - stats.average) for v in cells]
        capacity = s.nominal_capacity or DEFAULT_LOAD_A / self.cfg.load_current
        loaded = abs(s.current) >= self.cfg.load_current * capacity
        direction: Literal["charge", "discharge"] | None = None
        if loaded:
            direction = "charge" if s.current > 0 else "discharge"
        if direction != self.phase or len(self.base) != len(devs):
            # the phase begins from the deviations just before the load changed
            use_prev = joined and len(self.prev_devs) == len(devs)
            self.base = self.prev_devs if use_prev else devs
            self.phase = direction
        if direction and minutes:
            self._lead(figures, devs, direction == "charge", minutes)
        self.prev_devs = devs
        if s.balancing and minutes:
            mid = median(cells)
            for k, v in enumerate(cells):
                off = to_mv(abs(v - mid))
                if off > self.cfg.band_mv:
                    figures.out_of_band[k] += minutes
                    figures.band_peak[k] = max(figures.band_peak[k], off)
        if FLAT_SOC[0] <= s.soc <= FLAT_SOC[1]:
            figures.flat_n += 1
            figures.delta_sum += to_mv(stats.delta)
            for k, d in enumerate(devs):
                figures.dev_sum[k] += d

    def _lead(self, f: DayFigures, devs: list[float], charging: bool, minutes: float) -> None:
        """The cell whose deviation moved most in the load's direction since the phase began."""
        moved = [d - b for d, b in zip(devs, self.base, strict=True)]
        signed = moved if charging else [-m for m in moved]
        order = sorted(range(len(signed)), key=signed.__getitem__, reverse=True)
        first, second = signed[order[0]], max(signed[order[1]], 0.0)
        if first < self.cfg.weak_mv or first < STANDS_OUT * second:
            return
        k = order[0]
        if charging:
            f.lead_charge[k] += minutes
            f.peak_charge[k] = max(f.peak_charge[k], first)
        else:
            f.lead_discharge[k] += minutes
            f.peak_discharge[k] = max(f.peak_discharge[k], first)

    def _capacity(self, s: Sample, prev: Sample | None) -> None:
        """Ah from the last moment at full to the first at empty: one capacity measurement."""
        if prev is None and self.anchor == "full":
            self.anchor = None  # a gap: the count is no longer trustworthy
        if prev is not None and self.anchor == "full":
            self.ah_since_full -= (prev.current + s.current) / 2 * (s.ts - prev.ts) / 3_600_000
        stats = CellStats.of(s.cell_voltages)
        if stats is not None and stats.high >= self.cfg.full_cell:
            self.anchor, self.ah_since_full = "full", 0.0
        elif stats is not None and stats.low <= self.cfg.empty_cell:
            if self.anchor == "full" and self.ah_since_full > 0:
                self.capacity.append((s.ts, round(self.ah_since_full, 3)))
                del self.capacity[:-KEEP_CAPACITY]
            self.anchor = "empty"

    def _forget(self, today: date) -> None:
        oldest = (today - timedelta(days=KEEP_DAYS)).isoformat()
        for key in [k for k in self.days if k < oldest]:
            del self.days[key]

    def without(self, start: int, end: int, since: int, left: Iterable[Sample]) -> HealthTracker:
        """The evidence as if nothing in [start, end) ms had been seen (a deleted day).

        What came before ``start`` is kept: nothing deleted went into it. From ``since`` (a local
        midnight, >= ``end``) everything is taken in again from ``left``, the samples the archive
        still holds, beginning after a gap as at any hole in the data. Days between ``end`` and
        ``since`` (older than the archive is replayed) keep their figures.
        """
        fresh = HealthTracker(self.pack, self.cfg, self.tz, self.max_gap_ms)
        gone = local_day(start, self.tz).isoformat()
        back = local_day(end, self.tz).isoformat()
        again = local_day(since, self.tz).isoformat()
        fresh.days = {k: d for k, d in self.days.items() if k < gone or back <= k < again}
        fresh.capacity = [(t, ah) for t, ah in self.capacity if t < start or end <= t < since]
        for s in left:
            fresh.add(s)
        return fresh

    # --- rules -------------------------------------------------------------------------------
    def findings(self, today: date) -> list[HealthFinding]:
        """Every finding the evidence up to ``today`` supports, cells in order."""
        imbalance: list[HealthFinding] = []
        for f in [*self._out_of_band(today), *self._growth(today)]:
            same = next((g for g in imbalance if g.cell == f.cell), None)
            if same is None:
                imbalance.append(f)
            else:  # both rules point at one cell: one finding with both pieces of evidence
                imbalance[imbalance.index(same)] = same.model_copy(
                    update={
                        "since": min(same.since, f.since),
                        "last_seen": max(same.last_seen, f.last_seen),
                        "evidence": f"{same.evidence}; {f.evidence}",
                    }
                )
        # an imbalanced cell also moves first at the knees; it is reported as what it is
        unbalanced = {f.cell for f in imbalance}
        found = [f for f in self._weak(today) if f.cell not in unbalanced] + imbalance
        fade = self._fade(today)
        if fade:
            found.append(fade)
        return found

    def _window(self, today: date) -> list[DayFigures]:
        first = (today - timedelta(days=WINDOW_DAYS - 1)).isoformat()
        return [self.days[k] for k in sorted(self.days) if first <= k <= today.isoformat()]

    def _weak(self, today: date) -> list[HealthFinding]:
        days = self._window(today)
        cells = max((len(d.dev_sum) for d in days), default=0)
        out = []
        for k in range(cells):
            hits = [
                d
                for d in days
                if len(d.dev_sum) > k
                and d.lead_charge[k] >= self.cfg.weak_minutes
                and d.lead_discharge[k] >= self.cfg.weak_minutes
            ]
            if len(hits) < self.cfg.evidence_days:
                continue
            sag = max(d.peak_discharge[k] for d in hits)
            rise = max(d.peak_charge[k] for d in hits)
            out.append(
                HealthFinding(
                    kind="weak_cell",
                    cell=k + 1,
                    since=date.fromisoformat(hits[0].day),
                    last_seen=date.fromisoformat(hits[-1].day),
                    value=round(max(sag, rise), 1),
                    evidence=(
                        f"cell {k + 1} sagged first under load (up to {sag:.0f} mV against the "
                        f"pack average) and rose first on charge (up to {rise:.0f} mV), alone "
                        f"and for at least {self.cfg.weak_minutes:g} min each way, on {len(hits)} "
                        f"of the last {WINDOW_DAYS} days (threshold {self.cfg.weak_mv:g} mV)"
                    ),
                )
            )
        return out

    def _out_of_band(self, today: date) -> list[HealthFinding]:
        days = self._window(today)
        cells = max((len(d.dev_sum) for d in days), default=0)
        out = []
        for k in range(cells):
            hits = [
                d for d in days if len(d.dev_sum) > k and d.out_of_band[k] >= self.cfg.band_minutes
            ]
            if len(hits) < self.cfg.evidence_days:
                continue
            peak = max(d.band_peak[k] for d in hits)
            longest = max(d.out_of_band[k] for d in hits)
            out.append(
                HealthFinding(
                    kind="balancing_fault",
                    cell=k + 1,
                    since=date.fromisoformat(hits[0].day),
                    last_seen=date.fromisoformat(hits[-1].day),
                    value=round(peak, 1),
                    evidence=(
                        f"cell {k + 1} stayed out of the {self.cfg.band_mv:g} mV band around the "
                        f"median (up to {peak:.0f} mV) while balancing was on, up to "
                        f"{longest:.0f} min a day, on {len(hits)} of the last {WINDOW_DAYS} days"
                    ),
                )
            )
        return out

    def _growth(self, today: date) -> list[HealthFinding]:
        """The flat-region delta grew every day for growth_days days, by growth_mv or more."""
        series = [
            d
            for d in (self.days[k] for k in sorted(self.days) if k < today.isoformat())
            if d.delta is not None
        ]  # (completed days only: today is still moving)
        run = series[-1:]
        for d in reversed(series[:-1]):
            if d.delta is None or run[0].delta is None or d.delta >= run[0].delta:
                break
            if date.fromisoformat(run[0].day) - date.fromisoformat(d.day) > timedelta(days=1):
                break  # a missing day breaks "day after day"
            run.insert(0, d)
        if len(run) < self.cfg.growth_days:
            return []
        first, last = run[0], run[-1]
        assert first.delta is not None
        assert last.delta is not None
        growth = last.delta - first.delta
        if growth < self.cfg.growth_mv or len(first.dev_sum) != len(last.dev_sum):
            return []
        moves = [
            abs(b / last.flat_n - a / first.flat_n)
            for a, b in zip(first.dev_sum, last.dev_sum, strict=True)
        ]
        k = max(range(len(moves)), key=moves.__getitem__)
        return [
            HealthFinding(
                kind="balancing_fault",
                cell=k + 1,
                since=date.fromisoformat(first.day),
                last_seen=date.fromisoformat(last.day),
                value=round(growth, 1),
                evidence=(
                    f"the cell delta in the flat region (SOC {FLAT_SOC[0]:g}-{FLAT_SOC[1]:g} %) "
                    f"grew every day for {len(run)} days, from {first.delta:.0f} mV to "
                    f"{last.delta:.0f} mV; cell {k + 1} moved most ({moves[k]:.0f} mV) against "
                    "the pack average"
                ),
            )
        ]

    def _fade(self, today: date) -> HealthFinding | None:
        """Least-squares trend of the measured capacity; reported beyond fade_percent lost."""
        points = [(ts, ah) for ts, ah in self.capacity if local_day(ts, self.tz) <= today]
        if len(points) < 3:
            return None
        horizon = points[-1][0] - FADE_WINDOW_DAYS * 86_400_000
        points = [p for p in points if p[0] >= horizon]
        if len(points) < 3:
            return None
        xs = [(ts - points[0][0]) / 86_400_000 for ts, _ in points]  # [d]
        ys = [ah for _, ah in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return None
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx  # [Ah/d]
        start_fit = my + slope * (xs[0] - mx)
        end_fit = my + slope * (xs[-1] - mx)
        if start_fit <= 0:
            return None
        lost = (start_fit - end_fit) / start_fit * 100
        if lost < self.cfg.fade_percent:
            return None
        best = max(range(len(points)), key=lambda i: (ys[i], -i))  # the decline began after it
        return HealthFinding(
            kind="capacity_fade",
            cell=None,
            since=local_day(points[best][0], self.tz),
            last_seen=local_day(points[-1][0], self.tz),
            value=round(lost, 1),
            evidence=(
                f"the charge between full (a cell at {self.cfg.full_cell:g} V) and empty "
                f"({self.cfg.empty_cell:g} V) fell from {start_fit:.1f} Ah to {end_fit:.1f} Ah "
                f"(trend over {len(points)} full-to-empty discharges, {slope * 30:+.2f} Ah a month)"
            ),
        )

    # --- persistence -------------------------------------------------------------------------
    def dump(self) -> str:
        """The evidence as JSON; replaying samples after ``prev`` continues where it stopped."""
        return json.dumps(
            {
                "days": [asdict(d) for d in self.days.values()],
                "capacity": self.capacity,
                "anchor": self.anchor,
                "ah_since_full": self.ah_since_full,
                "prev": self.prev._asdict() if self.prev else None,
            }
        )

    def load(self, text: str) -> None:
        """Restore what dump() wrote."""
        data = json.loads(text)
        self.days = {d["day"]: DayFigures(**d) for d in data.get("days", [])}
        self.capacity = [(int(ts), float(ah)) for ts, ah in data.get("capacity", [])]
        self.anchor = data.get("anchor")
        self.ah_since_full = float(data.get("ah_since_full", 0.0))
        prev = data.get("prev")
        if isinstance(prev, list):  # saved before the fields were named: Sample's order
            prev = dict(zip(Sample._fields, prev, strict=False))
        if prev:
            prev["cell_voltages"] = tuple(prev["cell_voltages"])
            prev["temperatures"] = tuple(prev["temperatures"])
            self.prev = Sample(**prev)

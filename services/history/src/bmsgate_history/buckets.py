"""Downsampling: min/avg/max of every field per time bucket, and merging buckets; pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from bmsgate_common.models import CellStats

from .sample import Sample

# scalar series the archive keeps per bucket (columns <name>_min, _avg, _max of the agg tables)
# fmt: off
SCALARS: Final = (
    "soc", "pack_voltage", "current", "power", "mos_temperature", "remaining_capacity",
    "cell_min", "cell_max", "cell_delta", "cell_average", "charge_mos", "discharge_mos",
    "balancing",
)
# fmt: on
INDEX: Final = {name: i for i, name in enumerate(SCALARS)}
# unit and decimals of every series (cells to 0.1 mV, the finest any supported BMS reports)
# fmt: off
UNITS: Final[dict[str, tuple[str, int]]] = {
    "soc": ("%", 1), "pack_voltage": ("V", 3), "current": ("A", 3), "power": ("W", 1),
    "mos_temperature": ("°C", 1), "remaining_capacity": ("Ah", 3), "cell_min": ("V", 4),
    "cell_max": ("V", 4), "cell_delta": ("V", 4), "cell_average": ("V", 4),
    "charge_mos": ("1", 3), "discharge_mos": ("1", 3), "balancing": ("1", 3),
    "cells": ("V", 4), "temperatures": ("°C", 1), "energy_in": ("kWh", 6),
    "energy_out": ("kWh", 6),
}
# fmt: on
STEPS: Final[dict[str, int]] = {"1m": 60_000, "15m": 900_000}  # bucket length [ms]


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


def scalars(s: Sample) -> tuple[float | None, ...]:
    """The SCALARS of one sample, in order; None where the BMS did not report it."""
    stats = CellStats.of(s.cell_voltages)
    if stats is not None:
        extra: tuple[float | None, ...] = (stats.low, stats.high, stats.delta, stats.average)
    else:
        extra = (None, None, None, None)
    # fmt: off
    return (
        s.soc, s.pack_voltage, s.current, s.power, s.mos_temperature, s.remaining_capacity,
        *extra,
        _flag(s.charge_mos), _flag(s.discharge_mos), _flag(s.balancing),
    )
    # fmt: on


@dataclass
class Vec:
    """Elementwise min/sum/max of a vector series (cells, temperatures) over a bucket."""

    lo: list[float]
    total: list[float]
    hi: list[float]
    n: int = 1

    @classmethod
    def first(cls, values: Sequence[float]) -> Vec:
        """A vector accumulator holding one sample."""
        return cls(list(values), list(values), list(values))

    def add(self, values: Sequence[float]) -> None:
        """Take in one more sample of the same length."""
        lo, total, hi = self.lo, self.total, self.hi
        for i, x in enumerate(values):
            total[i] += x
            if x < lo[i]:
                lo[i] = x
            elif x > hi[i]:
                hi[i] = x
        self.n += 1

    def merge(self, other: Vec) -> None:
        """Take in another accumulator of the same length."""
        self.lo = [min(a, b) for a, b in zip(self.lo, other.lo, strict=True)]
        self.hi = [max(a, b) for a, b in zip(self.hi, other.hi, strict=True)]
        self.total = [a + b for a, b in zip(self.total, other.total, strict=True)]
        self.n += other.n

    @property
    def avg(self) -> list[float]:
        """Elementwise mean."""
        return [t / self.n for t in self.total]


def _add_vec(vec: Vec | None, values: Sequence[float]) -> Vec | None:
    # a change in cell or sensor count inside a bucket keeps the first geometry (documented)
    if not values:
        return vec
    if vec is None:
        return Vec.first(values)
    if len(values) == len(vec.lo):
        vec.add(values)
    return vec


@dataclass
class Bucket:
    """min/avg/max of every series over [start, start + step), and the energy that flowed."""

    start: int  # [ms]
    n: int = 0
    count: list[int] = field(default_factory=lambda: [0] * len(SCALARS))
    total: list[float] = field(default_factory=lambda: [0.0] * len(SCALARS))
    lo: list[float] = field(default_factory=lambda: [math.inf] * len(SCALARS))
    hi: list[float] = field(default_factory=lambda: [-math.inf] * len(SCALARS))
    cell_voltages: Vec | None = None
    temperatures: Vec | None = None
    e_in: float = 0.0  # [Wh]
    e_out: float = 0.0  # [Wh]

    def add(self, s: Sample) -> None:
        """Take in one sample."""
        self.n += 1
        count, total, lo, hi = self.count, self.total, self.lo, self.hi
        for i, x in enumerate(scalars(s)):
            if x is None:
                continue
            count[i] += 1
            total[i] += x
            if x < lo[i]:
                lo[i] = x
            if x > hi[i]:
                hi[i] = x
        self.cell_voltages = _add_vec(self.cell_voltages, s.cell_voltages)
        self.temperatures = _add_vec(self.temperatures, s.temperatures)
        self.e_in += s.e_in
        self.e_out += s.e_out

    def merge(self, other: Bucket) -> None:
        """Take in another bucket (for coarser resolutions)."""
        self.n += other.n
        for i in range(len(SCALARS)):
            self.count[i] += other.count[i]
            self.total[i] += other.total[i]
            self.lo[i] = min(self.lo[i], other.lo[i])
            self.hi[i] = max(self.hi[i], other.hi[i])
        for name in ("cell_voltages", "temperatures"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is None:
                continue
            if mine is None:
                setattr(
                    self, name, Vec(list(theirs.lo), list(theirs.total), list(theirs.hi), theirs.n)
                )
            elif len(mine.lo) == len(theirs.lo):
                mine.merge(theirs)
        self.e_in += other.e_in
        self.e_out += other.e_out

    def mean(self, name: str) -> float | None:
        """The mean of scalar ``name`` (of SCALARS); None when no sample had it."""
        return self.stat(INDEX[name])[1]

    def stat(self, i: int) -> tuple[float | None, float | None, float | None]:
        """(min, mean, max) of scalar ``i``; Nones when no sample had it."""
        if not self.count[i]:
            return None, None, None
        return self.lo[i], self.total[i] / self.count[i], self.hi[i]


def bucket_start(ts: int, step: int) -> int:
    """The start [ms] of the bucket of length ``step`` holding ``ts``."""
    return ts - ts % step

"""The archive's size on disk, the space left, and how fast this process writes (System page)."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from pathlib import Path
from typing import Final

WINDOW: Final = 3600.0  # [s] the write rate is averaged over at most this long


def folder_bytes(folder: Path) -> int:
    """The size of every file in ``folder`` [B] (the archive, its WAL, the InfluxDB buffer)."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def written_bytes() -> int | None:
    """Bytes this process has caused to be written to storage (Linux /proc/self/io), if known."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class WriteRate:
    """Bytes per second between the oldest and newest sample of the last WINDOW seconds."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, written: int) -> float | None:
        """Add a sample (monotonic [s], counter [B]); the rate [B/s], None until two samples."""
        if self.samples and written < self.samples[-1][1]:
            self.samples.clear()  # a counter of another process: start again
        self.samples.append((now, written))
        while now - self.samples[0][0] > WINDOW and len(self.samples) > 2:
            self.samples.popleft()
        (t0, w0), (t1, w1) = self.samples[0], self.samples[-1]
        return (w1 - w0) / (t1 - t0) if t1 > t0 else None


def storage_figures(folder: Path, rate: WriteRate) -> dict[str, int | float | None]:
    """The history service's storage figures for its status (sizes in bytes, rate in B/s)."""
    out: dict[str, int | float | None] = {"archive_bytes": folder_bytes(folder)}
    try:
        disk = os.statvfs(folder)
    except OSError:
        out |= {"disk_free_bytes": None, "disk_total_bytes": None}
    else:
        out |= {
            "disk_free_bytes": disk.f_bavail * disk.f_frsize,
            "disk_total_bytes": disk.f_blocks * disk.f_frsize,
        }
    written = written_bytes()
    out["disk_write_rate"] = None if written is None else rate.add(time.monotonic(), written)
    return out

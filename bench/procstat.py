"""CPU time and memory of processes from /proc (Linux), without extra dependencies."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds the process (or one of its threads) used so far (0: gone)."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    try:
        text = Path(f"{where}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB; PSS shares each shared page among the processes mapping it."""
    rss = pss = 0.0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = pss = int(line.split()[1]) / 1024
        except OSError:
            pass
    return rss, pss


PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63  # /proc/PID/pagemap entry: the page is in RAM
PFN_MASK = (1 << 55) - 1  # the physical frame number (0 unless root)


def resident_pages(pid: int) -> set[int]:
    """Physical frame numbers of every page of ``pid`` in RAM (needs root: PFNs read 0 else)."""
    frames: set[int] = set()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if line.endswith("[vsyscall]"):
                    continue
                pagemap.seek(start // PAGE * 8)
                data = pagemap.read((end - start) // PAGE * 8)
                for (entry,) in struct.iter_unpack("<Q", data):
                    if entry & PRESENT and entry & PFN_MASK:
                        frames.add(entry & PFN_MASK)
    except OSError:
        pass
    return frames


def tree_resident_mb(pids: Iterable[int]) -> float | None:
    """RAM [MB] the processes hold together, each page counted once however many share it.

    Unlike a PSS sum it does not depend on other programs mapping the same libraries. None when
    the frame numbers cannot be read (not root).
    """
    frames: set[int] = set()
    for pid in pids:
        frames |= resident_pages(pid)
    return len(frames) * PAGE / 2**20 if frames else None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def cmdline(pid: int) -> str:
    """The command line, space-separated."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def comm_name(pid: int) -> str:
    """The process name (what ps and top show; a forked service sets its own)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def reaped_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's children that ended and were waited for (0: gone).

    Counts a short-lived child (a one-shot tool started in a loop) that a look at the live
    processes misses.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime

"""The services' common runner: free heap memory goes back to the system."""

from __future__ import annotations

import asyncio
import sys

from bmsgate_common.service import heap_trimmer, trim_heap
from tests.support.needs import needs
from tests.support.procs import rss_kb

pytestmark = needs(sys.platform == "linux", "glibc's malloc_trim needs Linux")


def fragment_heap() -> list[bytes]:
    """40 MB of 2 kB blocks (malloc, not Python's small-object allocator), every 50th kept:
    the heap cannot shrink from its top, so the free blocks stay in the process."""
    blocks = [bytes(2048) for _ in range(20_000)]
    return blocks[::50]


def test_trimming_gives_free_heap_memory_back() -> None:
    trim = heap_trimmer()
    assert trim is not None  # glibc (Debian, the Docker image) has it
    kept = fragment_heap()
    before = rss_kb()
    trim()
    after = rss_kb()
    assert len(kept) == 400
    assert before - after > 10_000, (before, after)  # [kB] of the ~39 MB freed


def test_the_service_runner_trims_on_its_own() -> None:
    async def run() -> int:
        kept = fragment_heap()
        before = rss_kb()
        trimmer = asyncio.create_task(trim_heap(every=0.05))
        await asyncio.sleep(0.3)
        trimmer.cancel()
        assert len(kept) == 400
        return before - rss_kb()

    assert asyncio.run(run()) > 10_000

"""Soak, the short CI version of ``bench/soak_bench.py`` (100 packs for an hour there).

20 simulated packs polled every second through every service for 30 s (the packs' clock
60 times faster): every state published after the warm-up is a row of the archive, and no
process grows by more than 5 % between the end of the warm-up and the end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bench.soak_bench import soak

from tests.reliability.counts import COUNTS
from tests.support.needs import needs
from tests.support.procs import find_mosquitto

pytestmark = pytest.mark.integration
PACKS = 20
SECONDS = 30.0


@needs(find_mosquitto(), "mosquitto is not installed")
@pytest.mark.timeout(300)
def test_twenty_packs_lose_no_row_and_do_not_grow(tmp_path: Path) -> None:
    result = asyncio.run(soak(PACKS, SECONDS, warmup=5.0, speed=60.0, work=tmp_path))
    COUNTS["soak 20 packs x 30 s: states published"] += result["states_published"]
    COUNTS["soak 20 packs x 30 s: archive rows of them"] += result["states_in_archive"]
    COUNTS["soak 20 packs x 30 s: processes measured"] += result["processes"]
    COUNTS["soak 20 packs x 30 s: largest RSS growth [0.01 %]"] += round(
        100 * result["max_growth"][1]
    )
    assert result["exit_code"] == 0 and result["restarts"] == 0, result
    assert result["states_published"] >= PACKS * SECONDS * 0.8, result
    assert result["lost"] == 0, result["lost_examples"]
    assert result["max_growth"][1] <= 5.0, result["growth_pct"]

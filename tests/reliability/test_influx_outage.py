"""The InfluxDB-compatible server away while states keep coming: every point arrives afterwards.

The compressed CI variant of ``bench/reliability_bench.py --influx-outage 600``: the history
service as a process, a real VictoriaMetrics stopped for OUTAGE seconds while 100 states a second
arrive (batches of 20, so the on-disk buffer holds well over a hundred batches), then started
again; the points read back from the server must equal the points sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bench.reliability_bench import influx_outage

from tests.reliability.counts import COUNTS
from tests.support.needs import require
from tests.support.procs import find_mosquitto
from tests.support.victoria import find_victoria

pytestmark = pytest.mark.integration
OUTAGE = 30.0  # [s]; the bench runs 600


def test_every_point_arrives_after_the_server_was_away(tmp_path: Path) -> None:
    missing = [
        n
        for n, found in (("mosquitto", find_mosquitto()), ("victoria-metrics", find_victoria()))
        if found is None
    ]
    require(not missing, f"{', '.join(missing)} not installed")
    result = asyncio.run(influx_outage(tmp_path, OUTAGE, rate=100.0))
    COUNTS["influx outage 30 s: points sent"] += result["points_sent"]
    COUNTS["influx outage 30 s: points read back"] += result["points_read_back"]
    COUNTS["influx outage 30 s: buffer peak (points)"] += result["buffer_peak"]
    assert result["alive"] and result["tracebacks"] == 0
    assert result["buffer_peak"] >= 100 * 20  # many batches waited on disk
    assert result["overflow"] == 0
    assert result["points_read_back"] == result["points_sent"], result

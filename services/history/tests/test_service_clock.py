"""States stamped ahead of the history's own clock are refused, said once, and counted."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bmsgate_common.models import PackState, utcnow
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_history.service import History


def state(ts: object) -> PackState:
    # fmt: off
    return PackState.model_validate({
        "pack": "p1", "name": "p1", "protocol": "daly_classic", "ts": ts, "pack_voltage": 53.0,
        "current": -5.0, "power": -265.0, "soc": 60.0, "cell_voltages": [3.31] * 16,
        "cell_count": 16,
    })
    # fmt: on


async def test_states_from_a_clock_ahead_are_refused_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = Settings.model_validate({"data_dir": str(tmp_path), "timezone": "UTC"})
    history = History(cfg, Backbone(cfg.mqtt, "history"))  # not connected: nothing is sent here
    now = utcnow()
    for k in range(3):  # the sender's clock an hour ahead
        await history.on_state("p1", state(now + timedelta(hours=1, seconds=k)))
    await history.on_state("p1", state(now))
    await history.on_state("p1", state(now + timedelta(seconds=60)))  # within the margin
    assert history.archive is not None
    history.archive.commit()
    assert history.refused == 3
    assert history.counters()["refused_ahead"] == 3
    assert history.archive.count_raw("p1", 0, 2**62) == 2
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in said if "ahead of this clock" in m]) == 1, said
    history.close()

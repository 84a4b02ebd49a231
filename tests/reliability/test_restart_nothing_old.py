"""After `bmsgate run` restarts, nothing old shows as current on the user's broker.

Before, the publisher announced the gateway `online` while the pack's availability kept from
before the stop still said `online`: Home Assistant (availability mode "all") showed the pack's
last values as current for a few seconds, then `unavailable`, then live. Now each configured
pack is set `offline` before the gateway comes online, and `online` only with a fresh state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto
from tests.support.tree import bmsgate_run, with_target

pytestmark = pytest.mark.integration


def shown(seen: Listener, start: int) -> list[tuple[str, object]]:
    """(gateway or pack, availability) from message ``start`` on, in the order they came."""
    out = []
    for m in seen.messages[start:]:
        if m.topic == "bmsgate/availability":
            out.append(("gateway", m.payload))
        elif m.topic == "bmsgate/sim-1/availability":
            out.append(("pack", m.payload))
    return out


async def test_a_restart_shows_the_pack_offline_until_a_fresh_state(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = with_target(tmp_path, mosquitto.port)
    async with listen(mosquitto.port, "bmsgate/#") as seen:
        async with bmsgate_run(config, tmp_path / "first.log"):
            await seen.wait_for(lambda s: ("pack", b"online") in shown(s, 0), within=30)
        start = len(seen.messages)
        async with bmsgate_run(config, tmp_path / "second.log"):
            await seen.wait_for(lambda s: ("pack", b"online") in shown(s, start), within=30)
    after = shown(seen, start)
    gateway_online = after.index(("gateway", b"online"))
    assert ("pack", b"offline") in after[:gateway_online], after  # before the gateway is back
    assert after.index(("pack", b"online")) > gateway_online  # online again with a fresh state
    COUNTS["restart: pack shown offline before the gateway is online"] += 1

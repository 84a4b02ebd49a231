"""tests/support/mqtt.py: an aiomqtt client whose broker went away leaves no unread error."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from tests.support.mqtt import seen_disconnect
from tests.support.procs import Mosquitto


async def test_a_connection_the_broker_broke_leaves_no_error_for_asyncio_to_print(
    mosquitto: Mosquitto,
) -> None:
    client = aiomqtt.Client("127.0.0.1", mosquitto.port)

    async def lose_it() -> None:
        async with asyncio.timeout(2.0), client:
            mosquitto.stop()  # mosquitto closes every connection
            await asyncio.sleep(10)

    with pytest.raises(TimeoutError):  # left by a time limit, not through the message iterator
        await lose_it()
    lost = client._disconnected
    # asyncio prints "Future exception was never retrieved" for such a future when collected
    assert lost.done() and lost._log_traceback  # type: ignore[attr-defined]
    seen_disconnect(client)
    assert not lost._log_traceback  # type: ignore[attr-defined]
    seen_disconnect(aiomqtt.Client("127.0.0.1", mosquitto.port))  # never connected: nothing

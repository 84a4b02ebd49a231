"""The broker-kill tests' set-up and asking the backbone from a test: the services' retained
statuses, a history query."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt

from bmsgate_common import topics
from tests.support.procs import garage_config

HOST = "127.0.0.1"


def control_config(
    tmp_path: Path,
    broker: int,
    daly_pty: str,
    *,
    control: bool = True,
    name: str = "config.yaml",
    **sections: Any,
) -> Path:
    """A configuration file ``name``: the simulated DALY pack ``garage`` polled every 0.5 s with
    control on (or off), on the backbone at ``broker`` (heartbeat 2 s), plus ``sections``."""
    return garage_config(
        tmp_path,
        broker,
        daly_pty,
        bus={"poll_interval": 0.5},
        name=name,
        control={"enabled": control},
        **sections,
    )


async def statuses(port: int, within: float = 1.5) -> dict[str, dict[str, Any]]:
    """Every service's retained status (``state``, ``detail``...), by service name."""
    found: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(HOST, port) as client:
        await client.subscribe("bmsgate/service/+/status", qos=1)
        try:
            async with asyncio.timeout(within):
                async for message in client.messages:
                    body = json.loads(message.payload)  # type: ignore[arg-type]
                    found[str(message.topic).split("/")[2]] = body
        except TimeoutError:
            pass
    return found


async def ask_history(port: int, query: dict[str, Any], within: float = 10.0) -> dict[str, Any]:
    """The history service's reply to ``query`` (asked as client ``t``)."""
    async with aiomqtt.Client(HOST, port) as client:
        await client.subscribe(topics.HISTORY_REPLY.topic("t"), qos=1)
        await client.publish(topics.HISTORY_REQUEST.topic("t"), json.dumps(query), qos=1)
        async with asyncio.timeout(within):
            async for message in client.messages:
                reply: dict[str, Any] = json.loads(message.payload)  # type: ignore[arg-type]
                if reply.get("transaction") == query["transaction"]:
                    return reply
    return {}

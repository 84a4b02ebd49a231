"""The topic map: every backbone topic, its payload model, and whether it is retained.

Topics live under one configurable base (default ``bmsgate``), zigbee2mqtt style:
``<base>/bms/<pack>/state`` and so on. Patterns use MQTT's ``+`` for the pack or service.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from pydantic import BaseModel

from .models import (
    AlarmEvent,
    Availability,
    Command,
    CommandResult,
    DailyStats,
    HealthReport,
    HistoryQuery,
    HistoryReply,
    PackState,
    RawData,
    RawLease,
    RawLeaseState,
    ServiceRestart,
    ServiceStatus,
    SniffedFrame,
    SniffSet,
    SniffState,
    TunnelCommand,
    TunnelStatus,
)

DEFAULT_BASE: Final = "bmsgate"


class TopicSpec(NamedTuple):
    """A topic pattern relative to the base, its payload model, and MQTT flags."""

    pattern: str
    model: type[BaseModel]
    retained: bool
    qos: int


TOPICS: Final[dict[str, TopicSpec]] = {
    "state": TopicSpec("bms/+/state", PackState, retained=True, qos=1),
    "availability": TopicSpec("bms/+/availability", Availability, retained=True, qos=1),
    "alarm": TopicSpec("bms/+/alarm", AlarmEvent, retained=False, qos=1),
    "command": TopicSpec("bms/+/set", Command, retained=False, qos=1),
    "result": TopicSpec("bms/+/result", CommandResult, retained=False, qos=1),
    "raw_lease": TopicSpec("bms/+/raw/lease", RawLease, retained=False, qos=1),
    "raw_lease_state": TopicSpec("bms/+/raw/lease/state", RawLeaseState, retained=True, qos=1),
    "raw_tx": TopicSpec("bms/+/raw/tx", RawData, retained=False, qos=1),
    "raw_rx": TopicSpec("bms/+/raw/rx", RawData, retained=False, qos=1),
    "sniff": TopicSpec("bus/+/sniff", SniffedFrame, retained=False, qos=0),
    "sniff_set": TopicSpec("bus/+/sniff/set", SniffSet, retained=False, qos=1),
    "sniff_state": TopicSpec("bus/+/sniff/state", SniffState, retained=True, qos=1),
    "daily": TopicSpec("bms/+/daily", DailyStats, retained=True, qos=1),
    "service_status": TopicSpec("service/+/status", ServiceStatus, retained=True, qos=1),
    "service_restart": TopicSpec("service/+/restart", ServiceRestart, retained=False, qos=1),
    "health": TopicSpec("bms/+/health", HealthReport, retained=True, qos=1),
    "history_request": TopicSpec("history/+/request", HistoryQuery, retained=False, qos=1),
    "history_reply": TopicSpec("history/+/reply", HistoryReply, retained=False, qos=1),
    "tunnel_command": TopicSpec("bms/+/tunnel/set", TunnelCommand, retained=False, qos=1),
    "tunnel_status": TopicSpec("bms/+/tunnel/state", TunnelStatus, retained=True, qos=1),
}


def topic(kind: str, name: str, base: str = DEFAULT_BASE) -> str:
    """The concrete topic of ``kind`` (a TOPICS key) for one pack or service ``name``."""
    return f"{base}/{TOPICS[kind].pattern.replace('+', name)}"


def pattern(kind: str, base: str = DEFAULT_BASE) -> str:
    """The wildcard subscription for every pack or service of ``kind``."""
    return f"{base}/{TOPICS[kind].pattern}"


def name_in(topic_name: str, kind: str, base: str = DEFAULT_BASE) -> str | None:
    """The pack or service name a concrete topic carries, or None if it is not of ``kind``."""
    want = pattern(kind, base).split("/")
    got = topic_name.split("/")
    if len(want) != len(got):
        return None
    name = None
    for w, g in zip(want, got, strict=True):
        if w == "+":
            name = g
        elif w != g:
            return None
    return name

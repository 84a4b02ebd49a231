"""The topic map: every backbone topic, its payload model, and whether it is retained.

Topics live under one configurable base (default ``bmsgate``), zigbee2mqtt style:
``<base>/bms/<pack>/state`` and so on. Patterns use MQTT's ``+`` for the pack or service. Each
topic is a typed ``TopicSpec`` constant; ``TOPICS`` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel

from .models import (
    AlarmEvent,
    Availability,
    BmsSettings,
    Command,
    CommandResult,
    DailyStats,
    HealthReport,
    HistoryFileReply,
    HistoryFileRequest,
    HistoryQuery,
    HistoryReply,
    LogLines,
    LogRequest,
    NotifyTest,
    NotifyTestResult,
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
M = TypeVar("M", bound=BaseModel)


def match(pattern: str, topic: str) -> str | None:
    """The level a concrete topic has where ``pattern`` has ``+``; None if it does not match.

    The one topic matcher of bmsgate: the backbone's patterns and a target's topic templates
    (with ``{pack}`` made ``+``) both go through it.
    """
    want = pattern.split("/")
    got = topic.split("/")
    if len(want) != len(got):
        return None
    name = None
    for w, g in zip(want, got, strict=True):
        if w == "+":
            name = g
        elif w != g:
            return None
    return name


@dataclass(frozen=True)
class TopicSpec(Generic[M]):
    """A topic pattern relative to the base, its payload model, and MQTT flags.

    Generic in the model: ``Backbone.publish(STATE, pack, availability)`` is a type error, and
    so is a topic that is not in this module.
    """

    kind: str  # the channel's name in schemas, logs and the broker's access list
    pattern: str
    model: type[M]
    retained: bool
    qos: int

    def topic(self, name: str, base: str = DEFAULT_BASE) -> str:
        """The concrete topic for one pack, bus, service or client ``name``."""
        return f"{base}/{self.pattern.replace('+', name)}"

    def subscription(self, base: str = DEFAULT_BASE) -> str:
        """The wildcard subscription for every name."""
        return f"{base}/{self.pattern}"

    def name_in(self, topic: str, base: str = DEFAULT_BASE) -> str | None:
        """The name a concrete topic carries, or None if it is not one of these."""
        return match(self.subscription(base), topic)


STATE: Final = TopicSpec("state", "bms/+/state", PackState, retained=True, qos=1)
AVAILABILITY: Final = TopicSpec(
    "availability", "bms/+/availability", Availability, retained=True, qos=1
)
ALARM: Final = TopicSpec("alarm", "bms/+/alarm", AlarmEvent, retained=False, qos=1)
COMMAND: Final = TopicSpec("command", "bms/+/set", Command, retained=False, qos=1)
RESULT: Final = TopicSpec("result", "bms/+/result", CommandResult, retained=False, qos=1)
RAW_LEASE: Final = TopicSpec("raw_lease", "bms/+/raw/lease", RawLease, retained=False, qos=1)
RAW_LEASE_STATE: Final = TopicSpec(
    "raw_lease_state", "bms/+/raw/lease/state", RawLeaseState, retained=True, qos=1
)
RAW_TX: Final = TopicSpec("raw_tx", "bms/+/raw/tx", RawData, retained=False, qos=1)
RAW_RX: Final = TopicSpec("raw_rx", "bms/+/raw/rx", RawData, retained=False, qos=1)
SNIFF: Final = TopicSpec("sniff", "bus/+/sniff", SniffedFrame, retained=False, qos=0)
SNIFF_SET: Final = TopicSpec("sniff_set", "bus/+/sniff/set", SniffSet, retained=False, qos=1)
SNIFF_STATE: Final = TopicSpec("sniff_state", "bus/+/sniff/state", SniffState, retained=True, qos=1)
DAILY: Final = TopicSpec("daily", "bms/+/daily", DailyStats, retained=True, qos=1)
SETTINGS: Final = TopicSpec("settings", "bms/+/settings", BmsSettings, retained=True, qos=1)
SERVICE_STATUS: Final = TopicSpec(
    "service_status", "service/+/status", ServiceStatus, retained=True, qos=1
)
SERVICE_RESTART: Final = TopicSpec(
    "service_restart", "service/+/restart", ServiceRestart, retained=False, qos=1
)
SERVICE_LOGS: Final = TopicSpec("service_logs", "service/+/logs", LogRequest, retained=False, qos=1)
SERVICE_LOG_LINES: Final = TopicSpec(
    "service_log_lines", "service/+/logs/reply", LogLines, retained=False, qos=1
)
HEALTH: Final = TopicSpec("health", "bms/+/health", HealthReport, retained=True, qos=1)
HISTORY_REQUEST: Final = TopicSpec(
    "history_request", "history/+/request", HistoryQuery, retained=False, qos=1
)
HISTORY_REPLY: Final = TopicSpec(
    "history_reply", "history/+/reply", HistoryReply, retained=False, qos=1
)
HISTORY_FILES: Final = TopicSpec(
    "history_files", "history/+/files", HistoryFileRequest, retained=False, qos=1
)
HISTORY_FILES_REPLY: Final = TopicSpec(
    "history_files_reply", "history/+/files/reply", HistoryFileReply, retained=False, qos=1
)
NOTIFY_TEST: Final = TopicSpec("notify_test", "notifier/+/test", NotifyTest, retained=False, qos=1)
NOTIFY_TEST_RESULT: Final = TopicSpec(
    "notify_test_result", "notifier/+/test/reply", NotifyTestResult, retained=False, qos=1
)
TUNNEL_COMMAND: Final = TopicSpec(
    "tunnel_command", "bms/+/tunnel/set", TunnelCommand, retained=False, qos=1
)
TUNNEL_STATUS: Final = TopicSpec(
    "tunnel_status", "bms/+/tunnel/state", TunnelStatus, retained=True, qos=1
)

# every backbone topic, by kind: schemas, the AsyncAPI document and access lists are made from it
TOPICS: Final[dict[str, TopicSpec[Any]]] = {
    spec.kind: spec
    for spec in (
        STATE,
        AVAILABILITY,
        ALARM,
        COMMAND,
        RESULT,
        SETTINGS,
        RAW_LEASE,
        RAW_LEASE_STATE,
        RAW_TX,
        RAW_RX,
        SNIFF,
        SNIFF_SET,
        SNIFF_STATE,
        DAILY,
        SERVICE_STATUS,
        SERVICE_RESTART,
        SERVICE_LOGS,
        SERVICE_LOG_LINES,
        HEALTH,
        HISTORY_REQUEST,
        HISTORY_REPLY,
        HISTORY_FILES,
        HISTORY_FILES_REPLY,
        NOTIFY_TEST,
        NOTIFY_TEST_RESULT,
        TUNNEL_COMMAND,
        TUNNEL_STATUS,
    )
}

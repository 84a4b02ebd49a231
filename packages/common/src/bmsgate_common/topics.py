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
from .topic_routes import DEFAULT_BASE as DEFAULT_BASE
from .topic_routes import ROUTES

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


def _spec(kind: str, model: type[M]) -> TopicSpec[M]:
    pattern, retained, qos = ROUTES[kind]
    return TopicSpec(kind, pattern, model, retained=retained, qos=qos)


STATE: Final = _spec("state", PackState)
AVAILABILITY: Final = _spec("availability", Availability)
ALARM: Final = _spec("alarm", AlarmEvent)
COMMAND: Final = _spec("command", Command)
RESULT: Final = _spec("result", CommandResult)
RAW_LEASE: Final = _spec("raw_lease", RawLease)
RAW_LEASE_STATE: Final = _spec("raw_lease_state", RawLeaseState)
RAW_TX: Final = _spec("raw_tx", RawData)
RAW_RX: Final = _spec("raw_rx", RawData)
SNIFF: Final = _spec("sniff", SniffedFrame)
SNIFF_SET: Final = _spec("sniff_set", SniffSet)
SNIFF_STATE: Final = _spec("sniff_state", SniffState)
DAILY: Final = _spec("daily", DailyStats)
SETTINGS: Final = _spec("settings", BmsSettings)
SERVICE_STATUS: Final = _spec("service_status", ServiceStatus)
SERVICE_RESTART: Final = _spec("service_restart", ServiceRestart)
SERVICE_LOGS: Final = _spec("service_logs", LogRequest)
SERVICE_LOG_LINES: Final = _spec("service_log_lines", LogLines)
HEALTH: Final = _spec("health", HealthReport)
HISTORY_REQUEST: Final = _spec("history_request", HistoryQuery)
HISTORY_REPLY: Final = _spec("history_reply", HistoryReply)
HISTORY_FILES: Final = _spec("history_files", HistoryFileRequest)
HISTORY_FILES_REPLY: Final = _spec("history_files_reply", HistoryFileReply)
NOTIFY_TEST: Final = _spec("notify_test", NotifyTest)
NOTIFY_TEST_RESULT: Final = _spec("notify_test_result", NotifyTestResult)
TUNNEL_COMMAND: Final = _spec("tunnel_command", TunnelCommand)
TUNNEL_STATUS: Final = _spec("tunnel_status", TunnelStatus)

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

"""Backbone messages as plain data, for the lean reader, which runs without pydantic.

The models of models.py stay the message contract: every builder here makes exactly the fields
of its model (``v`` included), and tests hold each to it (keys and types against the model's
``model_fields``; every kind the lean reader publishes in a real run validated by the model).
``encode`` writes JSON as the models' ``model_dump_json`` does: compact, timestamps in UTC with a
``Z``. Only what the lean reader publishes on its steady path is here; what it publishes
rarely (a command's result, the BMS's settings) it makes with the models, imported then.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from .clock import WALL

V: Final = 1  # the version of every model these build (their ``v``)
Message = dict[str, Any]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (as models.utcnow)."""
    return WALL.now()


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode(message: Message) -> bytes:
    """The message as the models' JSON."""
    return json.dumps(message, default=_json, separators=(",", ":")).encode()


def pack_state(fields: dict[str, Any]) -> Message:
    """A PackState: the reader's fields (logic.state_fields, counters, extras)."""
    return {"v": V, "soc_estimate": None, **fields}


def availability(pack: str, state: str, ts: datetime, reason: str | None = None) -> Message:
    """An Availability."""
    return {"v": V, "pack": pack, "state": state, "ts": ts, "reason": reason}


def alarm_event(pack: str, ts: datetime, code: str, level: str, text: str, active: bool) -> Message:
    """An AlarmEvent."""
    return {
        "v": V,
        "pack": pack,
        "ts": ts,
        "code": code,
        "level": level,
        "text": text,
        "active": active,
    }


def service_status(
    service: str,
    state: str,
    ts: datetime | None = None,
    version: str | None = None,
    started: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> Message:
    """A ServiceStatus (the last will leaves out what is None, as the backbone's does)."""
    return {
        "v": V,
        "service": service,
        "state": state,
        "ts": ts,
        "version": version,
        "started": started,
        "detail": detail or {},
    }


def bms_settings(pack: str, protocol: str, ts: datetime, settings: list[dict[str, Any]]) -> Message:
    """A BmsSettings; each of ``settings`` a SettingValue's fields (core._publish_settings)."""
    return {"v": V, "pack": pack, "protocol": protocol, "ts": ts, "settings": settings}


def will(service: str, version: str) -> bytes:
    """A service's last will: its ServiceStatus ``offline``, without what it cannot know then."""
    status = service_status(service, "offline", version=version)
    return encode({k: v for k, v in status.items() if v is not None})


def sniff_state(bus: str, enabled: bool, ts: datetime, transaction: str | None = None) -> Message:
    """A SniffState."""
    return {"v": V, "bus": bus, "enabled": enabled, "ts": ts, "transaction": transaction}

"""A preview of the Home Assistant discovery messages, made by the publisher's own Plan.

Nothing is built here: each pack's state goes through a publisher ``Plan`` for the target, and
the discovery configs and the JSON state topic it would send are kept. Pure.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from pydantic import BaseModel, Field

from bmsgate_common.models import PackState
from bmsgate_common.mqtt import VERSION
from bmsgate_common.settings import HomeAssistantSettings, Settings, TargetSettings
from bmsgate_outputs.discovery import web_url
from bmsgate_outputs.plan import HeardPacks, Plan
from bmsgate_outputs.topics import TargetTopics

PREVIEW_TARGET = "homeassistant"  # the name of the stand-in target when none is configured


class UnknownTarget(ValueError):
    """``?target=`` names no publisher target."""


class DiscoveryMessage(BaseModel):
    """One MQTT message as the publisher would send it."""

    topic: str
    retain: bool
    qos: int
    payload: Any = Field(description="the JSON payload, parsed")


class DiscoveryPreview(BaseModel):
    """What a publisher target sends Home Assistant for the packs with a known state."""

    target: str
    enabled: bool = Field(description="homeassistant.enabled on that target (false: as if it were)")
    discovery_prefix: str
    targets: list[str] = Field(description="every publisher target, for picking another")
    messages: list[DiscoveryMessage]


def pick_target(settings: Settings, name: str | None) -> TargetSettings:
    """``name``, else the first target with discovery on, else a default target (not configured)."""
    targets = settings.publisher.targets
    if name is not None:
        for target in targets:
            if target.name == name:
                return target
        raise UnknownTarget(f"no publisher target {name!r}")
    chosen = next((t for t in targets if t.homeassistant.enabled), None)
    return chosen or TargetSettings(name=PREVIEW_TARGET)


def preview(
    settings: Settings, target: TargetSettings, states: list[PackState]
) -> DiscoveryPreview:
    """The discovery configs and HA state messages of ``states`` for ``target``."""
    ha = target.homeassistant
    shown = target.model_copy(
        update={
            "homeassistant": HomeAssistantSettings(
                enabled=True, discovery_prefix=ha.discovery_prefix
            ),
            "flat": False,
            "openhasp": [],
        }
    )
    shown = shown.model_copy(update={"dongle": shown.dongle.model_copy(update={"enabled": False})})
    topics = TargetTopics(target.topic_prefix)
    web = web_url(settings.api.host, settings.api.port, socket.gethostname())  # as the publisher
    out: list[DiscoveryMessage] = []
    for state in states:
        if not (target.packs is None or state.pack in target.packs):
            continue
        plan = Plan(
            shown, settings.control.enabled, VERSION, settings.stale_after, configuration_url=web
        )
        hub = HeardPacks(settings.stale_after)
        hub.on_state(state)
        for msg in plan.tick(hub, state.ts, state.ts, 0.0, 0):
            if any(m.topic == msg.topic for m in out):
                continue  # the gateway device: one for all packs
            if msg.topic.startswith(f"{ha.discovery_prefix}/") or msg.topic == topics.state(
                state.pack
            ):
                out.append(
                    DiscoveryMessage(
                        topic=msg.topic,
                        retain=msg.retain,
                        qos=msg.qos,
                        payload=json.loads(msg.payload),
                    )
                )
    return DiscoveryPreview(
        target=target.name,
        enabled=ha.enabled,
        discovery_prefix=ha.discovery_prefix,
        targets=[t.name for t in settings.publisher.targets],
        messages=out,
    )

"""Commands arriving from a target's broker: Home Assistant switches and the dongle's MOS packet."""

from __future__ import annotations

import json

from bmsgate_common.models import CommandAction
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs.entities import MOS_ACTIONS
from bmsgate_outputs.topics import pack_in


def parse_switch(payload: bytes) -> bool:
    """ON/OFF (also 1/0, true/false) as Home Assistant and most panels send them."""
    text = payload.decode(errors="replace").strip().strip('"').lower()
    if text in ("on", "1", "true"):
        return True
    if text in ("off", "0", "false"):
        return False
    raise ValueError(f"expected ON or OFF, got {payload[:40]!r}")


def parse_mos(payload: bytes) -> list[tuple[CommandAction, bool]]:
    """The dongle's MOS packet from IoT MQTT Panel: ``{"CMS":0}``, ``{"DMS":1}`` or both."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f'expected JSON like {{"CMS":1}}, got {payload[:40]!r}') from None
    if not isinstance(data, dict) or not data or set(data) - {"CMS", "DMS"}:
        raise ValueError(f"expected the keys CMS and/or DMS, got {payload[:40]!r}")
    out: list[tuple[CommandAction, bool]] = []
    for key, action in (("CMS", "set_charge_mos"), ("DMS", "set_discharge_mos")):
        if key in data:
            out.append((action, parse_switch(json.dumps(data[key]).encode())))  # type: ignore[arg-type]
    return out


def parse_command(
    target: TargetSettings, topic: str, payload: bytes
) -> tuple[str, list[tuple[CommandAction, bool]]]:
    """The pack and MOS actions an incoming message asks for; ValueError with the reason."""
    prefix = target.topic_prefix
    pack = pack_in(target.dongle.mos_topic, prefix, topic) if target.dongle.enabled else None
    if pack is not None:
        return pack, parse_mos(payload)
    parts = topic.split("/")
    base = prefix.split("/")
    if len(parts) == len(base) + 3 and parts[: len(base)] == base and parts[-1] == "set":
        pack, key = parts[-3], parts[-2]
        action = MOS_ACTIONS.get(key)
        if action is None:
            raise ValueError(f"no switch {key!r}")
        return pack, [(action, parse_switch(payload))]  # type: ignore[list-item]
    raise ValueError("not a command topic")

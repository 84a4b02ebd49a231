"""Commands arriving from a target's broker: Home Assistant switches and the dongle's MOS packet."""

from __future__ import annotations

import json

from bmsgate_common.models import CommandAction
from bmsgate_common.settings import TargetSettings
from bmsgate_outputs.discovery import SET_SOC
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


def parse_soc(payload: bytes) -> float:
    """A SOC in percent, as Home Assistant's number entity sends it (``55`` or ``55.0``)."""
    text = payload.decode(errors="replace").strip()
    try:
        soc = float(text)
    except ValueError:
        raise ValueError(f"expected a SOC 0..100, got {payload[:40]!r}") from None
    if not 0 <= soc <= 100:  # also refuses nan and inf
        raise ValueError(f"SOC {text[:20]} is not within 0..100 %")
    return soc


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
) -> tuple[str, list[tuple[CommandAction, bool | float]]]:
    """The pack and actions (switches, set SOC) a message asks for; ValueError with the reason."""
    prefix = target.topic_prefix
    pack = pack_in(target.dongle.mos_topic, prefix, topic) if target.dongle.enabled else None
    if pack is not None:
        return pack, list(parse_mos(payload))
    parts = topic.split("/")
    base = prefix.split("/")
    if len(parts) == len(base) + 3 and parts[: len(base)] == base and parts[-1] == "set":
        pack, key = parts[-3], parts[-2]
        if key == SET_SOC:
            return pack, [("set_soc", parse_soc(payload))]
        action = MOS_ACTIONS.get(key)
        if action is None:
            raise ValueError(f"no switch {key!r}")
        return pack, [(action, parse_switch(payload))]  # type: ignore[list-item]
    raise ValueError("not a command topic")

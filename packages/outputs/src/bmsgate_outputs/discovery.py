"""Home Assistant device-based MQTT discovery (HA 2024.11+), built from the description table.

One retained config per pack on ``<discovery_prefix>/device/bmsgate_<pack>/config``; sources
in docs/publisher.md (research/FORMATS.md section 1). Pure functions only.
"""

from __future__ import annotations

import re
from typing import Any, Final

from bmsgate_bms.registry import info as protocol_info
from bmsgate_common.models import BmsSettings, PackState

from .entities import Description
from .topics import TargetTopics

ORIGIN_NAME: Final = "bmsgate"
FIRMWARE_KEYS: Final = ("software_version", "firmware_version")  # extras a BMS may report
HARDWARE_KEYS: Final = ("hardware_model", "hardware_version")
SERIAL_KEYS: Final = ("serial_number", "serial")
WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})


def web_url(host: str, port: int, hostname: str) -> str:
    """The web UI's address for HA's "Visit" link: the API's own host, else this machine's name.

    An API listening on every address is reached by the machine's name (``hostname``).
    """
    name = hostname if host in WILDCARD_HOSTS else host
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


def _origin(version: str, url: str | None) -> dict[str, Any]:
    """Who sent the discovery: bmsgate, its version and where its web UI answers."""
    return {"name": ORIGIN_NAME, "sw": version, **({"url": url} if url else {})}


def _first_extra(state: PackState, keys: tuple[str, ...]) -> str | None:
    return next((str(state.extras[k]) for k in keys if state.extras.get(k)), None)


def _device(state: PackState) -> dict[str, Any]:
    """Make, model (from the protocol's own description) and firmware where the BMS says it."""
    try:
        info = protocol_info(state.protocol)
        dev: dict[str, Any] = {"mf": info.manufacturer, "mdl": info.model}
    except KeyError:
        dev = {"mf": state.protocol, "mdl": state.protocol}
    found = {
        "sw": _first_extra(state, FIRMWARE_KEYS),
        "hw": _first_extra(state, HARDWARE_KEYS),
        "sn": _first_extra(state, SERIAL_KEYS),
    }
    return dev | {k: v for k, v in found.items() if v is not None}


def object_id(pack: str) -> str:
    """The device's discovery object id; pack ids already fit HA's ``[a-zA-Z0-9_-]``."""
    return f"bmsgate_{pack}"


def unique_id(pack: str, key: str) -> str:
    """Stable forever: derived from the user's pack id and the row key, never from a port."""
    return f"bmsgate_{pack}_{key}"


def config_topic(prefix: str, pack: str) -> str:
    """Where the device config goes."""
    return f"{prefix}/device/{object_id(pack)}/config"


def gateway_id(prefix: str) -> str:
    """The gateway device's id: one per target prefix; hyphens keep it apart from pack devices."""
    return "bmsgate-gateway-" + re.sub(r"[^A-Za-z0-9_-]", "_", prefix)


def gateway_config(
    topics: TargetTopics, *, version: str, configuration_url: str | None = None
) -> dict[str, Any]:
    """The gateway as a device, bmsgate's version as its ``sw``; every pack is connected via it."""
    ident = gateway_id(topics.prefix)
    return {
        "dev": {
            "ids": [ident],
            "name": "bmsgate",
            "mf": "bmsgate",
            "mdl": "Gateway",
            "sw": version,
            **({"cu": configuration_url} if configuration_url else {}),
        },
        "o": _origin(version, configuration_url),
        "qos": 1,
        "cmps": {
            "connected": {
                "p": "binary_sensor",
                "uniq_id": f"{ident}_connected",
                "name": "Connected",
                "dev_cla": "connectivity",
                "ent_cat": "diagnostic",
                "stat_t": topics.gateway_availability(),
                "pl_on": "online",
                "pl_off": "offline",
            }
        },
    }


def gateway_topic(prefix: str, topics: TargetTopics) -> str:
    """Where the gateway device's config goes."""
    return f"{prefix}/device/{gateway_id(topics.prefix)}/config"


def value_template(key: str) -> str:
    """A key of the JSON state; a missing or null value renders ``None``, HA's "unknown".

    ``default`` tests for an undefined value without touching it, so HA logs no template warning.
    """
    return f"{{{{ value_json.{key} | default(None) }}}}"


def _component(
    row: Description, pack: str, topics: TargetTopics, *, expire_after: int
) -> dict[str, Any]:
    pack_avail = [{"t": topics.gateway_availability()}, {"t": topics.availability(pack)}]
    cmp: dict[str, Any] = {
        "p": row.platform,
        "uniq_id": unique_id(pack, row.key),
        "name": row.name,
        "avty": pack_avail,
        "avty_mode": "all",  # stale values show as unavailable, not frozen
    }
    if row.platform == "switch":
        cmp |= {
            "stat_t": topics.flat(pack, row.flat_topic),
            "cmd_t": topics.command(pack, row.key),
            "pl_on": "ON",
            "pl_off": "OFF",
            "opt": False,  # the state shown is the one read back from the BMS
            "json_attr_t": topics.command_result(pack, row.key),  # last command: ok or failed
        }
    else:
        cmp |= {"stat_t": topics.state(pack), "val_tpl": value_template(row.key)}
    optional = {
        "dev_cla": row.device_class,
        "unit_of_meas": row.unit,
        "stat_cla": row.state_class,
        "ent_cat": row.category,
        "sug_dsp_prc": row.precision,
        "ic": row.icon,
        "ops": list(row.options) if row.options else None,
    }
    cmp |= {k: v for k, v in optional.items() if v is not None}
    if not row.enabled:
        cmp["en"] = False
    if row.platform == "sensor" and row.state_class == "measurement":
        cmp["exp_aft"] = expire_after
    return cmp


SET_SOC: Final = "set_soc"  # the number entity's component id and command topic level


def can_set_soc(state: PackState) -> bool:
    """Whether the pack's protocol can be given a SOC (its INFO says so); never a bank."""
    if state.extras.get("bank") is True:
        return False
    try:
        return protocol_info(state.protocol).soc_setting
    except KeyError:
        return False


def soc_number(pack: str, topics: TargetTopics) -> dict[str, Any]:
    """A Set-SOC number (control on): sends ``<prefix>/<pack>/set_soc/set``, shows the BMS's SOC.

    The state is the SOC read back from the BMS, so a refused write shows the old value again.
    """
    return {
        "p": "number",
        "uniq_id": unique_id(pack, SET_SOC),
        "name": "Set state of charge",
        "cmd_t": topics.command(pack, SET_SOC),
        "stat_t": topics.state(pack),
        "val_tpl": value_template("soc"),
        "min": 0,
        "max": 100,
        "step": 1,
        "unit_of_meas": "%",
        "mode": "box",
        "ent_cat": "config",
        "opt": False,
        "avty": [{"t": topics.gateway_availability()}, {"t": topics.availability(pack)}],
        "avty_mode": "all",
    }


SETTING_PREFIX: Final = "setting_"  # the component ids of the BMS's settings
SETTINGS_LEVEL: Final = "settings"  # <prefix>/<pack>/settings: the BMS's own settings as JSON


def setting_components(settings: BmsSettings, topics: TargetTopics) -> dict[str, dict[str, Any]]:
    """One diagnostic sensor per BMS setting, disabled until the user enables it in HA."""
    pack = settings.pack
    out: dict[str, dict[str, Any]] = {}
    for row in settings.settings:
        key = f"{SETTING_PREFIX}{row.key}"
        cmp: dict[str, Any] = {
            "p": "sensor",
            "uniq_id": unique_id(pack, key),
            "name": f"Setting: {row.label}",
            "stat_t": topics.flat(pack, SETTINGS_LEVEL),
            "val_tpl": value_template(row.key),
            "ent_cat": "diagnostic",
            "en": False,  # dozens of limits: shown in HA only when someone asks for them
            "avty": [{"t": topics.gateway_availability()}, {"t": topics.availability(pack)}],
            "avty_mode": "all",
        }
        if row.unit:
            cmp["unit_of_meas"] = row.unit
        out[key] = cmp
    return out


def device_config(
    state: PackState,
    rows: list[Description],
    topics: TargetTopics,
    *,
    version: str,
    expire_after: int,
    settings: BmsSettings | None = None,
    configuration_url: str | None = None,
    control: bool = False,
) -> dict[str, Any]:
    """The device discovery payload of one pack: device, origin and one component per row."""
    pack = state.pack
    is_bank = state.extras.get("bank") is True
    cmps = {
        row.key: _component(row, pack, topics, expire_after=expire_after)
        for row in rows
        if row.in_ha  # the rest are for flat topics and templates: unnamed in HA
    }
    if settings is not None:
        cmps |= setting_components(settings, topics)
    if control and can_set_soc(state):
        cmps[SET_SOC] = soc_number(pack, topics)
    # online is known even while the pack is not: it depends on the gateway only
    cmps["online"] = {
        "p": "binary_sensor",
        "uniq_id": unique_id(pack, "online"),
        "name": "Online",
        "dev_cla": "connectivity",
        "ent_cat": "diagnostic",
        "stat_t": topics.availability(pack),
        "pl_on": "online",
        "pl_off": "offline",
        "avty_t": topics.gateway_availability(),
    }
    return {
        "dev": {
            "ids": [object_id(pack)],
            "name": state.name,
            "via_device": gateway_id(topics.prefix),
            **({"mf": "bmsgate", "mdl": "Battery bank"} if is_bank else _device(state)),
            **({"cu": configuration_url} if configuration_url else {}),
        },
        "o": _origin(version, configuration_url),
        "qos": 1,
        "cmps": cmps,
    }

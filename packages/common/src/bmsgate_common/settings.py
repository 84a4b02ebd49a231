"""Configuration: one optional YAML file plus ``BMSGATE_`` variables, validated at start.

Environment variables override the file; nested keys use ``__`` (``BMSGATE_MQTT__HOST``). An
unknown key or a bad value stops the service with one line naming the key, before it connects.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from datetime import time as dt_time
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bmsgate_bms.polling import SLOW_EVERY
from bmsgate_bms.registry import info as protocol_info
from bmsgate_bms.registry import infos as protocol_infos

from .invalid import in_words
from .models import PackId, ProtocolName, SerialPort
from .timezones import ZoneName

log = logging.getLogger(__name__)


def _network(entry: str) -> str:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an address or network") from None
    return entry


def _origin(entry: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+", entry):
        raise ValueError(f"{entry!r} is not an origin (https://host[:port])")
    return entry


def _named_once(entries: list[Any], what: str) -> list[Any]:
    """``entries`` if no two share a name (checked at the list, so a form says it beside it)."""
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ValueError(f"two {what} share a name: {entry.name!r}")
        seen.add(entry.name)
    return entries


# checked one by one, so a bad entry of a list is named by its place (api.trusted_proxies.1)
NetworkText = Annotated[str, AfterValidator(_network)]
OriginText = Annotated[str, AfterValidator(_origin)]

CONFIG_ENV: str = "BMSGATE_CONFIG"  # path of the YAML file when --config is not given
INSTALL_ENV: str = "BMSGATE_INSTALL"  # how it was installed, set by the images (upgrade.py)
CONFIG_VERSION: int = 1  # the configuration file's format (config_migrate.py)


class ConfigError(Exception):
    """The configuration is unusable; the message is one line that names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    """The backbone broker."""

    host: str | None = Field(
        default=None, description="the broker's address; unset: bmsgate run starts its own"
    )
    port: int = Field(default=1883, ge=1, le=65535, description="the broker's TCP port")
    username: str | None = Field(default=None, description="when the broker asks for a login")
    password: SecretStr | None = Field(
        default=None, description="of the broker login; never shown or logged"
    )
    base_topic: str = Field(
        default="bmsgate",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="every bmsgate topic starts with it: letters, digits, _ and -, levels by /",
    )
    heartbeat: float = Field(
        default=30.0, gt=0, description="[s] how often each service tells the broker it is alive"
    )


class PackSettings(_Section):
    """One BMS on a bus: its own pack."""

    id: PackId
    name: str | None = Field(default=None, description="display name; the id when unset")
    address: int = Field(
        default=1,
        ge=0,
        le=247,
        description="board address on the bus, in the protocol's range (0: a JK-PB master, heard)",
    )
    invert_current: bool = Field(default=False, description="for a shunt wired the other way")
    current_scale: float = Field(
        default=1.0, gt=0.5, lt=2.0, description="current correction: I = I_bms x scale + offset"
    )
    current_offset: float = Field(
        default=0.0, ge=-50, le=50, description="[A] current correction (a shunt's zero error)"
    )
    own_soc: bool = Field(
        default=False,
        description="count bmsgate's own SOC from the corrected current (beside the BMS's)",
    )
    full_cell_voltage: float = Field(
        default=3.45,
        gt=2.0,
        lt=4.5,
        description="[V] own SOC: full when the highest cell is at "
        "or above this while the charge current is at or below full_current for full_time",
    )
    full_current: float | None = Field(
        default=None,
        ge=0,
        description="[A] own SOC: full once the charge current falls to this; "
        "unset: 2 % of capacity",
    )
    full_time: float = Field(
        default=300.0,
        ge=0,
        le=7200,
        description="[s] own SOC: how long the current must stay that low",
    )
    empty_cell_voltage: float | None = Field(
        default=None,
        gt=1.5,
        lt=4.0,
        description="[V] own SOC: 0 % at this lowest cell; unset: the cell undervoltage "
        "protection the BMS reports, else 2.8",
    )
    push_soc: bool = Field(
        default=False,
        description="write the own SOC to the BMS when it re-syncs (full/empty), where the "
        "protocol can set the SOC; needs control.enabled",
    )
    nominal_capacity: float | None = Field(default=None, gt=0, description="[Ah]")

    @property
    def display_name(self) -> str:
        """The name shown to people."""
        return self.name or self.id


class BusSettings(_Section):
    """One serial port owned by one reader, with the BMS on it."""

    port: SerialPort = Field(
        description="the serial port: /dev/serial/by-id/... (keeps its name across restarts), "
        "/dev/ttyUSB0, or a network serial server as socket://host:port or rfc2217://host:port"
    )
    # the page shows each protocol by its label (bmsgate_bms.registry), the file keeps the name
    protocol: ProtocolName = Field(
        json_schema_extra={"labels": {p.name: p.label for p in protocol_infos()}}
    )
    baudrate: int | None = Field(
        default=None, gt=0, title="Baud rate", description="[baud] the protocol's default if unset"
    )
    poll_interval: float = Field(
        default=5.0, ge=0, description="[s] between snapshots; 0 = back-to-back"
    )
    offline_after: int = Field(
        default=3,
        ge=1,
        title="Missed polls before offline",
        description="polls in a row without an answer before the pack shows offline",
    )
    slow_every: int = Field(
        default=SLOW_EVERY,
        ge=1,
        le=1000,
        title="Slow values every",
        description="read the values that change slowly (cells of a DALY classic, cycles, "
        "firmware...) every this many polls; 1 = everything at every poll. Each is still read "
        "at least once a minute, and at once when the fast values change",
    )
    timeout: float = Field(default=0.5, gt=0, description="[s] to wait for an answer")
    retries: int = Field(default=1, ge=0, description="retries of a failed request within a poll")
    variant: str | None = Field(
        default=None,
        max_length=20,
        description="only some boards need it: a DALY (new) is '81' for H/K/M/S and 100 Balance "
        "boards (the default) or 'd2'",
    )
    passthrough: SerialPort | None = Field(
        default=None,
        description="second serial port with the original gadget (DALY BT/WiFi dongle, display)",
    )
    sniff: bool = Field(
        default=False,
        title="Show raw frames",
        description="send every frame on this port to the Sniffer page (for troubleshooting)",
    )
    keep_awake: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="[s] send a harmless read this often between polls so a DALY that sleeps "
        "when idle stays awake; 0 = off",
    )
    listen: bool = Field(
        default=False,
        description="only listen: read a bus another master polls (JK-PB with a DIP-0 master), "
        "sending nothing; every address heard is a pack",
    )
    packs: list[PackSettings] = Field(
        default_factory=list, description="at least one, unless listening"
    )

    @property
    def baud(self) -> int:
        """The line speed in use."""
        return self.baudrate or protocol_info(self.protocol).baudrate

    @model_validator(mode="after")
    def _unique_packs(self) -> BusSettings:
        addresses = [p.address for p in self.packs]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two packs on one bus share an address")
        info = protocol_info(self.protocol)
        if self.listen and info.listen_addresses is None:
            raise ValueError(f"protocol {self.protocol} cannot be listened to (listen: true)")
        if not self.packs and not self.listen:
            raise ValueError("a bus needs at least one pack (or listen: true)")
        if self.variant is not None and self.variant not in info.variants:
            if not info.variants:
                raise ValueError(f"protocol {self.protocol} has no variants")
            known = ", ".join(info.variants)
            raise ValueError(f"variant of {self.protocol} is one of {known}, not {self.variant!r}")
        low, high = info.address_range(self.variant)
        if self.listen and info.listen_addresses is not None:
            low, high = info.listen_addresses
        for pack in self.packs:
            if not low <= pack.address <= high:
                raise ValueError(
                    f"pack {pack.id!r}: address {pack.address} is outside {low}..{high} "
                    f"for {self.protocol}"
                )
        return self

    def driver_options(self) -> dict[str, str]:
        """Protocol-specific keyword arguments for the driver."""
        return {"variant": self.variant} if self.variant else {}


COLOUR_PATTERN = r"^#[0-9a-fA-F]{6}$"  # #rrggbb: nothing else reaches the pages' CSS
LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


class ViewerSettings(_Section):
    """An account that may only read chosen packs (an end user's phone view, docs/api.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$", description="the login name")
    # the forms take a password and the API stores its hash (bmsgate_api.auth.hashed_passwords)
    password_hash: SecretStr = Field(
        title="Password",
        description="at least 8 characters; kept only as a hash, never shown",
    )
    packs: list[PackId] = Field(
        min_length=1,
        description="the packs and banks it may see",
        json_schema_extra={"choices": "packs_banks"},
    )

    @model_validator(mode="after")
    def _hash_format(self) -> ViewerSettings:
        if not re.fullmatch(
            r"scrypt\$\d+\$\d+\$\d+\$[\w=-]+\$[\w=-]+", self.password_hash.get_secret_value()
        ):
            raise ValueError(f"viewer {self.name!r}: password_hash is not a scrypt hash")
        return self


class ApiSettings(_Section):
    """The web UI and REST API (docs/api.md)."""

    host: str = Field(default="0.0.0.0", description="listen address; 0.0.0.0: every interface")
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port of the web UI")
    password_hash: SecretStr | None = Field(
        default=None,
        title="Password",
        description="the web UI's password, kept only as a hash, never shown; "
        "unset: the one in password_file, else the one set at the first visit",
    )
    password_file: Path | None = Field(
        default=None,
        description="a file holding the password or its hash (a Docker secret, for one)",
    )
    public_read: Literal["never", "local", "always"] = Field(
        default="local",
        description="reading without login: never, only from this machine (loopback), always",
        json_schema_extra={
            "labels": {
                "never": "Never (always log in)",
                "local": "Only from this machine",
                "always": "Always (anyone who reaches it)",
            }
        },
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 90, description="[h] a login lasts")
    login_attempts: int = Field(
        default=5,
        ge=1,
        description="failed logins from one device within login_window before it must wait",
    )
    login_window: float = Field(
        default=300.0, gt=0, description="[s] failed logins are counted over"
    )
    login_ceiling: int = Field(
        default=50,
        ge=1,
        description="failed logins from all devices together within login_window before "
        "every login must wait",
    )
    trusted_proxies: list[NetworkText] = Field(
        default_factory=list,
        description="reverse proxies in front of the web UI (an address, or a network such as "
        "10.0.0.0/24) that are believed about the visitor's address; none by default",
    )
    allowed_origins: list[OriginText] = Field(
        default_factory=list,
        description="other web addresses (https://host or https://host:port) whose pages may "
        "change things here, besides the web UI's own",
    )
    viewers: list[ViewerSettings] = Field(
        default_factory=list,
        description="read-only accounts: each logs in with its own name and password and sees "
        "only its packs and banks",
    )
    max_connections: int = Field(
        default=256,
        ge=16,
        le=100_000,
        description="browser connections open at once at most; beyond, a new one closes the "
        "oldest idle one",
    )
    header_timeout: float = Field(
        default=10.0, gt=0, le=300, description="[s] a browser may take to send a request"
    )
    command_timeout: float = Field(
        default=15.0, gt=0, le=120, description="[s] to wait for a command's result"
    )
    mdns: bool = Field(
        default=True,
        title="mDNS",
        description="announce the web UI on the local network, so it is found by its name",
    )
    mdns_name: str = Field(
        default="bmsgate",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="the web UI is found as http://<mdns_name>.local/",
    )
    title: str = Field(default="bmsgate", max_length=60, description="branding: page title")
    logo: Path | None = Field(
        default=None, description="branding: a .png, .jpg, .svg or .webp shown in the page header"
    )
    accent: str | None = Field(
        default=None, pattern=COLOUR_PATTERN, description="branding: accent colour, light theme"
    )
    accent_dark: str | None = Field(
        default=None, pattern=COLOUR_PATTERN, description="branding: accent colour, dark theme"
    )
    weather: bool = Field(
        default=False,
        description="fetch a forecast for notifier.latitude/longitude from weather_url "
        "(sends the coordinates there)",
    )
    weather_url: str = Field(
        default="https://api.open-meteo.com/v1/forecast",
        pattern=r"^https?://\S+$",
        description="an Open-Meteo compatible forecast API",
    )
    weather_refresh: float = Field(
        default=1800.0, ge=60, description="[s] between forecast fetches"
    )

    @field_validator("viewers")
    @classmethod
    def _unique_viewers(cls, viewers: list[ViewerSettings]) -> list[ViewerSettings]:
        return _named_once(viewers, "viewers")

    @model_validator(mode="after")
    def _hash_format(self) -> ApiSettings:
        secret = self.password_hash.get_secret_value() if self.password_hash else None
        if secret is not None and not re.fullmatch(
            r"scrypt\$\d+\$\d+\$\d+\$[\w=-]+\$[\w=-]+", secret
        ):
            raise ValueError(
                "api.password_hash is not a scrypt hash (python -m bmsgate_api hash-password)"
            )
        if self.logo is not None and self.logo.suffix.lower() not in LOGO_TYPES:
            raise ValueError(f"api.logo must be one of {', '.join(sorted(LOGO_TYPES))}")
        return self


class ModbusPushValue(_Section):
    """One value a push target gets: which quantity of which pack, into which register, how."""

    pack: PackId = Field(description="a pack or bank id")
    value: str = Field(description="a quantity of the register map, e.g. soc, pack_voltage, cell_3")
    address: int = Field(ge=0, le=65535, description="first register (0-based, as on the wire)")
    type: Literal["u16", "s16", "u32", "s32", "float32"] = "u16"
    scale: float = Field(default=1.0, description="register = value x scale, e.g. 100 for 10 mV")
    word_order: Literal["big", "little"] = Field(
        default="big", description="32-bit types: big = high word first (ABCD), little = CDAB"
    )


class ModbusPushTarget(_Section):
    """Another Modbus TCP server that bmsgate writes values into (function 16)."""

    host: str = Field(description="the server's address, e.g. an inverter's")
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255, description="the remote unit (device) id")
    interval: float = Field(default=0.0, ge=0, description="[s] between writes; 0 = every state")
    timeout: float = Field(default=1.0, gt=0, description="[s] per connect or write")
    values: list[ModbusPushValue] = Field(min_length=1, description="what it gets, at least one")


class ModbusDisplaySettings(_Section):
    """What the colour displays read from registers 53-57 (docs/modbus.md)."""

    dashboards: int | None = Field(
        default=None, ge=1, le=15, description="dashboards to roll through; the unit count if unset"
    )
    auto_rolling: bool = Field(default=True, description="roll through the dashboards")
    auto_brightness: bool = Field(
        default=False, description="dim after seconds_at_max, then seconds_at_avg"
    )
    brightness_max: int = Field(default=100, ge=0, le=255, description="0-255")
    brightness_avg: int = Field(default=50, ge=0, le=255, description="0-255")
    brightness_min: int = Field(default=10, ge=0, le=255, description="0-255")
    rolling_seconds: int = Field(default=10, ge=0, le=255, description="[s] per dashboard")
    seconds_at_max: int = Field(default=60, ge=0, le=4095, description="[s] before dimming to avg")
    seconds_at_avg: int = Field(default=300, ge=0, le=4095, description="[s] before dimming to min")


class ModbusSettings(_Section):
    """The Modbus TCP server (the dongle's register map) and the push client (docs/modbus.md)."""

    enabled: bool = Field(default=True, description="serve the register map")
    # Modbus TCP has no authentication: whoever reaches the port reads every register
    host: str = Field(
        default="127.0.0.1",
        description="listen address; 0.0.0.0 for an inverter on the LAN (docs/security.md)",
    )
    port: int = Field(default=502, ge=1, le=65535, description="Modbus TCP port (502 is standard)")
    units: dict[Annotated[int, Field(ge=0, le=255)], PackId] = Field(
        default_factory=dict,
        description="which pack or bank answers at which unit id; unit 0 answers every "
        "unlisted id. Empty: the packs in their order from unit 1, then the banks",
        json_schema_extra={"key_title": "Unit id", "value_title": "Pack or bank"},
    )
    float_word_order: Literal["little", "big"] = Field(
        default="little", description="little = low word first (CDAB, the dongle's); big = ABCD"
    )
    temperature_unit: Literal["C", "F"] = Field(
        default="C", description="of the temperature registers: °C or °F"
    )
    # below pymodbus's 3 s client timeout, so a client left at its defaults gets the exception
    # instead of timing out and repeating the write
    command_timeout: float = Field(
        default=2.0, gt=0, description="[s] a MOS write waits this long for the BMS to confirm it"
    )
    write_clients: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="client addresses or networks (192.168.1.20, 10.0.0.0/24) whose writes are "
        "accepted once control is enabled; empty: nobody writes",
    )
    display: ModbusDisplaySettings = ModbusDisplaySettings()
    push: list[ModbusPushTarget] = Field(
        default_factory=list, description="other Modbus TCP servers bmsgate writes values into"
    )


class ControlSettings(_Section):
    """Changing a BMS (MOS switches, SOC): off until enabled."""

    enabled: bool = Field(
        default=False,
        description="let the web UI, MQTT and Modbus switch MOS and set the SOC (with a password)",
    )


TARGET_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
TOPIC_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"  # no wildcards, no empty levels
DongleField = Literal[
    "cells",
    "soc",
    "power",
    "voltage",
    "current",
    "delta",
    "average",
    "temperature",
    "alarms",
    "mos",
]
DONGLE_FIELDS: tuple[DongleField, ...] = get_args(DongleField)


class DongleSettings(_Section):
    """The SmartBMS dongle's packets (main, status, daily) on a target (docs/publisher.md)."""

    enabled: bool = True
    style: Literal["type1", "type2"] = Field(
        default="type2", description="type2: cells under 'bat'; type1: flat 'b0'..'bN' keys"
    )
    fields: list[DongleField] = Field(
        default_factory=lambda: list(DONGLE_FIELDS), description="values in the main packet"
    )
    main_topic: str = Field(default="{prefix}/{pack}", description="placeholders {prefix} {pack}")
    status_topic: str = "{prefix}/{pack}/status"
    daily_topic: str = "{prefix}/{pack}/daily"
    mos_topic: str = Field(
        default="{prefix}/{pack}/mos/set", description='MOS commands, e.g. {"CMS":0}'
    )


class HomeAssistantSettings(_Section):
    """Home Assistant MQTT discovery on a target."""

    enabled: bool = Field(default=False, description="announce every pack to Home Assistant")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=TOPIC_PATTERN, description="Home Assistant's default"
    )
    birth_delay: float = Field(
        default=3.0,
        ge=0,
        description="[s] wait after Home Assistant starts before announcing the packs again",
    )
    configuration_url: str | None = Field(
        default=None,
        pattern=r"^(https?|homeassistant)://[^/\s]+(/\S*)?$",
        description="the devices' link to the web UI in HA (and the origin's url); unset: the "
        "API's address. homeassistant://hassio/ingress/<slug> opens an add-on's ingress panel",
    )


class OpenHaspSettings(_Section):
    """Push one pack's values into an openHASP plate's objects."""

    plate: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the plate's MQTT node name")
    pack: PackId
    objects: dict[str, str] = Field(
        description="each of the plate's objects (p1b2.val) and what it shows, a template over "
        "the pack's values such as {soc:.0f}",
        json_schema_extra={"key_title": "Object", "value_title": "Shows"},
    )


class TargetSettings(_Section):
    """One MQTT broker the publisher writes to (HiveMQ Cloud, the HA Mosquitto, ...)."""

    name: str = Field(pattern=TARGET_NAME_PATTERN, description="names the target in logs")
    host: str | None = Field(default=None, description="the backbone broker when unset")
    port: int | None = Field(default=None, ge=1, le=65535, description="8883 with TLS, else 1883")
    tls: bool = Field(default=False, title="TLS", description="encrypted (HiveMQ Cloud: on)")
    ca_file: Path | None = Field(
        default=None, title="CA file", description="CA bundle; the system's when unset"
    )
    username: str | None = Field(default=None, description="when the broker asks for a login")
    password: SecretStr | None = Field(
        default=None, description="of the broker login; never shown or logged"
    )
    client_id: str | None = Field(
        default=None, description="how bmsgate introduces itself; unset: bmsgate-<name>-<number>"
    )
    topic_prefix: str = Field(
        default="bmsgate", pattern=TOPIC_PATTERN, description="{prefix} of the topics, e.g. solar"
    )
    interval: float = Field(default=5.0, ge=1, description="[s] between packets per pack")
    qos: Literal[0, 1, 2] = Field(default=0, description="of value packets")
    retain: bool = Field(default=True, description="keep value packets on the broker")
    packs: list[PackId] | None = Field(
        default=None,
        description="the packs and banks it gets; all when none is ticked",
        json_schema_extra={"choices": "packs_banks"},
    )
    dongle: DongleSettings = DongleSettings()
    flat: bool = Field(default=False, description="one topic per value: <prefix>/<pack>/soc")
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    openhasp: list[OpenHaspSettings] = Field(
        default_factory=list, title="openHASP", description="plates that show a pack's values"
    )


class PublisherSettings(_Section):
    """Where pack data goes besides the backbone."""

    targets: list[TargetSettings] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetSettings]) -> list[TargetSettings]:
        return _named_once(targets, "targets")


class BankSettings(_Section):
    """Packs in parallel shown as one more pack (capacity-weighted SOC, summed current)."""

    id: PackId
    name: str | None = Field(default=None, description="display name; the id when unset")
    # the page offers the configured packs to tick
    packs: list[PackId] = Field(
        min_length=2,
        title="Member packs",
        description="the packs wired in parallel (at least two)",
        json_schema_extra={"choices": "packs"},
    )


class InfluxSettings(_Section):
    """Every pack state as points for Grafana, over the InfluxDB v2 write API (docs/history.md)."""

    enabled: bool = Field(default=False, description="write every state to InfluxDB")
    url: str = Field(
        default="http://127.0.0.1:8086",
        title="URL",
        pattern=r"^https?://\S+$",
        description="address of the InfluxDB v2 server, e.g. http://192.168.1.10:8086",
    )
    token: SecretStr | None = Field(default=None, description="API token; never logged")
    org: str = Field(default="bmsgate", description="the organisation of the bucket")
    bucket: str = Field(default="bmsgate", description="where the points go")
    measurement: str = Field(default="bms", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    batch_size: int = Field(default=500, ge=1, le=50_000, description="points per write")
    flush_interval: float = Field(default=5.0, gt=0, description="[s] longest a point waits")
    timeout: float = Field(default=10.0, gt=0, description="[s] per write request")
    buffer_points: int = Field(
        default=1_000_000,
        ge=1,
        description="points kept on disk at most while the server cannot be reached",
    )


class ArchiveSettings(_Section):
    """The built-in SQLite archive under data_dir (docs/history.md: retention, fsync policy)."""

    enabled: bool = Field(default=True, description="keep the built-in archive")
    raw_days: float = Field(default=30, gt=0, description="[d] full resolution kept")
    minute_days: float = Field(default=190, gt=0, description="[d] 1-minute min/avg/max kept")
    quarter_days: float = Field(default=1830, gt=0, description="[d] 15-minute min/avg/max kept")
    # an SD card's wear against what a power cut loses (docs/history.md, "Storage writes")
    commit_interval: float = Field(
        default=300.0, gt=0, le=3600, description="[s] most a power cut can lose"
    )
    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="full: each save waits until it is on the disk (safest); normal: fewer writes",
    )


class HealthSettings(_Section):
    """Thresholds of the battery-health rules (docs/history.md)."""

    enabled: bool = True
    load_current: float = Field(
        default=0.1,
        gt=0,
        description="[C] current, as a share of the capacity, that counts as load (either way)",
    )
    weak_mv: float = Field(
        default=30.0,
        gt=0,
        title="Weak cell: lead",
        description="[mV] how far a cell moves ahead of the others on charge or under load",
    )
    weak_minutes: float = Field(
        default=5.0,
        gt=0,
        title="Weak cell: minutes a day",
        description="[min] a day counts when a cell leads so long on charge and under load",
    )
    evidence_days: int = Field(
        default=2,
        ge=1,
        title="Days to report",
        description="days of the last 7 that must count before a weak or out-of-balance cell "
        "is reported",
    )
    band_mv: float = Field(
        default=30.0,
        gt=0,
        title="Out of balance: distance",
        description="[mV] a cell this far from the middle cell while balancing",
    )
    band_minutes: float = Field(
        default=60.0,
        gt=0,
        title="Out of balance: minutes a day",
        description="[min] a day counts when a cell is so this long",
    )
    growth_days: int = Field(
        default=4,
        ge=3,
        title="Growing difference: days",
        description="days in a row the difference between the cells must grow",
    )
    growth_mv: float = Field(
        default=10.0,
        gt=0,
        title="Growing difference: amount",
        description="[mV] how much it must grow over those days",
    )
    full_cell: float = Field(
        default=3.45, description="[V] capacity: a cell at or above this, the pack is full"
    )
    empty_cell: float = Field(
        default=2.90, description="[V] capacity: a cell at or below this, the pack is empty"
    )
    fade_percent: float = Field(
        default=3.0,
        gt=0,
        title="Capacity fade",
        description="[%] capacity lost before it is reported",
    )


class HistorySettings(_Section):
    """The history service: archive, InfluxDB, daily statistics, battery health."""

    archive: ArchiveSettings = ArchiveSettings()
    influx: InfluxSettings = InfluxSettings()
    health: HealthSettings = HealthSettings()
    max_gap: float = Field(
        default=120.0, gt=0, description="[s] samples further apart are a gap, never joined"
    )


class TunnelSettings(_Section):
    """The TCP tunnel for the vendors' PC software: closed until opened, needs control.enabled."""

    host: str = Field(
        default="0.0.0.0",
        description="the address it listens on while open; 0.0.0.0: every interface",
    )
    port: int = Field(
        default=6790, ge=1, le=65535, description="TCP port of the first bus; bus n uses port + n"
    )
    minutes: float = Field(default=15.0, gt=0, le=1440, description="[min] window of an open")
    idle_timeout: float = Field(
        default=120.0, gt=0, le=86400, description="[s] without traffic that closes the tunnel"
    )
    allow: list[NetworkText] = Field(
        default_factory=list,
        description="computers that may connect: an address, or a network such as "
        "192.168.1.0/24; any when the list is empty",
    )


NotifyEvent = Literal[
    "alarm",
    "alarm_cleared",
    "offline",
    "online",
    "soc_full",
    "soc_low",
    "cell_delta",
    "cell_delta_ok",
    "health",
    "service_down",
    "service_up",
    "report",
]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
NotifyPriority = Literal["low", "normal", "high", "emergency"]
ReportTime = Literal["sunrise", "sunset"]
REPORT_TIMES: tuple[ReportTime, ...] = get_args(ReportTime)


class NotifyTargetSettings(_Section):
    """One place notifications go: any Apprise URL (docs/notifier.md)."""

    name: str = Field(pattern=TARGET_NAME_PATTERN, description="names the target in logs")
    url: SecretStr = Field(
        title="URL",
        description="where to send, as an Apprise address (pover://USER_KEY@APP_TOKEN for "
        "Pushover, for one); never shown or logged",
    )
    events: list[NotifyEvent] | None = Field(
        default=None, description="which events it gets; all when none is ticked"
    )
    min_priority: NotifyPriority = Field(default="low", description="quieter events are skipped")
    packs: list[PackId] | None = Field(
        default=None,
        description="the packs and banks it hears about; all when none is ticked",
        json_schema_extra={"choices": "packs_banks"},
    )


class QuietHoursSettings(_Section):
    """Local hours when only urgent events go out; the rest wait and come as one digest after."""

    start: dt_time = Field(description="local time, e.g. '22:00'")
    end: dt_time = Field(description="local time, e.g. '07:00'")
    let_through: NotifyPriority = Field(default="emergency", description="this and above still go")


class NotifierSettings(_Section):
    """Alarms, failures and daily reports to phones through Apprise (docs/notifier.md)."""

    targets: list[NotifyTargetSettings] = Field(
        default_factory=list, description="where notifications go (Apprise URLs)"
    )
    full_soc: float = Field(default=100.0, gt=0, le=100, description="[%] 'full' when reached")
    low_soc: float | None = Field(default=20.0, ge=0, lt=100, description="[%] empty: no alert")
    soc_hysteresis: float = Field(
        default=5.0,
        ge=0,
        description="[%] how far the SOC must move back before the same alert can come again",
    )
    cell_delta: float | None = Field(default=0.1, gt=0, description="[V] alert above; empty: off")
    cell_delta_clear: float = Field(
        default=0.05, ge=0, description="[V] 'back in line' at or below"
    )
    service_grace: float = Field(
        default=60.0, ge=0, description="[s] a service must stay offline before it is reported"
    )
    repeat_after: float = Field(
        default=3600.0, ge=0, description="[s] before the same event about the same thing repeats"
    )
    gather: float = Field(default=2.0, ge=0, description="[s] events this close go out as one")
    burst: int = Field(default=4, ge=1, description="messages per burst_window before a digest")
    burst_window: float = Field(default=600.0, gt=0, description="[s]")
    quiet_hours: QuietHoursSettings | None = None
    queue_size: int = Field(
        default=200, ge=1, description="events kept per target while it is down"
    )
    retry_min: float = Field(default=10.0, gt=0, description="[s] first retry of a failed send")
    retry_max: float = Field(default=900.0, gt=0, description="[s] longest wait between retries")
    latitude: float | None = Field(default=None, ge=-90, le=90, description="for daily reports")
    longitude: float | None = Field(default=None, ge=-180, le=180, description="for daily reports")
    reports: list[ReportTime] = Field(
        default_factory=lambda: list(REPORT_TIMES),
        description="daily reports at sunrise and/or sunset (needs latitude and longitude)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> NotifierSettings:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("set both latitude and longitude, or neither")
        if self.cell_delta is not None and self.cell_delta_clear >= self.cell_delta:
            raise ValueError("cell_delta_clear must be below cell_delta")
        if self.retry_max < self.retry_min:
            raise ValueError("retry_max must not be below retry_min")
        return self

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[NotifyTargetSettings]) -> list[NotifyTargetSettings]:
        return _named_once(targets, "notifier targets")


# keys that were set per service and are now one setting for all of them
MOVED_KEYS: dict[tuple[str, str], str] = {
    ("history", "timezone"): "timezone",
    ("notifier", "timezone"): "timezone",
    ("api", "stale_after"): "stale_after",
    ("modbus", "stale_after"): "stale_after",
    ("publisher", "stale_after"): "stale_after",
}


class Settings(_Section):
    """Everything bmsgate reads at start (see load_settings for where it comes from)."""

    mqtt: MqttSettings = MqttSettings()
    buses: list[BusSettings] = Field(default_factory=list)
    api: ApiSettings = ApiSettings()
    modbus: ModbusSettings = ModbusSettings()
    control: ControlSettings = ControlSettings()
    publisher: PublisherSettings = PublisherSettings()
    banks: list[BankSettings] = Field(default_factory=list)
    history: HistorySettings = HistorySettings()
    notifier: NotifierSettings = NotifierSettings()
    tunnel: TunnelSettings = TunnelSettings()
    timezone: ZoneName | None = Field(
        default=None,
        description="the site's time zone, e.g. Europe/Berlin; unset: found from the "
        "notifications' latitude and longitude, else the machine's",
    )
    stale_after: float = Field(
        default=60.0,
        gt=0,
        title="Offline when older than",
        description="[s] a pack whose latest reading is older shows offline on every page and "
        "output",
    )
    version: int | None = Field(
        default=None,
        ge=0,
        le=CONFIG_VERSION,
        description="the file's format; older ones are migrated (bmsgate config migrate)",
    )
    data_dir: Path = Field(default=Path("data"), description="where services keep their files")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="of every service; DEBUG is very verbose"
    )

    def pack_ids(self) -> list[str]:
        """Every pack id in the configuration's order (bus by bus), then every bank id."""
        return [p.id for bus in self.buses for p in bus.packs] + [b.id for b in self.banks]

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        for (section, key), new in MOVED_KEYS.items():
            part = data.get(section) if isinstance(data, dict) else None
            if isinstance(part, dict) and key in part:
                raise ValueError(f"'{section}.{key}' is now the top-level key '{new}'")
        return data

    @model_validator(mode="after")
    def _unique_pack_ids(self) -> Settings:
        seen: set[str] = set()
        for b, bus in enumerate(self.buses):
            for p, pack in enumerate(bus.packs):
                if pack.id in seen:
                    _refuse(("buses", b, "packs", p, "id"), f"pack id {pack.id!r} is used twice")
                seen.add(pack.id)
        for i, bank in enumerate(self.banks):
            if bank.id in seen:
                _refuse(("banks", i, "id"), f"bank id {bank.id!r} is already a pack or bank id")
            unknown = sorted(set(bank.packs) - {p.id for b in self.buses for p in b.packs})
            if unknown:
                listed = ", ".join(unknown)
                _refuse(("banks", i, "packs"), f"bank {bank.id!r} names unknown packs: {listed}")
            seen.add(bank.id)
        for i, viewer in enumerate(self.api.viewers):
            unknown = sorted(set(viewer.packs) - seen)
            if unknown and seen:
                listed = ", ".join(unknown)
                _refuse(
                    ("api", "viewers", i, "packs"),
                    f"viewer {viewer.name!r} names unknown packs: {listed}",
                )
        return self


def _refuse(where: tuple[str | int, ...], why: str) -> NoReturn:
    """Refuse the file for a rule over several sections, named at the entry it is about.

    A ValidationError raised in a validator keeps its own location (pydantic-core takes over
    its errors), so a form shows the message beside that entry, not above the whole file.
    """
    error = PydanticCustomError("value_error", "{why}", {"why": why})
    raise ValidationError.from_exception_data(
        "Settings", [InitErrorDetails(type=error, loc=where, input=None)]
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror}") from err
    return parse_yaml(text, f"config file {path}")


YAML_DEPTH = 64  # levels of nesting a configuration file may have (it needs about 6)
YAML_VALUES = 100_000  # values a file may hold once its aliases are expanded


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and aliases expanding to a huge tree.

    A few hundred bytes of aliases referring to aliases ("billion laughs") expand to billions
    of values in whatever walks the tree later; 60,000 nested brackets overflow the composer.
    Both are refused while composing, before anything is built.
    """

    source = "YAML"
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ConfigError(
                    f"{self.source} line {line}: nested more than {YAML_DEPTH} levels deep"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:  # values under n with aliases expanded, each node sized once
            if sizes.get(id(n)) == -1:
                raise ConfigError(f"{self.source}: an alias refers to a value it is inside")
            if id(n) not in sizes:
                sizes[id(n)] = -1  # being sized
                if isinstance(n, yaml.MappingNode):
                    kids = [x for pair in n.value for x in pair]
                else:
                    kids = n.value if isinstance(n, yaml.SequenceNode) else []
                sizes[id(n)] = min(1 + sum(size(k) for k in kids), YAML_VALUES + 1)
            return sizes[id(n)]

        if node is not None and size(node) > YAML_VALUES:
            raise ConfigError(
                f"{self.source}: its aliases expand to more than {YAML_VALUES:,} values"
            )
        return node


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """YAML configuration text as raw data; ConfigError in one line naming ``source``.

    Nesting and alias expansion are bounded (_BoundedLoader).
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here already
        loader.source = source
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: not valid YAML") from err
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def explain(err: ValidationError) -> str:
    """One line naming the first bad key and what is wrong with it."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        text = f"unknown key '{key}'"
    elif first["type"] == "missing":
        text = f"missing key '{key}'"
    else:
        value = first.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
        more = f"; {err.error_count() - 1} more error(s)" if err.error_count() > 1 else ""
        text = f"bad value for '{key}': {in_words(first)}{shown}{more}"
    return one_line(text)


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped: a key or value may hold one, a message may not."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def load_settings(
    path: str | Path | None = None, *, missing_ok: bool = False, **overrides: Any
) -> Settings:
    """Read the YAML file (``path`` or $BMSGATE_CONFIG, optional), the environment and overrides.

    ``missing_ok``: a file that does not exist yet reads as empty (`bmsgate run`'s first start).
    Raises ConfigError with a one-line message; never a traceback for a user's mistake.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    if path and missing_ok and not Path(path).exists():
        path = None
    from_file = _migrated(_read_yaml(Path(path)), path) if path else {}
    try:
        # explicit overrides beat the environment, which beats the file
        return Settings.model_validate(_merge(_merge(from_file, _env_values()), overrides))
    except ValidationError as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config error{where}: {explain(err)}") from None


def _migrated(raw: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """An older file's data in the current format, each change logged in one line."""
    from .config_migrate import migrate_config

    data, changes = migrate_config(raw)
    for change in changes:
        log.warning("config %s: %s (bmsgate config migrate writes it to the file)", path, change)
    return data


def _env_values() -> dict[str, Any]:
    """BMSGATE_* variables as a nested dict (``__`` separates levels; JSON lists and maps allowed).

    An unknown name is an unknown key, reported like one in the file.
    """
    out: dict[str, Any] = {}
    for name, raw in sorted(os.environ.items()):
        if not name.startswith("BMSGATE_") or name in (CONFIG_ENV, INSTALL_ENV):
            continue
        keys = name.removeprefix("BMSGATE_").lower().split("__")
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = yaml.safe_load(raw)  # lists and mappings as JSON
            except yaml.YAMLError:
                raise ConfigError(f"environment variable {name}: not valid JSON") from None
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"environment variable {name}: '{key}' is also set as a value of its own"
                )
        if isinstance(node.get(keys[-1]), dict):
            raise ConfigError(f"environment variable {name}: '{keys[-1]}' is a section")
        node[keys[-1]] = value
    return out

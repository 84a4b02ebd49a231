"""Configuration: one optional YAML file plus ``BMSGATE_`` variables, validated at start.

Environment variables override the file; nested keys use ``__`` (``BMSGATE_MQTT__HOST``). An
unknown key or a bad value stops the service with one line naming the key, before it connects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .models import PackId, ProtocolName

CONFIG_ENV: str = "BMSGATE_CONFIG"  # path of the YAML file when --config is not given

# default line speed of each protocol [baud]
DEFAULT_BAUD: dict[str, int] = {
    "daly_classic": 9600,
    "daly_new": 9600,
    "jk_uart": 115200,
    "jk_pb": 115200,
}


class ConfigError(Exception):
    """The configuration is unusable; the message is one line that names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    """The backbone broker."""

    host: str | None = Field(
        default=None, description="broker host; `bmsgate run` starts a private one when unset"
    )
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    base_topic: str = Field(default="bmsgate", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    heartbeat: float = Field(
        default=30.0, gt=0, description="[s] how often services republish their retained status"
    )


class PackSettings(_Section):
    """One BMS on a bus: its own pack."""

    id: PackId
    name: str | None = Field(default=None, description="display name; the id when unset")
    address: int = Field(default=1, ge=1, le=247, description="board address on the bus")
    invert_current: bool = Field(default=False, description="for a shunt wired the other way")
    nominal_capacity: float | None = Field(default=None, gt=0, description="[Ah]")

    @property
    def display_name(self) -> str:
        """The name shown to people."""
        return self.name or self.id


class BusSettings(_Section):
    """One serial port owned by one reader, with the BMS on it."""

    port: str = Field(description="/dev/serial/by-id/... (stable), /dev/ttyUSB0, or socket://h:p")
    protocol: ProtocolName
    baudrate: int | None = Field(default=None, gt=0, description="the protocol's default if unset")
    poll_interval: float = Field(
        default=5.0, ge=0, description="[s] between snapshots; 0 = back-to-back"
    )
    offline_after: int = Field(default=3, ge=1, description="missed polls before a pack is offline")
    timeout: float = Field(default=0.5, gt=0, description="[s] to wait for an answer")
    retries: int = Field(default=1, ge=0, description="retries of a failed request within a poll")
    packs: list[PackSettings] = Field(min_length=1)

    @property
    def baud(self) -> int:
        """The line speed in use."""
        return self.baudrate or DEFAULT_BAUD[self.protocol]

    @model_validator(mode="after")
    def _unique_packs(self) -> BusSettings:
        addresses = [p.address for p in self.packs]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two packs on one bus share an address")
        return self


class ApiSettings(_Section):
    """The web UI and REST API."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    stale_after: float = Field(
        default=60.0, gt=0, description="[s] a pack whose last state is older counts as offline"
    )


class ModbusSettings(_Section):
    """The Modbus TCP server (the dongle's register map)."""

    host: str = "0.0.0.0"
    port: int = Field(default=502, ge=1, le=65535)


class ControlSettings(_Section):
    """Changing a BMS (MOS switches, SOC): off until enabled."""

    enabled: bool = Field(default=False, description="accept commands on <base>/bms/<pack>/set")


class Settings(_Section):
    """Everything bmsgate reads at start (see load_settings for where it comes from)."""

    mqtt: MqttSettings = MqttSettings()
    buses: list[BusSettings] = Field(default_factory=list)
    api: ApiSettings = ApiSettings()
    modbus: ModbusSettings = ModbusSettings()
    control: ControlSettings = ControlSettings()
    data_dir: Path = Field(default=Path("data"), description="where services keep their files")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _unique_pack_ids(self) -> Settings:
        seen: set[str] = set()
        for bus in self.buses:
            for pack in bus.packs:
                if pack.id in seen:
                    raise ValueError(f"pack id {pack.id!r} is used twice")
                seen.add(pack.id)
        return self


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: not valid YAML") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
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
        return f"unknown key '{key}'"
    if first["type"] == "missing":
        return f"missing key '{key}'"
    value = first.get("input")
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
    more = f"; {err.error_count() - 1} more error(s)" if err.error_count() > 1 else ""
    return f"bad value for '{key}': {first['msg']}{shown}{more}"


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (``path`` or $BMSGATE_CONFIG, optional), the environment and overrides.

    Raises ConfigError with a one-line message; never a traceback for a user's mistake.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    from_file = _read_yaml(Path(path)) if path else {}
    try:
        # explicit overrides beat the environment, which beats the file
        return Settings.model_validate(_merge(_merge(from_file, _env_values()), overrides))
    except ValidationError as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config error{where}: {explain(err)}") from None


def _env_values() -> dict[str, Any]:
    """BMSGATE_* variables as a nested dict (``__`` separates levels; JSON lists and maps allowed).

    An unknown name is an unknown key, reported like one in the file.
    """
    out: dict[str, Any] = {}
    for name, raw in os.environ.items():
        if not name.startswith("BMSGATE_") or name == CONFIG_ENV:
            continue
        keys = name.removeprefix("BMSGATE_").lower().split("__")
        value: Any = raw
        if raw[:1] in "[{":
            value = yaml.safe_load(raw)  # lists and mappings as JSON
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out

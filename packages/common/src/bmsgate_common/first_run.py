"""The first-run answers and the configuration they make: one place for both setup wizards.

``bmsgate setup`` (a terminal) and the web UI's setup page ask the same questions; both fill a
SetupAnswers and call build_config, whose result is validated with the services' Settings model
before it is written (bmsgate_common.config_file.save).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .models import ProtocolName, SerialPort


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FoundPack(_Answer):
    """One BMS the scan found, with the name its owner gave it."""

    protocol: ProtocolName
    address: int = Field(ge=0, le=247)
    variant: str | None = Field(default=None, max_length=20)
    name: str = Field(min_length=1, max_length=60)


class BusAnswer(_Answer):
    """One serial port and the BMS found on it (one protocol per port)."""

    port: SerialPort = Field(min_length=1, max_length=300)
    packs: list[FoundPack] = Field(min_length=1)


class BankAnswer(_Answer):
    """Packs in parallel shown together, by their names."""

    name: str = Field(min_length=1, max_length=60)
    packs: list[str] = Field(min_length=2)


class SetupAnswers(_Answer):
    """Everything a setup wizard asks."""

    buses: list[BusAnswer] = Field(min_length=1)
    banks: list[BankAnswer] = Field(default_factory=list)
    broker: str | None = Field(default=None, description="host[:port]; none: bmsgate's own")
    broker_username: str | None = None
    broker_password: str | None = None
    home_assistant: bool = False
    modbus: bool = Field(
        default=True,
        description="serve the Modbus TCP map to the LAN (modbus.host 0.0.0.0): read-only, and "
        "readable by anyone on the LAN, Modbus has no password",
    )
    influx_url: str | None = None
    influx_token: str | None = None
    notify_urls: list[str] = Field(default_factory=list, description="Apprise URLs")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: str | None = None
    password_hash: str | None = Field(default=None, description="scrypt hash for the web UI")

    @model_validator(mode="after")
    def _names(self) -> SetupAnswers:
        names = [p.name for b in self.buses for p in b.packs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two packs are named {twice[0]!r}; give each its own name")
        for bank in self.banks:
            unknown = [n for n in bank.packs if n not in names]
            if unknown:
                raise ValueError(f"bank {bank.name!r}: no pack named {unknown[0]!r}")
        return self


def pack_id(name: str, taken: set[str]) -> str:
    """An id from a display name: lowercase, digits, - and _; unique among ``taken``."""
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    base = "-".join(words)[:28] or "pack"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _host_port(text: str) -> dict[str, Any]:
    host, _, port = text.strip().partition(":")
    return {"host": host, **({"port": int(port)} if port.isdigit() else {})}


def build_config(a: SetupAnswers) -> dict[str, Any]:
    """The configuration file's data for these answers (the caller validates and writes it)."""
    taken: set[str] = set()
    ids: dict[str, str] = {}
    buses = []
    for bus in a.buses:
        packs = []
        for pack in bus.packs:
            ids[pack.name] = pack_id(pack.name, taken)
            packs.append({"id": ids[pack.name], "name": pack.name, "address": pack.address})
        entry: dict[str, Any] = {"port": bus.port, "protocol": bus.packs[0].protocol}
        if bus.packs[0].variant:
            entry["variant"] = bus.packs[0].variant
        buses.append(entry | {"packs": packs})
    cfg: dict[str, Any] = {"buses": buses}
    if a.broker:
        cfg["mqtt"] = _host_port(a.broker)
        if a.broker_username:
            cfg["mqtt"] |= {"username": a.broker_username, "password": a.broker_password or ""}
    if a.banks:
        cfg["banks"] = [
            {"id": pack_id(b.name, taken), "name": b.name, "packs": [ids[n] for n in b.packs]}
            for b in a.banks
        ]
    if a.home_assistant:
        cfg["publisher"] = {
            "targets": [{"name": "homeassistant", "homeassistant": {"enabled": True}}]
        }
    # asked as "for the LAN": the server's own default is loopback (docs/security.md)
    cfg["modbus"] = {"enabled": True, "host": "0.0.0.0"} if a.modbus else {"enabled": False}
    if a.influx_url:
        influx: dict[str, Any] = {"enabled": True, "url": a.influx_url}
        if a.influx_token:
            influx["token"] = a.influx_token
        cfg["history"] = {"influx": influx}
    notifier: dict[str, Any] = {}
    if a.notify_urls:
        names = ["phone"] + [f"target-{i}" for i in range(2, len(a.notify_urls) + 1)]
        notifier["targets"] = [
            {"name": n, "url": u} for n, u in zip(names, a.notify_urls, strict=True)
        ]
    if a.latitude is not None and a.longitude is not None:
        notifier |= {"latitude": a.latitude, "longitude": a.longitude}
    if notifier:
        cfg["notifier"] = notifier
    if a.timezone:
        cfg["timezone"] = a.timezone
    if a.password_hash:
        cfg["api"] = {"password_hash": a.password_hash}
    return cfg

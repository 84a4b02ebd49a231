"""``bmsgate setup``: the first-run wizard in a terminal, for headless machines.

It asks for a port, finds the BMS on it (``bmsgate scan``), names the packs, groups them into a
bank, chooses the outputs, sets the web password, then writes a configuration that passed the
services' own validation and shows it (secrets masked). Every question has a default, and
``--yes`` takes the defaults, so the same command provisions fifty sites from a script.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bmsgate_common.config_file import config_path, validate, write_private
from bmsgate_common.config_view import MASK, plain

from .ports import list_serial_ports
from .scan import DEFAULT_TIMEOUT, Found, plan_probes, run_scan

Ask = Callable[[str, str], str]  # (question, default) -> answer


@dataclass
class Answers:
    """Everything the wizard asked, as plain values: ``build_config`` turns it into settings."""

    port: str
    found: list[dict[str, Any]]  # one per BMS: protocol, address, variant, cell_count
    names: list[str]  # display names, one per BMS
    bank: bool = False
    broker: str | None = None  # host[:port] of an existing MQTT broker; None = private broker
    home_assistant: bool = False
    modbus: bool = True
    influx_url: str | None = None
    notify_url: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    password_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pack_id(name: str, taken: set[str]) -> str:
    """A pack id from a display name: lowercase, digits, - and _; unique."""
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    base = "-".join(words)[:28] or "pack"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def build_config(a: Answers) -> dict[str, Any]:
    """The configuration file's data for these answers (validated by the caller)."""
    protocol = a.found[0]["protocol"]
    taken: set[str] = set()
    packs = [
        {"id": pack_id(name, taken), "name": name, "address": bms["address"]}
        for name, bms in zip(a.names, a.found, strict=True)
    ]
    bus: dict[str, Any] = {"port": a.port, "protocol": protocol, "packs": packs}
    if a.found[0].get("variant") and protocol == "daly_new":
        bus["variant"] = a.found[0]["variant"]
    cfg: dict[str, Any] = {"buses": [bus]}
    if a.broker:
        host, _, port = a.broker.partition(":")
        cfg["mqtt"] = {"host": host, **({"port": int(port)} if port else {})}
    if a.bank and len(packs) > 1:
        cfg["banks"] = [{"id": "bank", "name": "Bank", "packs": [p["id"] for p in packs]}]
    if a.home_assistant:
        cfg["publisher"] = {
            "targets": [{"name": "homeassistant", "homeassistant": {"enabled": True}}]
        }
    cfg["modbus"] = {"enabled": a.modbus}
    if a.influx_url:
        cfg["history"] = {"influx": {"enabled": True, "url": a.influx_url}}
    notifier: dict[str, Any] = {}
    if a.notify_url:
        notifier["targets"] = [{"name": "phone", "url": a.notify_url}]
    if a.latitude is not None and a.longitude is not None:
        notifier |= {"latitude": a.latitude, "longitude": a.longitude}
    if notifier:
        cfg["notifier"] = notifier
    if a.password_hash:
        cfg["api"] = {"password_hash": a.password_hash}
    return cfg | a.extra


def time_zone(latitude: float, longitude: float) -> str:
    """The time zone at a place, found offline."""
    import tzfpy

    return str(tzfpy.get_tz(longitude, latitude))  # tzfpy takes longitude first


def scan_port(port: str, timeout: float = DEFAULT_TIMEOUT) -> list[Found]:
    """Every BMS that answers on ``port``."""
    return asyncio.run(run_scan(port, plan_probes(), timeout)).found


def interview(
    ask: Ask,
    secret: Callable[[str], str],
    out: Any,
    port: str | None,
    scan_timeout: float = DEFAULT_TIMEOUT,
) -> Answers:
    """Ask the questions; ``ask`` returns the default for an empty answer."""
    if port is None:
        ports = list_serial_ports()
        for n, p in enumerate(ports, 1):
            out.write(f"  {n}. {p.by_id or p.device}  {p.description}\n")
        default = (ports[0].by_id or ports[0].device) if ports else ""
        choice = ask("Serial port (number or path)", default)
        port = (
            (ports[int(choice) - 1].by_id or ports[int(choice) - 1].device)
            if choice.isdigit() and 0 < int(choice) <= len(ports)
            else choice
        )
    out.write(f"Looking for BMS on {port} (this takes up to 20 s)...\n")
    found = [f.as_dict() for f in scan_port(port, scan_timeout)]
    if not found:
        raise SystemExit(f"bmsgate setup: no BMS answered on {port}; check the wiring and power")
    protocols = {f["protocol"] for f in found}
    if len(protocols) > 1:  # one bus speaks one protocol; keep the first one found
        found = [f for f in found if f["protocol"] == found[0]["protocol"]]
    names = []
    for n, bms in enumerate(found, 1):
        out.write(
            f"  found {bms['protocol']} at address {bms['address']}: {bms['cell_count']} cells"
            f"{', ' + str(bms['soc']) + ' %' if 'soc' in bms else ''}\n"
        )
        names.append(ask(f"Name of pack {n}", f"Pack {n}"))
    answers = Answers(port=port, found=found, names=names)
    if len(found) > 1:
        answers.bank = (
            ask("Show the packs together as one bank? (y/n)", "y").lower().startswith("y")
        )
    answers.broker = ask("Existing MQTT broker host[:port] (empty: bmsgate's own)", "") or None
    answers.home_assistant = ask("Home Assistant discovery? (y/n)", "n").lower().startswith("y")
    answers.modbus = ask("Modbus TCP server on port 502? (y/n)", "y").lower().startswith("y")
    answers.influx_url = ask("InfluxDB URL (empty: none)", "") or None
    answers.notify_url = ask("Notification URL, e.g. pover://USER@TOKEN (empty: none)", "") or None
    where = ask("Coordinates for sunrise/sunset reports, 'lat,lon' (empty: none)", "")
    if where:
        lat, _, lon = where.partition(",")
        answers.latitude, answers.longitude = float(lat), float(lon)
        out.write(f"  time zone there: {time_zone(answers.latitude, answers.longitude)}\n")
    password = secret("Password for the web page (empty: set it at the first visit)")
    if password:
        from bmsgate_api.auth import check_new_password, hash_password

        answers.password_hash = hash_password(check_new_password(password))
    return answers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bmsgate setup``."""
    parser.add_argument("--config", help="file to write (default: $BMSGATE_CONFIG or bmsgate.yaml)")
    parser.add_argument("--port", help="serial port; asked for when not given")
    parser.add_argument("--yes", action="store_true", help="take every default (scripts)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument(
        "--scan-timeout", type=float, default=DEFAULT_TIMEOUT, help="[s] per probe of the scan"
    )


def command(args: argparse.Namespace) -> int:
    """Run the wizard; a problem is one line and exit code 2."""
    path = config_path(args.config)
    if path.exists() and not args.force:
        sys.stderr.write(f"bmsgate setup: {path} exists; use --force to replace it\n")
        return 2

    def ask(question: str, default: str) -> str:
        if args.yes:
            return default
        shown = f" [{default}]" if default else ""
        return input(f"{question}{shown}: ").strip() or default

    def secret(question: str) -> str:
        return "" if args.yes else getpass.getpass(f"{question}: ")

    try:
        answers = interview(ask, secret, sys.stdout, args.port, args.scan_timeout)
        data = build_config(answers)
        cfg = validate(data, path)
    except (ValueError, OSError, EOFError) as err:
        sys.stderr.write(f"bmsgate setup: {err}".splitlines()[0] + "\n")
        return 2
    write_private(Path(path), data)
    sys.stdout.write(f"\nWrote {path}:\n\n")
    sys.stdout.write(yaml.safe_dump(_shown(plain(cfg, secrets=False), data), sort_keys=False))
    sys.stdout.write(f"\nStart polling with: bmsgate run --config {path}\n")
    return 0


def _shown(effective: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """The sections the wizard wrote, with their effective values (secrets stay masked)."""
    return {k: effective[k] for k in written if k in effective} | (
        {"api": {"password_hash": MASK}} if "api" in written else {}
    )

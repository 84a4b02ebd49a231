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
from typing import Any

import yaml

from bmsgate_bms.discovery import DEFAULT_TIMEOUT, Found, plan_probes
from bmsgate_bms.registry import info as protocol_info
from bmsgate_common.config_file import config_path, effective_view, save
from bmsgate_common.first_run import BankAnswer, BusAnswer, FoundPack, SetupAnswers, build_config
from bmsgate_common.service import USER_ERROR
from bmsgate_common.timezones import find_zone, zone_name
from bmsgate_serial.scan import scan, serial_ports

Ask = Callable[[str, str], str]  # (question, default) -> answer


def time_zone(latitude: float, longitude: float) -> str:
    """The time zone at a place, found offline (tzfpy)."""
    return zone_name(find_zone(latitude, longitude))


def scan_port(port: str, timeout: float = DEFAULT_TIMEOUT) -> list[Found]:
    """Every BMS that answers on ``port``."""
    report = asyncio.run(scan(port, plan_probes(), timeout))
    return report.found


def interview(
    ask: Ask,
    secret: Callable[[str], str],
    out: Any,
    port: str | None,
    scan_timeout: float = DEFAULT_TIMEOUT,
) -> SetupAnswers:
    """Ask the questions; ``ask`` returns the default for an empty answer."""
    if port is None:
        ports = serial_ports()
        for n, p in enumerate(ports, 1):
            held = f"  (in use by {', '.join(p.held_by)})" if p.held_by else ""
            out.write(f"  {n}. {p.by_id or p.device}  {p.description}{held}\n")
        default = (ports[0].by_id or ports[0].device) if ports else ""
        choice = ask("Serial port (number or path)", default)
        port = (
            (ports[int(choice) - 1].by_id or ports[int(choice) - 1].device)
            if choice.isdigit() and 0 < int(choice) <= len(ports)
            else choice
        )
    out.write(f"Looking for BMS on {port} (this takes up to 20 s)...\n")
    found = scan_port(port, scan_timeout)
    if not found:
        raise SystemExit(f"bmsgate setup: no BMS answered on {port}; check the wiring and power")
    found = [f for f in found if f.probe.protocol == found[0].probe.protocol]  # one per bus
    packs = []
    for n, bms in enumerate(found, 1):
        soc = f", {bms.soc:g} %" if bms.soc is not None else ""
        out.write(
            f"  found {bms.probe.protocol} ({protocol_info(bms.probe.protocol).label}) "
            f"at address {bms.probe.address}: "
            f"{bms.cell_count} cells{soc}\n"
        )
        name = ask(f"Name of pack {n}", f"Pack {n}")
        packs.append(
            FoundPack(
                protocol=bms.probe.protocol,
                address=bms.probe.address,
                variant=bms.probe.variant,
                name=name,
            )
        )
    banks = []
    if len(packs) > 1 and ask("Show the packs together as one bank? (y/n)", "y").lower()[:1] == "y":
        banks.append(BankAnswer(name="Bank", packs=[p.name for p in packs]))
    broker = ask("Existing MQTT broker host[:port] (empty: bmsgate's own)", "") or None
    home_assistant = ask("Home Assistant discovery? (y/n)", "n").lower().startswith("y")
    modbus_lan = "Modbus TCP server for the LAN on port 502 (read-only; anyone there can read it)?"
    modbus = ask(f"{modbus_lan} (y/n)", "y").lower().startswith("y")
    influx_url = ask("InfluxDB URL (empty: none)", "") or None
    notify_url = ask("Notification URL, e.g. pover://USER@TOKEN (empty: none)", "")
    latitude = longitude = None
    where = ask("Coordinates for sunrise/sunset reports, 'lat,lon' (empty: none)", "")
    if where:
        lat, _, lon = where.partition(",")
        latitude, longitude = float(lat), float(lon)
        out.write(f"  time zone there: {time_zone(latitude, longitude)}\n")
    password_hash = None
    password = secret("Password for the web page (empty: set it at the first visit)")
    if password:
        from bmsgate_api.auth import check_new_password, hash_password

        password_hash = hash_password(check_new_password(password))
    return SetupAnswers(
        buses=[BusAnswer(port=port, packs=packs)],
        banks=banks,
        broker=broker,
        home_assistant=home_assistant,
        modbus=modbus,
        influx_url=influx_url,
        notify_urls=[notify_url] if notify_url else [],
        latitude=latitude,
        longitude=longitude,
        password_hash=password_hash,
    )


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
        return USER_ERROR

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
        cfg = save(path, data)
    except (ValueError, OSError, EOFError) as err:  # ConfigError and pydantic's are ValueErrors
        sys.stderr.write(f"bmsgate setup: {err}".splitlines()[0] + "\n")
        return USER_ERROR
    sys.stdout.write(f"\nWrote {path}:\n\n")
    shown = {k: v for k, v in effective_view(cfg).items() if k in data}
    sys.stdout.write(yaml.safe_dump(shown, sort_keys=False))
    sys.stdout.write(
        f"\nStart polling with: bmsgate run --config {path} "
        "(a running bmsgate run --config on this file applies it at once)\n"
    )
    return 0

"""``bmsgate ports``: this machine's serial ports by their stable names, and who holds them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TextIO

from bmsgate_bms.discovery import Port
from bmsgate_serial.scan import serial_ports


def show(ports: list[Port], out: TextIO) -> None:
    """A readable list; the by-id name is the one to put in the configuration."""
    if not ports:
        out.write("no serial ports found (is the USB adapter plugged in?)\n")
        return
    for port in ports:
        name = port.by_id or port.device
        usb = f" [{port.vid_pid}]" if port.vid_pid else ""
        held = f"  IN USE by {', '.join(port.held_by)}" if port.held_by else ""
        out.write(f"{name}\n    {port.device}: {port.description}{usb}{held}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bmsgate ports``."""
    parser.add_argument("--json", action="store_true", help="one JSON object per port")


def command(args: argparse.Namespace) -> int:
    """Run ``bmsgate ports``."""
    ports = serial_ports()
    if args.json:
        for port in ports:
            sys.stdout.write(json.dumps(asdict(port)) + "\n")
    else:
        show(ports, sys.stdout)
    return 0

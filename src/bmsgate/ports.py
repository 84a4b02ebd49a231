"""``bmsgate ports``: this machine's serial ports by their stable names, and who holds them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from serial.tools import list_ports

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True)
class Port:
    """One serial port as a user picks it."""

    device: str  # /dev/ttyUSB0
    by_id: str | None  # /dev/serial/by-id/usb-FTDI_...: stays the same across replugs
    description: str
    vid_pid: str | None  # USB vendor:product, e.g. 0403:6001 (FTDI), 1a86:7523 (CH340)
    serial_number: str | None
    held_by: list[str]  # processes that have it open, "pid name"


def by_id_names(directory: Path = BY_ID) -> dict[str, str]:
    """Device -> its by-id link, for every link udev made."""
    try:
        return {os.path.realpath(link): str(link) for link in sorted(directory.iterdir())}
    except OSError:
        return {}


def holders(device: str, proc: Path = Path("/proc")) -> list[str]:
    """The processes with ``device`` open (those this user may look at)."""
    found = []
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            fds = list((pid / "fd").iterdir())
            if any(os.path.realpath(fd) == device for fd in fds):
                found.append(f"{pid.name} {(pid / 'comm').read_text().strip()}")
        except OSError:
            continue  # gone meanwhile, or not ours to see
    return found


def list_serial_ports() -> list[Port]:
    """Every serial port pyserial finds, with its by-id name and holders."""
    names = by_id_names()
    ports = []
    for info in sorted(list_ports.comports(), key=lambda p: p.device):
        device = os.path.realpath(info.device)
        ports.append(
            Port(
                device=info.device,
                by_id=names.get(device),
                description=info.description if info.description != "n/a" else "",
                vid_pid=f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None else None,
                serial_number=info.serial_number,
                held_by=holders(device),
            )
        )
    return ports


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
    ports = list_serial_ports()
    if args.json:
        for port in ports:
            sys.stdout.write(json.dumps(asdict(port)) + "\n")
    else:
        show(ports, sys.stdout)
    return 0

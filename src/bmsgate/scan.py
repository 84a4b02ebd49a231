"""``bmsgate scan``: find which BMS answer on a serial port (bmsgate_bms.discovery does it).

A full scan of a silent port sends one probe of 0.3 s per protocol and address (it says how many
and how long before it starts); ``--protocol`` and ``--addresses`` shorten it:
``--protocol daly_classic --addresses 1-3`` takes about 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from bmsgate_bms.discovery import (
    DEFAULT_TIMEOUT,
    PROTOCOL_ORDER,
    Found,
    describe,
    estimate_seconds,
    parse_addresses,
    plan_probes,
    summary,
)
from bmsgate_common.ports import port_problem
from bmsgate_serial.scan import scan


def _port(text: str) -> str:
    problem = port_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"timeout must be 0..60 s, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bmsgate scan``."""
    parser.add_argument(
        "--port", required=True, type=_port, help="/dev/ttyUSB0, /dev/pts/N or socket://H:P"
    )
    parser.add_argument(
        "--protocol", action="append", choices=PROTOCOL_ORDER, help="probe only this (repeatable)"
    )
    parser.add_argument(
        "--addresses",
        type=parse_addresses,
        help="board addresses to try, e.g. 1-3,7 (default: each protocol's usual range)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait for each answer"
    )
    parser.add_argument(
        "--no-alternate-bauds",
        "--no-jk-pb-9600",
        dest="alternates",
        action="store_false",
        help="probe each protocol at its default baud rate only (skips e.g. JK-PB at 9600)",
    )


def _say(text: str, stream: TextIO = sys.stderr) -> None:
    stream.write(text + "\n")
    stream.flush()


def command(args: argparse.Namespace) -> int:
    """Run ``bmsgate scan``: one JSON object per BMS on stdout, the summary on stderr."""
    probes = plan_probes(args.protocol, args.addresses, alternates=args.alternates)
    seconds = estimate_seconds(probes, args.timeout)
    opened: list[int] = []

    def start(baudrate: int) -> None:  # said once the port opened: a bad port gets one line
        if not opened:
            _say(f"bmsgate scan: {len(probes)} probes on {args.port}, up to {seconds:.0f} s")
        opened.append(baudrate)

    def show(found: Found) -> None:
        _say(json.dumps(found.as_dict()), sys.stdout)
        _say(describe(found))

    try:
        report = asyncio.run(scan(args.port, probes, args.timeout, on_found=show, on_open=start))
    except OSError as err:  # LinkDown: a missing, busy or vanished port
        _say(f"bmsgate scan: {err}")
        return 1
    for line in summary(report):
        _say(line)
    return 0

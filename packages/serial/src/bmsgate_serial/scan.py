"""The machine's serial ports and the BMS scan, each in one place for the CLI and the setup page.

What to probe and how to read an answer is ``bmsgate_bms.discovery``'s (derived from the
protocol registry); this module gives it pyserial's port list and the reader's own link, so a BMS
the scan finds is read by the same code that will poll it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from serial.tools import list_ports

from bmsgate_bms.discovery import Found, Port, Probe, ScanReport, list_serial_ports, run_scan

from .link import SerialLink


def serial_ports() -> list[Port]:
    """The serial ports of this machine, their stable names and who holds them (blocking)."""
    return list_serial_ports(list_ports.comports())


async def scan(
    port: str,
    probes: Sequence[Probe],
    answer_timeout: float,
    *,
    on_found: Callable[[Found], None] | None = None,
    on_open: Callable[[int], None] | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> ScanReport:
    """Probe ``port`` over a SerialLink (run_scan's progress hooks); LinkDown if it cannot open."""
    return await run_scan(
        port,
        probes,
        answer_timeout,
        on_found=on_found,
        on_open=on_open,
        on_probe=on_probe,
        link_factory=SerialLink,
    )

"""Finding the hardware: serial ports by their stable names, and which BMS answer on a port.

Shared by ``bmsgate ports``/``bmsgate scan``, the terminal wizard and the web UI's setup page.
No I/O of its own but /proc and /dev/serial: the caller passes pyserial's port list and the
serial link (the reader's SerialLink), so this package keeps no serial dependency.

Ports: every port pyserial finds, by its /dev/serial/by-id name first (stable across replugs),
with USB vendor:product, serial number, and the processes holding it (from /proc/*/fd).

Scan: which BMS answer on a port, with which protocol and address.

The scan is a fixed plan of single requests (``plan_probes``), sent one at a time over the
reader's own ``SerialLink`` (``run_scan``). A probe counts as an answer only when a frame passes
the protocol's checksum and comes from the probed address, so another protocol's bytes on the
line never count. What is sent, and to which addresses, each protocol module says itself
(``INFO.scan`` and ``probe``, listed by bmsgate_bms.registry; the table in
docs/protocols/README.md is made from them): the steps at each protocol's default line speed,
grouped by baud rate so the port is opened once per speed, then the alternate speeds (JK-PB's
9600 baud "013" setting). A protocol and address found at one baud rate is not probed again at
another: a pseudo-terminal or TCP bridge ignores the baud rate, and a board has only one.

Duration: each silent probe waits ``timeout`` (default 0.3 s), so a full scan of a silent port
takes about probes x 0.3 s (``estimate_seconds``; ``bmsgate scan`` says the figure before it
starts); an answer ends its probe early. ``--protocol`` and ``--addresses`` shorten it:
``--protocol daly_classic --addresses 1-3`` takes about 1 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from .errors import FrameError, LinkTimeout
from .link import Link
from .registry import NAMES, infos, protocol

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


class PortInfo(Protocol):
    """What pyserial's ``serial.tools.list_ports.comports()`` tells about a port."""

    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None


def list_serial_ports(found: Iterable[PortInfo]) -> list[Port]:
    """The ports pyserial found (``comports()``), with their by-id names and holders."""
    names = by_id_names()
    ports = []
    for info in sorted(found, key=lambda p: p.device):
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


PROTOCOL_ORDER: Final = NAMES  # the registry's order
DEFAULT_TIMEOUT: Final = 0.3  # [s] per probe; real boards answer within ~0.1 s
ANSWER_GAP: Final = 0.12  # [s] quiet time after an answer: JK wants >= 100 ms between frames


@dataclass(frozen=True)
class Probe:
    """One request: ``protocol`` at ``baudrate`` to ``address`` (``variant`` for DALY new)."""

    protocol: str
    baudrate: int
    address: int
    variant: str | None = None

    @property
    def label(self) -> str:
        """How the summary names it, e.g. ``daly_new 81 board 3``."""
        variant = f" {self.variant}" if self.variant else ""
        return f"{self.protocol}{variant} address {self.address} at {self.baudrate} baud"


@dataclass
class Found:
    """A BMS that answered a probe, with what its answer told."""

    probe: Probe
    cell_count: int
    pack_voltage: float | None = None  # [V]
    soc: float | None = None  # [%]

    def as_dict(self) -> dict[str, Any]:
        """One JSON object: the protocol settings to configure, then what it reported."""
        out: dict[str, Any] = {
            "protocol": self.probe.protocol,
            "address": self.probe.address,
            "baudrate": self.probe.baudrate,
        }
        if self.probe.variant:
            out["variant"] = self.probe.variant
        out["cell_count"] = self.cell_count
        if self.pack_voltage is not None:
            out["pack_voltage"] = self.pack_voltage
        if self.soc is not None:
            out["soc"] = self.soc
        return out


@dataclass
class ScanReport:
    """What a scan found, what answered wrongly, and how long it took."""

    found: list[Found] = field(default_factory=list)
    invalid: list[tuple[Probe, str]] = field(default_factory=list)  # answered, but not validly
    junk: dict[int, int] = field(default_factory=dict)  # baud rate -> bytes that formed no frame
    probes: int = 0
    seconds: float = 0.0


def parse_addresses(text: str) -> list[int]:
    """``"1-3,7"`` -> [1, 2, 3, 7] (0 for the DIP-switch makes); ValueError on anything else."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        first, last = int(low), int(high) if dash else int(low)
        if first < 0 or last < first:
            raise ValueError(f"bad address range {part!r}")
        out.extend(range(first, last + 1))
    return sorted(set(out))


def plan_probes(
    protocols: Iterable[str] | None = None,
    addresses: Sequence[int] | None = None,
    *,
    alternates: bool = True,
) -> list[Probe]:
    """Every probe of a scan, grouped by baud rate so the port is opened once per group.

    Each protocol's ``INFO.scan`` steps, in registry order: the default line speeds first
    (grouped by baud rate in the order they first appear), then the alternate ones unless
    ``alternates`` is False. ``addresses`` replaces the default board range of the steps; an
    address a protocol (or variant) cannot have is left out for that protocol only.
    """
    wanted = set(PROTOCOL_ORDER if protocols is None else protocols)
    unknown = wanted - set(PROTOCOL_ORDER)
    if unknown:
        known = ", ".join(PROTOCOL_ORDER)
        raise ValueError(f"unknown protocol {sorted(unknown)[0]!r}; known: {known}")
    steps = [(i, step) for i in infos() if i.name in wanted for step in i.scan]
    planned: list[Probe] = []
    for alternate in (False, True) if alternates else (False,):
        batch = [(i, s) for i, s in steps if s.alternate == alternate]
        bauds = list(dict.fromkeys(s.baudrate for _, s in batch))
        for info, step in sorted(batch, key=lambda pair: bauds.index(pair[1].baudrate)):
            low, high = info.address_range(step.variant)
            chosen = step.addresses if addresses is None else addresses
            planned += [
                Probe(info.name, step.baudrate, a, step.variant) for a in chosen if low <= a <= high
            ]
    return planned


def estimate_seconds(probes: Sequence[Probe], timeout: float) -> float:
    """How long the plan takes when nothing answers [s]."""
    return len(probes) * timeout


async def probe_once(link: Link, probe: Probe) -> Found:
    """Send one probe; Found, or LinkTimeout (silence) or FrameError (a wrong answer)."""
    answer = await protocol(probe.protocol).probe(link, probe.address, probe.variant)
    return Found(probe, answer.cell_count, answer.pack_voltage, answer.soc)


class ScanLink(Link, Protocol):
    """A link the scan opens per baud rate: the reader's SerialLink in production."""

    junk: int  # bytes received that formed no frame

    async def open(self) -> None:
        """Open the port; LinkDown (an OSError) if it cannot be opened."""

    async def close(self) -> None:
        """Close the port."""


LinkFactory = Callable[[str, int, float], ScanLink]  # (port, baud rate, answer timeout [s])


async def run_scan(
    port: str,
    probes: Sequence[Probe],
    answer_timeout: float = DEFAULT_TIMEOUT,
    *,
    on_found: Callable[[Found], None] | None = None,
    on_open: Callable[[int], None] | None = None,
    on_probe: Callable[[Probe], None] | None = None,
    link_factory: LinkFactory,
) -> ScanReport:
    """Send ``probes`` in order on ``port``, waiting ``answer_timeout`` [s] for each answer.

    ``on_probe`` is called after every probe (progress). Raises LinkDown (an OSError) when the
    port cannot be opened or goes away.
    """
    report = ScanReport()
    started = time.monotonic()
    seen: set[tuple[str, str | None, int]] = set()
    index = 0
    while index < len(probes):
        baudrate = probes[index].baudrate
        group = []
        while index < len(probes) and probes[index].baudrate == baudrate:
            group.append(probes[index])
            index += 1
        link = link_factory(port, baudrate, answer_timeout)
        await link.open()
        if on_open is not None:
            on_open(baudrate)
        try:
            for probe in group:
                key = (probe.protocol, probe.variant, probe.address)
                if key not in seen:  # else found at another baud rate already
                    report.probes += 1
                    found = await _probe(link, probe, report)
                    if found is not None:
                        seen.add(key)
                        report.found.append(found)
                        if on_found is not None:
                            on_found(found)
                if on_probe is not None:
                    on_probe(probe)
        finally:
            if link.junk:
                report.junk[baudrate] = report.junk.get(baudrate, 0) + link.junk
            await link.close()
    report.seconds = time.monotonic() - started
    return report


async def _probe(link: ScanLink, probe: Probe, report: ScanReport) -> Found | None:
    """One probe: what answered, or None (silence, or a wrong answer noted in ``report``)."""
    try:
        found = await probe_once(link, probe)
    except LinkTimeout:
        return None
    except FrameError as err:
        report.invalid.append((probe, str(err)))
        found = None
    await asyncio.sleep(ANSWER_GAP)  # an answer, right or wrong: let the line settle
    return found


def describe(found: Found) -> str:
    """One readable line for the summary."""
    extra = []
    if found.pack_voltage is not None:
        extra.append(f"{found.pack_voltage:.1f} V")
    if found.soc is not None:
        extra.append(f"SOC {found.soc:g} %")
    tail = f", {', '.join(extra)}" if extra else ""
    return f"found {found.probe.label}: {found.cell_count} cells{tail}"


def summary(report: ScanReport) -> list[str]:
    """The closing lines of a scan for people (stderr)."""
    count = len(report.found) or "no"
    lines = [f"{count} BMS answered ({report.probes} probes in {report.seconds:.1f} s)"]
    for probe, reason in report.invalid:
        lines.append(f"invalid answer to {probe.label}: {reason}")
    for baudrate, count in sorted(report.junk.items()):
        lines.append(
            f"{count} bytes at {baudrate} baud formed no frame (another device or baud rate?)"
        )
    return lines

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
line never count. What is sent, in order (the DALY order is PROTOCOLS.md section 5's suggestion):

* 9600 baud: DALY classic 0x90 to boards 1..16 (host address 0x3F + board, 0x40 for board 1;
  0x94 follows on an answer, for the cell count); DALY new ``81 03 00 00 00 40`` to boards
  1..16 (asked at 0x80 + board, answering from 0x50 + board); DALY new
  ``D2 03 00 00 00 3E`` (D2 has no bus address).
* 115200 baud: JK 0x4E57 read-all (one BMS per line); JK-PB FC 0x10 trigger 0x1620 to DIP
  addresses 1..15.
* 9600 baud again: JK-PB trigger to 1..15 for the "013 (9600) JK BMS RS485 Modbus V1.0"
  setting. A protocol and address found at one baud rate is not probed again at another: a
  pseudo-terminal or TCP bridge ignores the baud rate, and a board has only one.

Duration: each silent probe waits ``timeout`` (default 0.3 s), so a full scan of a silent port
sends 64 probes and takes about 64 x 0.3 = 19 s (``estimate_seconds``); an answer ends its
probe early. ``--protocol`` and ``--addresses`` shorten it: ``--protocol daly_classic
--addresses 1-3`` takes about 1 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from . import daly_classic, daly_new, jk_pb, jk_uart
from .errors import FrameError, LinkTimeout
from .link import Link

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


PROTOCOL_ORDER: Final = ("daly_classic", "daly_new", "jk_uart", "jk_pb")
DALY_BOARDS: Final = range(1, daly_new.MAX_BOARDS + 1)  # 16 boards, the 0x81 variant's limit
# host address 0x3F + board must fit in one byte: boards 1..192, as the classic driver accepts
DALY_CLASSIC_BOARDS: Final = range(1, 0xC0 + 1)
JK_PB_ADDRESSES: Final = range(1, jk_pb.MAX_ADDRESS + 1)
JK_PB_SLOW_BAUDRATE: Final = 9600  # JK app protocol "013", the 9600-baud Modbus V1.0
DEFAULT_TIMEOUT: Final = 0.3  # [s] per probe; real boards answer within ~0.1 s
ANSWER_GAP: Final = 0.12  # [s] quiet time after an answer: JK wants >= 100 ms between frames
D2_PROBE: Final = (0x00, daly_new.D2_STATUS_SHORT)  # the read every D2 firmware answers
P81_PROBE: Final = daly_new.P81_STATUS[0]  # BMSTool's first read (cells, V, I, SOC, counts)


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
    """``"1-3,7"`` -> [1, 2, 3, 7]; ValueError on anything else."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        first, last = int(low), int(high) if dash else int(low)
        if first < 1 or last < first:
            raise ValueError(f"bad address range {part!r}")
        out.extend(range(first, last + 1))
    return sorted(set(out))


def plan_probes(
    protocols: Iterable[str] | None = None,
    addresses: Sequence[int] | None = None,
    *,
    jk_pb_9600: bool = True,
) -> list[Probe]:
    """Every probe of a scan, grouped by baud rate so the port is opened once per group.

    ``addresses`` replaces the default board range of the bus protocols; an address a protocol
    cannot have (JK-PB above 15, DALY new above 16) is left out for that protocol only.
    """
    wanted = set(PROTOCOL_ORDER if protocols is None else protocols)
    unknown = wanted - set(PROTOCOL_ORDER)
    if unknown:
        known = ", ".join(PROTOCOL_ORDER)
        raise ValueError(f"unknown protocol {sorted(unknown)[0]!r}; known: {known}")

    def boards(default: range, possible: range) -> list[int]:
        return list(default) if addresses is None else [a for a in addresses if a in possible]

    slow: list[Probe] = []
    fast: list[Probe] = []
    last: list[Probe] = []
    if "daly_classic" in wanted:
        slow += [
            Probe("daly_classic", daly_classic.BAUDRATE, a)
            for a in boards(DALY_BOARDS, DALY_CLASSIC_BOARDS)
        ]
    if "daly_new" in wanted:
        slow += [
            Probe("daly_new", daly_new.BAUDRATE, a, "81") for a in boards(DALY_BOARDS, DALY_BOARDS)
        ]
        if addresses is None or 1 in addresses:
            slow.append(Probe("daly_new", daly_new.BAUDRATE, 1, "d2"))
    if "jk_uart" in wanted and (addresses is None or 1 in addresses):
        fast.append(Probe("jk_uart", jk_uart.BAUDRATE, 1))
    if "jk_pb" in wanted:
        pb = boards(JK_PB_ADDRESSES, JK_PB_ADDRESSES)
        fast += [Probe("jk_pb", jk_pb.BAUDRATE, a) for a in pb]
        if jk_pb_9600:
            last += [Probe("jk_pb", JK_PB_SLOW_BAUDRATE, a) for a in pb]
    return slow + fast + last


def estimate_seconds(probes: Sequence[Probe], timeout: float) -> float:
    """How long the plan takes when nothing answers [s]."""
    return len(probes) * timeout


async def probe_once(link: Link, probe: Probe) -> Found:
    """Send one probe; Found, or LinkTimeout (silence) or FrameError (a wrong answer)."""
    if probe.protocol == "daly_classic":
        board = probe.address
        soc = await link.exchange(
            daly_classic.request(daly_classic.SOC, board), daly_classic.framer
        )
        daly_classic.frame_data(soc[0], daly_classic.SOC, board)
        await asyncio.sleep(ANSWER_GAP)
        status = await link.exchange(
            daly_classic.request(daly_classic.STATUS, board), daly_classic.framer
        )
        daly_classic.frame_data(status[0], daly_classic.STATUS, board)
        parts = daly_classic.decode_frames([soc[0], status[0]])
        return Found(probe, int(parts["cell_count"]), parts["pack_voltage"], parts["soc"])
    if probe.protocol == "daly_new":
        variant: daly_new.Variant = "d2" if probe.variant == "d2" else "81"
        start, count = D2_PROBE if variant == "d2" else P81_PROBE
        answer_from = daly_new.response_address(variant, probe.address)
        request = daly_new.read_request(start, count, variant=variant, board=probe.address)
        frames = await link.exchange(request, daly_new.response_framer(answer_from))
        payload = daly_new.read_payload(frames[0], count, address=answer_from)
        parts = daly_new.decode_registers(payload, start, variant)
        return Found(probe, int(parts["cell_count"]), parts["pack_voltage"], parts["soc"])
    if probe.protocol == "jk_uart":
        frames = await link.exchange(jk_uart.read_all_request(), jk_uart.response_framer)
        parts = jk_uart.decode_frames(frames[:1])
        cells = parts.get("cell_count", len(parts.get("cell_voltages", [])))
        return Found(probe, int(cells), parts.get("pack_voltage"), parts.get("soc"))
    if probe.protocol == "jk_pb":
        reading = await jk_pb.Driver(link, probe.address).read()  # one trigger, one 55 AA frame
        return Found(probe, reading.cell_count, reading.pack_voltage, reading.soc)
    raise ValueError(f"no probe for {probe.protocol!r}")


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

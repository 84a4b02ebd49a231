"""``bmsgate scan`` against simulated boards on real pseudo-terminals, and against silence."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from bmsgate_bms.discovery import Probe, parse_addresses, plan_probes, run_scan
from bmsgate_bms.registry import NAMES, infos
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_bms.sim.daly_new import DalyNewBoard
from bmsgate_bms.sim.model import PackModel
from bmsgate_common.ports import port_problem
from bmsgate_common.settings import ConfigError, load_settings
from bmsgate_serial.link import LinkDown, SerialLink
from tests.support.procs import start_simulator

TIMEOUT = 0.2  # [s] per probe: the simulator answers within milliseconds


def test_default_plan_covers_every_registered_protocol() -> None:
    probes = plan_probes()
    assert {p.protocol for p in probes} == set(NAMES)
    expected = sum(len(step.addresses) for i in infos() for step in i.scan)
    assert len(probes) == expected  # every step at its default addresses, each once
    slow = {(i.name, s.baudrate) for i in infos() for s in i.scan if s.alternate}
    alternate = [n for n, p in enumerate(probes) if (p.protocol, p.baudrate) in slow]
    assert alternate == list(range(len(probes) - len(alternate), len(probes)))  # they go last
    assert ("jk_pb", 9600) in slow


def test_daly_and_jk_plan_grouped_by_baud_rate() -> None:
    probes = plan_probes(["daly_classic", "daly_new", "jk_uart", "jk_pb"])
    assert len(probes) == 16 + 16 + 1 + 1 + 15 + 15
    # DALY first in PROTOCOLS.md section 5's order: classic, new 0x81, new D2
    assert [p.protocol for p in probes[:33]] == ["daly_classic"] * 16 + ["daly_new"] * 17
    assert probes[32] == Probe("daly_new", 9600, 1, "d2")
    assert probes[33] == Probe("jk_uart", 115200, 1)
    assert {p.baudrate for p in probes[34:49]} == {115200}
    assert [p.address for p in probes[49:]] == list(range(1, 16))
    assert {(p.protocol, p.baudrate) for p in probes[49:]} == {("jk_pb", 9600)}
    bauds = [p.baudrate for p in probes]
    assert bauds == sorted(bauds[:34]) + bauds[34:]  # three groups: one port open each


def test_plan_keeps_addresses_each_protocol_can_have() -> None:
    probes = plan_probes(["daly_classic", "daly_new", "jk_pb"], parse_addresses("14-20"))
    assert [p.address for p in probes if p.protocol == "daly_classic"] == list(range(14, 21))
    assert [p.address for p in probes if p.variant == "81"] == [14, 15, 16]
    assert not any(p.variant == "d2" for p in probes)  # D2 is board 1 only
    assert [p.address for p in probes if p.protocol == "jk_pb"] == [14, 15, 14, 15]
    assert plan_probes(["jk_pb"], alternates=False) == [
        Probe("jk_pb", 115200, a) for a in range(1, 16)
    ]


def test_parse_addresses() -> None:
    assert parse_addresses("1-3,7, 2") == [1, 2, 3, 7]
    assert parse_addresses("0-2") == [0, 1, 2]  # Seplos and Pace DIP switches start at 0
    for bad in ("-1", "3-1", "x", ""):
        with pytest.raises(ValueError):  # noqa: PT011 - int() and our own check both apply
            parse_addresses(bad)


def _d2_bus() -> SimBus:
    return SimBus([DalyNewBoard(PackModel.create(cells=8, seed=4), variant="d2")], baudrate=9600)


@pytest.mark.parametrize(
    ("bus_factory", "protocols", "expected"),
    [
        pytest.param(
            lambda: make_bus("daly_classic", boards=3, cells=14),
            ["daly_classic", "daly_new"],
            [("daly_classic", None, 9600, a) for a in (1, 2, 3)],
            id="daly_classic_3_boards",
        ),
        pytest.param(
            lambda: make_bus("daly_new", boards=2, cells=24),
            ["daly_classic", "daly_new"],
            [("daly_new", "81", 9600, a) for a in (1, 2)],
            id="daly_new_81_2_boards",
        ),
        pytest.param(_d2_bus, ["daly_new"], [("daly_new", "d2", 9600, 1)], id="daly_new_d2"),
        pytest.param(
            lambda: make_bus("jk_uart", cells=16),
            ["jk_uart", "jk_pb"],
            [("jk_uart", None, 115200, 1)],
            id="jk_uart",
        ),
        pytest.param(
            lambda: make_bus("jk_pb", boards=2, cells=16),
            ["jk_uart", "jk_pb"],
            [("jk_pb", None, 115200, a) for a in (1, 2)],
            id="jk_pb_2_boards",
        ),
    ],
)
async def test_scan_finds_every_board(
    bus_factory: Callable[[], SimBus], protocols: list[str], expected: list[tuple[object, ...]]
) -> None:
    bus = bus_factory()
    probes = plan_probes(protocols, parse_addresses("1-4"))
    async with PtyServer(bus) as pty:
        report = await run_scan(pty.port, probes, TIMEOUT, link_factory=SerialLink)
    got = [
        (f.probe.protocol, f.probe.variant, f.probe.baudrate, f.probe.address) for f in report.found
    ]
    assert got == expected
    assert not report.invalid
    for found in report.found:
        model = bus.boards[found.probe.address - 1].model
        assert found.cell_count == len(model.cells)
        assert found.soc == pytest.approx(model.soc, abs=1)  # JK UART reports whole percent
        assert found.pack_voltage == pytest.approx(model.pack_voltage, abs=0.1)
    # a pty ignores the baud rate: JK-PB found at 115200 is not reported again at 9600
    assert report.probes == len(probes) - sum(1 for x in expected if x[0] == "jk_pb")


@pytest.mark.parametrize("protocol", NAMES)
async def test_a_scan_of_every_protocol_finds_each_make_and_only_it(protocol: str) -> None:
    about = next(i for i in infos() if i.name == protocol)
    boards = min(2, about.addresses[1] - about.addresses[0] + 1)
    bus = make_bus(protocol, boards=boards, cells=13)
    async with PtyServer(bus) as pty:
        report = await run_scan(pty.port, plan_probes(None, [1, 2]), 0.1, link_factory=SerialLink)
    found = [(f.probe.protocol, f.probe.address, f.cell_count) for f in report.found]
    assert found == [(protocol, b.address, 13) for b in bus.boards]
    assert not report.invalid


async def test_garbage_on_the_line_finds_nothing_and_is_reported() -> None:
    bus = make_bus("daly_classic")
    bus.faults.mode = "garbage"
    async with PtyServer(bus) as pty:
        report = await run_scan(
            pty.port, plan_probes(["daly_classic"], [1, 2]), TIMEOUT, link_factory=SerialLink
        )
    assert report.found == []
    assert report.junk.get(9600, 0) > 0


@pytest.fixture
def silent_pty() -> Iterator[str]:
    """A pseudo-terminal nobody answers on."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(slave)
    os.close(master)


async def test_silent_port_finds_nothing_in_probes_times_timeout(silent_pty: str) -> None:
    probes = plan_probes()
    started = time.monotonic()
    report = await run_scan(silent_pty, probes, 0.05, link_factory=SerialLink)
    elapsed = time.monotonic() - started
    assert report.found == [] and report.invalid == []
    assert report.probes == len(probes)
    assert len(probes) * 0.05 <= elapsed < len(probes) * 0.05 + 3  # the estimate, plus opens


def _scan_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_prints_one_json_object_per_board(tmp_path: Path) -> None:
    proc, port = start_simulator(tmp_path, "jk_pb", "--boards", "2", "--cells", "8")
    try:
        result = _scan_cli("--port", port, "--timeout", "0.1")
    finally:
        proc.stop()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["protocol"], x["address"], x["baudrate"], x["cell_count"]) for x in lines] == [
        ("jk_pb", 1, 115200, 8),
        ("jk_pb", 2, 115200, 8),
    ], result.stderr
    assert "2 BMS answered" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_port_is_one_line_and_exit_1() -> None:
    result = _scan_cli("--port", "/dev/does-not-exist-bmsgate")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bmsgate scan: cannot open serial port /dev/does-not-exist-bmsgate")


SPY_ATTACK = "spy:///dev/does-not-exist-bmsgate?file={victim}"  # pyserial's spy handler


def test_pyserial_url_handlers_are_refused_and_the_victim_file_is_untouched(
    tmp_path: Path,
) -> None:
    """pyserial's spy:// truncates any file, even when its port cannot open; bmsgate never lets it.

    The scan, the configuration and the serial link each refuse the URL; the file keeps its bytes.
    """
    control = tmp_path / "control"
    control.write_text("kept\n")
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(SPY_ATTACK.format(victim=control))
    assert control.read_text() == ""  # the attack is real: pyserial emptied the file

    victim = tmp_path / "passwd.json"
    victim.write_text('{"hash": "kept"}\n')
    url = SPY_ATTACK.format(victim=victim)
    result = _scan_cli("--port", url)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --port: spy:// is not a serial port" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    config = tmp_path / "site.yaml"
    for key, bus in (
        ("buses.0.port", {"port": url}),
        ("buses.0.passthrough", {"port": "/dev/ttyUSB0", "passthrough": url}),
    ):
        config.write_text(
            json.dumps({"buses": [{**bus, "protocol": "daly_classic", "packs": [{"id": "a"}]}]})
        )
        with pytest.raises(ConfigError) as refused:
            load_settings(config)
        assert f"'{key}'" in str(refused.value) and "spy:// is not a serial port" in str(
            refused.value
        )

    with pytest.raises(LinkDown, match="spy:// is not a serial port"):
        asyncio.run(SerialLink(url, 9600, 0.1).open())
    with pytest.raises(LinkDown, match="not a serial device"):
        asyncio.run(SerialLink(str(victim), 9600, 0.1).open())  # a plain file is no port
    assert victim.read_text() == '{"hash": "kept"}\n'


@pytest.mark.parametrize(
    ("port", "ok"),
    [
        ("/dev/ttyUSB0", True),
        ("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0", True),
        ("/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0", True),
        ("socket://192.168.1.40:4001", True),
        ("rfc2217://converter.local:2217", True),
        ("socket://[fd00::40]:4001", True),
        ("spy://x?file=/tmp/victim", False),
        ("SPY://x", False),
        ("loop://", False),
        ("alt:///dev/ttyUSB0?class=PosixPollSerial", False),
        ("hwgrep://0403:6001", False),
        ("socket://192.168.1.40:4001?logging=debug", False),
        ("rfc2217://h:2217/x", False),
        ("socket://h:99999", False),
        ("ttyUSB0", False),
        ("/dev/../etc/passwd", False),
    ],
)
def test_a_port_is_a_device_path_or_a_serial_line_over_tcp(port: str, ok: bool) -> None:
    assert (port_problem(port) is None) is ok, port_problem(port)

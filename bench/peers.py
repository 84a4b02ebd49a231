"""Peers bench: bmsgate beside other programs that read DALY / JK boards, on the same boards.

Each peer installs from PyPI, pinned, into a virtual environment of its own under the bench's
cache (``~/.cache/bmsgate-bench/peers``, made with uv; never the project's environment). Then,
one after another in one run, each program reads a simulated board on a pty for the same window
and publishes what it read to MQTT, and the bench reports for each protocol:

* CPU per delivered sample: user + system CPU seconds of the program's whole process tree over
  the window (/proc; processes that ended in the window count through their parent's reaped
  children's time) divided by the samples a subscriber received in it;
* PSS of the whole tree (the largest sum seen over the window: a one-shot tool is a process
  only while it runs) and samples/s;
* snapshot / wire: the time from a snapshot's first request to its last answer byte against
  the least the wire allows (its bytes at the baud rate plus the board's answer delay per
  exchange); the simulator records both.

The simulated board is bmsgate's (``bmsgate_bms.sim``), in a process of the bench's outside the
measured trees, pacing its bytes at the baud rate and answering after ANSWER_DELAY, as
reader_bench.py does. A fresh board serves each run.

A sample is one reading of the pack: bmsgate's state message; for the peers what they publish
for one reading of voltage, current, SOC, cells, temperatures and switch states (PEERS below
says what that is for each). bmsgate's tree includes its private Mosquitto (its backbone); the
peers publish to a broker of the bench's, not counted.

Run: uv run python bench/peers.py [--seconds 60] [--warmup 10] [--poll 1]
     [--peers bmsgate mpp-solar dalybms powermon] [--protocols daly_classic jk_uart jk_pb]
     [--json FILE]
     uv run python bench/peers.py --install   (only make the peers' environments)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from procstat import (  # noqa: E402
    children,
    cpu_model,
    cpu_seconds,
    loadavg,
    memory_mb,
    reaped_cpu_seconds,
)

HOST = "127.0.0.1"
ANSWER_DELAY = 0.010  # [s] the board's own time to answer, as in reader_bench.py
PROTOCOLS = ("daly_classic", "jk_uart", "jk_pb")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bmsgate-bench" / "peers"


# --- the simulated board, in a process of its own (``peers.py --serve``) ----------------------


class Exchanges:
    """Every request the board heard: when it came, when its answer's last byte went out, bytes.

    The bench groups them into readings by the samples the program delivered (readings.)
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def request(self, request: bytes, answered: bool) -> None:
        """A complete request came in (``answered``: the board answers it)."""
        now = time.monotonic()
        self.rows.append({"start": now, "end": now, "bytes": 0, "answered": answered})

    def wire(self, size: int, out: bool) -> None:
        """``size`` bytes went in (a request) or out (an answer, written now) of the board."""
        if self.rows and size:
            self.rows[-1]["bytes"] += size
            if out:
                self.rows[-1]["end"] = time.monotonic()


async def serve(protocol: str, address: int, link: Path, record: Path) -> None:
    """Serve one simulated board on a pty at ``link`` until SIGTERM; then write ``record``."""
    from bmsgate_bms.registry import info
    from bmsgate_bms.sim import BOARDS, PackModel
    from bmsgate_bms.sim.bus import PtyServer, SimBus

    log = Exchanges()

    class Watched:
        """The board, telling ``log`` about every request it hears."""

        def __init__(self, board: Any) -> None:
            self.board, self.model = board, board.model

        def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
            return self.board.request_framer(buf)  # type: ignore[no-any-return]

        def answer(self, request: bytes) -> list[bytes] | None:
            frames = self.board.answer(request)
            log.request(request, frames is not None)
            return frames  # type: ignore[no-any-return]

    class WatchedPty(PtyServer):
        def _write(self, data: bytes) -> None:
            super()._write(data)
            log.wire(len(data), out=True)

        def _on_readable(self) -> None:
            before = self.received
            super()._on_readable()
            log.wire(self.received - before, out=False)

    board = importlib.import_module(BOARDS[protocol]).Board(
        PackModel.create(cells=16, seed=1), address=address
    )
    baud = info(protocol).baudrate
    bus = SimBus([Watched(board)], baudrate=baud, answer_delay=ANSWER_DELAY, pace=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with WatchedPty(bus, link):
        print(link, flush=True)
        clock = asyncio.create_task(bus.run_time())
        await stop.wait()
        clock.cancel()
    saved = {"baud": baud, "answer_delay": ANSWER_DELAY, "rows": log.rows}
    record.write_text(json.dumps(saved))  # noqa: ASYNC240 (the loop has nothing else to do)


@contextlib.contextmanager
def board(work: Path, protocol: str, address: int) -> Iterator[tuple[Path, Path]]:
    """A simulated board outside the measured tree; yields (its pty, where its record will be)."""
    link, record = work / f"tty-{protocol}", work / "board.json"
    # fmt: off
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", protocol,
            "--address", str(address), "--link", str(link), "--record", str(record)]
    # fmt: on
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=(work / "board.log").open("wb"))
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline():
            raise RuntimeError(f"the simulated board did not start: see {work / 'board.log'}")
        yield link, record
    finally:
        proc.terminate()
        proc.wait(10)


def readings(record: Path, samples: list[float]) -> dict[str, Any]:
    """Each reading's time against the least time its bytes need on the wire.

    A reading is the exchanges between two delivered samples (a program publishes after it has
    read): from its first request to its last answer byte. A gap of more than 1.5 times the
    usual one holds a lost sample's reading too, and is left out. The wire's least time is its bytes
    at the baud rate (8N1) plus the board's answer delay per answered request.
    """
    data = json.loads(record.read_text())
    spans, wires, sizes, asked = [], [], [], []
    gaps = [b - a for a, b in itertools.pairwise(samples)]
    usual = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    skipped = 0
    for before, after in itertools.pairwise(samples):
        if after - before > 1.5 * usual:  # a sample was lost: two readings in one gap
            skipped += 1
            continue
        rows = [r for r in data["rows"] if before < r["start"] < after]
        if not rows:
            continue
        spans.append(max(r["end"] for r in rows) - rows[0]["start"])
        size, answered = sum(r["bytes"] for r in rows), sum(r["answered"] for r in rows)
        wires.append(size * 10 / data["baud"] + answered * data["answer_delay"])
        sizes.append(size)
        asked.append(len(rows))
    if not spans:
        return {"readings": 0}
    return {
        "readings": len(spans),
        "skipped": skipped,  # gaps holding more than one reading (not in the figures)
        "reading_ms": round(1000 * sum(spans) / len(spans), 1),
        "wire_ms": round(1000 * sum(wires) / len(wires), 1),
        "bytes": round(sum(sizes) / len(sizes)),
        "requests": round(sum(asked) / len(asked), 1),
        "ratio": round(sum(spans) / sum(wires), 3),
    }


# --- the peers' environments ------------------------------------------------------------------


def uv() -> str:
    """The uv the project's setup installs, else one on PATH."""
    mine = ROOT / ".tools" / "bin" / "uv"
    found = str(mine) if mine.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found (scripts/setup.sh installs it in .tools/bin)")
    return found


def environment(key: str, requirements: tuple[str, ...]) -> Path:
    """The bin folder of a virtual environment holding exactly ``requirements`` (made once)."""
    where = CACHE / key
    stamp = where / "bmsgate-bench-requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return where / "bin"
    shutil.rmtree(where, ignore_errors=True)
    quiet = {"capture_output": True, "text": True, "check": False}
    # fmt: off
    steps = [
        [uv(), "venv", "--quiet", "--python", sys.executable, str(where)],
        [uv(), "pip", "install", "--quiet", "--python", str(where / "bin" / "python"),
         *requirements],
    ]
    # fmt: on
    for argv in steps:
        done = subprocess.run(argv, **quiet)  # type: ignore[call-overload]
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    stamp.write_text(wanted)
    return where / "bin"


# --- the programs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """A program that reads the boards, and how the bench runs it for each protocol."""

    key: str
    label: str
    requirements: tuple[str, ...]  # pinned, from PyPI; () for bmsgate itself
    # protocol -> what one reading is, for the table; a protocol absent: it cannot read it
    reads: dict[str, str]
    # the board's address for a protocol (the DALY host address a program sends selects it)
    address: dict[str, int]


# DALY commands of one reading: the state bmsgate publishes needs these (mpp-solar's names)
MPP_DALY = "SOC#mosStatus#status#cellVoltages#cellTemperatures"

# powermon's DALY commands of one reading (it has no command for each temperature sensor)
POWERMON_DALY = ("SOC", "temperatures", "mosfet", "status", "cell_voltages")

PROGRAMS: dict[str, Program] = {
    "bmsgate": Program(
        "bmsgate",
        "bmsgate",
        (),
        {p: "one state message (bmsgate/bms/<id>/state)" for p in PROTOCOLS},
        {},
    ),
    "mpp-solar": Program(
        "mpp-solar",
        "mpp-solar 0.16.56",
        ("mppsolar==0.16.56", "paho-mqtt==1.6.1", "pyserial==3.5"),
        {
            "daly_classic": f"protocol DALY, commands {MPP_DALY}, json_mqtt",
            "jk_uart": "protocol JKSERIAL, command getBalancerData, json_mqtt",
        },
        # mpp-solar asks from host address 0x80 (UART/Bluetooth): board 0x80 - 0x3F answers it
        {"daly_classic": 0x41},
    ),
    "dalybms": Program(
        "dalybms",
        "dalybms 0.5.0 (python-daly-bms)",
        # the CLI imports pyserial and paho-mqtt without declaring them; paho 2 changed Client()
        ("dalybms==0.5.0", "pyserial==3.5", "paho-mqtt==1.6.1"),
        {"daly_classic": "daly-bms-cli --all (JSON on stdout), started again after each reading"},
        {},
    ),
    "powermon": Program(
        "powermon",
        "powermon 1.0.14",
        # 1.0.16 and 1.0.18 refuse every serial port: their SerialPort.from_config returns None
        ("powermon==1.0.14",),
        {"daly_classic": f"protocol daly, commands {', '.join(POWERMON_DALY)}, json to MQTT"},
        {},
    ),
}

# What the table says where a program cannot give a sample of a protocol, and why
CANNOT: dict[tuple[str, str], str] = {
    ("mpp-solar", "jk_pb"): (
        "no decoded sample: its JKPB commands define no fields in 0.16.56 (publishes the frame "
        "as hex)"
    ),
    ("dalybms", "jk_uart"): "no JK support (DALY only)",
    ("dalybms", "jk_pb"): "no JK support (DALY only)",
    ("powermon", "jk_uart"): (
        "no sample: its JKSERIAL all_data only listens for frames a board sends unasked (it "
        "sends no request); its one requested command reads the pack voltage alone"
    ),
    ("powermon", "jk_pb"): "no JK-PB protocol",
}


@dataclass
class Launch:
    """How one program is started on one board, and which messages are its samples."""

    argv: list[str]
    topic: str  # MQTT filter to subscribe to
    is_sample: Callable[[str, bytes], bool]  # (topic, payload) of the last message of a reading
    login: Callable[[], dict[str, Any]]  # where the subscriber connects (may wait for it)
    stdout_end: str | None = None  # instead of MQTT: the line that ends a reading on stdout


def launch(
    key: str, protocol: str, link: Path, work: Path, broker_port: int, poll: float
) -> Launch:
    """The command line and the sample topic of program ``key`` reading ``link``."""
    bench = {"hostname": HOST, "port": broker_port}
    if key == "bmsgate":
        from footprint import broker_login, config

        cfg = config(work, [link], protocol, poll, {})
        bmsgate = str(Path(sys.executable).parent / "bmsgate")
        return Launch(
            [bmsgate, "run", "--config", str(cfg)],
            "bmsgate/bms/+/state",
            lambda topic, payload: True,
            lambda: broker_login(work / "data", {}),
        )
    bin_dir = environment(key, PROGRAMS[key].requirements)
    if key == "mpp-solar":
        command, mpp, port_type, baud = {
            "daly_classic": (MPP_DALY, "DALY", "daly", 9600),
            "jk_uart": ("getBalancerData", "JKSERIAL", "jkserial", 115200),
        }[protocol]
        ini = work / "mpp-solar.conf"
        # its daemon sleeps `pause` whole seconds after each round of commands
        ini.write_text(
            f"[SETUP]\npause={max(1, round(poll))}\nmqtt_broker={HOST}\nmqtt_port={broker_port}\n"
            f"log_file={work / 'mpp-solar.log'}\n\n[bms]\nprotocol={mpp}\ntype=mppsolar\n"
            f"port={link}\nporttype={port_type}\nbaud={baud}\ncommand={command}\n"
            "outputs=json_mqtt\n"
        )
        last = command.split("#")[-1]  # json_mqtt: one message per command, "<command>/mpp-solar"
        # fmt: off
        argv = [str(bin_dir / "mpp-solar"), "-C", str(ini), "--daemon",
                "--pidfile", str(work / "mpp-solar.pid")]
        # fmt: on
        # a message that carries values: after a failed read it publishes an error instead
        value = {"daly_classic": b'"cell_01_temperature"', "jk_uart": b'"battery_voltage"'}
        return Launch(
            argv,
            "#",
            lambda t, payload: t == f"{last}/mpp-solar" and value[protocol] in payload,
            lambda: bench,
        )
    if key == "dalybms":
        # A one-shot tool: a loop starts it again after each reading, as cron or a unit would.
        # Its samples are counted on stdout: with --mqtt it publishes each value and exits
        # without running its MQTT client's loop, and only the first value reached the broker.
        loop = 'while :; do "$0" -d "$1" --all; sleep "$2"; done'
        argv = ["sh", "-c", loop, str(bin_dir / "daly-bms-cli"), str(link), str(poll)]
        # --all prints one JSON document per reading, indented: "}" alone ends it
        return Launch(argv, "", lambda t, _: False, lambda: bench, stdout_end="}")
    if key == "powermon":
        import yaml

        every = max(1, round(poll))  # its triggers take whole seconds
        commands = [
            {
                "command": command,
                "trigger": {"every": every},
                "outputs": [{"type": "mqtt", "topic": f"powermon/{command}", "format": "json"}],
            }
            for command in POWERMON_DALY
        ]
        port = {"type": "serial", "path": str(link), "baud": 9600, "protocol": "daly"}
        cfg = {
            "device": {"name": "bench", "port": port},
            "mqttbroker": {"name": HOST, "port": broker_port},
            "loop": 1,
            "commands": commands,
        }
        path = work / "powermon.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # json format: a message per value; the last cell's voltage ends a reading
        topic, last = f"powermon/{POWERMON_DALY[-1]}", b'"cell_16_voltage"'
        return Launch(
            [str(bin_dir / "powermon"), "-C", str(path)],
            topic,
            lambda t, payload: t == topic and last in payload,
            lambda: bench,
        )
    raise KeyError(key)


def tree(root: int) -> list[int]:
    """The root and its descendants now."""
    return [root, *children(root)]


def tree_cpu(root: int) -> float:
    """CPU seconds of the tree: its live processes and the children they waited for."""
    return sum(cpu_seconds(pid) + reaped_cpu_seconds(pid) for pid in tree(root))


def tree_memory(root: int) -> tuple[float, float, int]:
    """(PSS sum, RSS sum, processes) of the tree now."""
    rows = [memory_mb(pid) for pid in tree(root)]
    return sum(p for _, p in rows), sum(r for r, _ in rows), len(rows)


async def watch(
    launched: Launch, proc: subprocess.Popen[bytes], warmup: float, seconds: float
) -> dict[str, Any]:
    """Count the samples a subscriber gets; CPU and memory of the tree over the window."""
    import aiomqtt

    heard: list[float] = []
    root = proc.pid
    if launched.stdout_end is not None:
        end_line = launched.stdout_end.encode()

        def lines() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.rstrip(b"\n") == end_line:
                    heard.append(time.monotonic())

        threading.Thread(target=lines, daemon=True).start()

    async def hear(client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the window ended and it disconnected
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if not message.retain and launched.is_sample(str(message.topic), payload):
                    heard.append(time.monotonic())

    login = await asyncio.to_thread(launched.login)
    deadline = time.monotonic() + 90  # mpp-solar's DALY round takes ~5 s before its first sample
    while True:
        try:
            async with aiomqtt.Client(**login) as client:
                if launched.topic:
                    await client.subscribe(launched.topic, qos=0)
                hearing = asyncio.create_task(hear(client))
                while not heard and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                if not heard:
                    return {"samples": 0, "note": "no sample at all in 90 s"}
                await asyncio.sleep(warmup)
                cpu, start = tree_cpu(root), time.monotonic()
                peak = (0.0, 0.0, 0)
                while time.monotonic() < start + seconds:
                    now = tree_memory(root)
                    peak = max(peak, now)
                    # often: a one-shot tool is a process for well under a second
                    await asyncio.sleep(min(0.2, max(0.0, start + seconds - time.monotonic())))
                used, end = tree_cpu(root) - cpu, time.monotonic()
                hearing.cancel()
                break
        except aiomqtt.MqttError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    got = [t for t in heard if start <= t < end]
    window = end - start
    return {
        "samples": len(got),
        "window_s": round(window, 1),
        "samples_per_s": round(len(got) / window, 3),
        "cpu_percent": round(100 * used / window, 2),
        "cpu_ms_per_sample": round(1000 * used / len(got), 2) if got else None,
        "pss_mb": round(peak[0], 1),
        "rss_mb": round(peak[1], 1),
        "processes": peak[2],
        # reading boundaries: the samples of the window and the one before it
        "marks": [t for t in heard if t < start][-1:] + got,
    }


def measure(
    key: str, protocol: str, broker_port: int, seconds: float, warmup: float, poll: float
) -> dict[str, Any]:
    """Run program ``key`` on a fresh simulated ``protocol`` board; its figures."""
    out: dict[str, Any] = {"program": PROGRAMS[key].label, "protocol": protocol}
    if protocol not in PROGRAMS[key].reads:
        return out | {"samples": 0, "note": CANNOT.get((key, protocol), "cannot read it")}
    work = Path(tempfile.mkdtemp(prefix=f"bmsgate-peers-{key}-{protocol}-"))
    address = PROGRAMS[key].address.get(protocol, 1)
    load = loadavg()
    with board(work, protocol, address) as (link, record):
        launched = launch(key, protocol, link, work, broker_port, poll)
        log = (work / "program.log").open("wb")
        stdout = subprocess.PIPE if launched.stdout_end is not None else log
        proc = subprocess.Popen(
            launched.argv, stdout=stdout, stderr=log, cwd=work, start_new_session=True
        )
        try:
            seen = asyncio.run(watch(launched, proc, warmup, seconds))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    marks = seen.pop("marks", [])
    wire = readings(record, marks) if marks else {"readings": 0}
    return out | seen | {"wire": wire, "load": f"{load} -> {loadavg()}", "work": str(work)}


def times(value: float | None, base: float | None) -> str:
    """``value`` as a multiple of bmsgate's, for the table."""
    return f" ({value / base:.2f}x)" if value and base else ""


def summary(r: dict[str, Any]) -> str:
    """One program on one protocol in a line (bench/run.py's table)."""
    if not r.get("samples"):
        return str(r.get("note", "no sample"))
    wire = r["wire"]
    ratio = f", reading / wire {wire['ratio']}x" if wire.get("readings") else ""
    return (
        f"{r['samples_per_s']} samples/s, {r['cpu_ms_per_sample']} ms CPU a sample, "
        f"PSS {r['pss_mb']} MB ({r['processes']} processes){ratio}"
    )


def show(results: list[dict[str, Any]]) -> list[str]:
    """A table per protocol: bmsgate first, each peer against it."""
    lines = []
    for protocol in dict.fromkeys(r["protocol"] for r in results):
        rows = [r for r in results if r["protocol"] == protocol]
        base = next((r for r in rows if r["program"] == "bmsgate"), {})
        lines.append(f"\n{protocol}:")
        head = "program", "samples/s", "CPU ms/sample", "PSS MB (processes)", "reading / wire"
        lines.append(f"  {head[0]:32} {head[1]:>9}  {head[2]:22} {head[3]:24} {head[4]}")
        for r in rows:
            if not r.get("samples"):
                lines.append(f"  {r['program']:32} {r.get('note', 'no sample')}")
                continue
            cpu, pss, wire = r["cpu_ms_per_sample"], r["pss_mb"], r["wire"]
            ratio = (
                f"{wire['reading_ms']} / {wire['wire_ms']} ms = {wire['ratio']}x"
                if wire.get("readings")
                else "-"
            )
            cpu_text = f"{cpu}{times(cpu, base.get('cpu_ms_per_sample'))}"
            pss_text = f"{pss} ({r['processes']}){times(pss, base.get('pss_mb'))}"
            lines.append(
                f"  {r['program']:32} {r['samples_per_s']:>9}  {cpu_text:22} {pss_text:24} "
                f"{ratio}   [load {r['load']}]"
            )
    return lines


def main() -> None:
    """Install the peers, run every program on every protocol, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="[s] measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="[s] after the first sample")
    parser.add_argument("--poll", type=float, default=1.0, help="[s] poll interval / pause")
    parser.add_argument("--peers", nargs="+", choices=list(PROGRAMS), default=list(PROGRAMS))
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--install", action="store_true", help="only make the environments")
    parser.add_argument("--json", type=Path, help="write the results here too")
    # the simulated board's own process (internal)
    parser.add_argument("--serve", choices=PROTOCOLS, help=argparse.SUPPRESS)
    parser.add_argument("--address", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--link", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.address, args.link, args.record))
        return
    for key in args.peers:
        if PROGRAMS[key].requirements:
            print(f"{key}: {environment(key, PROGRAMS[key].requirements)}", flush=True)
    if args.install:
        return
    print(f"{cpu_model()}, {os.cpu_count()} cores; load {loadavg()}", flush=True)
    results = run(args.peers, args.protocols, args.seconds, args.warmup, args.poll)
    print("\n".join(show(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def run(
    keys: list[str], protocols: list[str], seconds: float, warmup: float, poll: float
) -> list[dict[str, Any]]:
    """Every program on every protocol, one after another, against one broker of the bench's."""
    from backbone import local_broker

    work = Path(tempfile.mkdtemp(prefix="bmsgate-peers-"))
    broker = local_broker(work / "mosquitto")
    broker.start()
    results = []
    try:
        for protocol in protocols:
            for key in keys:
                r = measure(key, protocol, broker.port, seconds, warmup, poll)
                print(f"{key} on {protocol}: {json.dumps(r)}", flush=True)
                results.append(r)
    finally:
        broker.stop()
    return results


if __name__ == "__main__":
    main()

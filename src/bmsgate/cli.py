"""The ``bmsgate`` command: run the pipeline, run one service, decode frames, simulate a BMS."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bmsgate_bms.errors import FrameError
from bmsgate_bms.registry import PROTOCOLS, protocol
from bmsgate_common.exits import USER_ERROR
from bmsgate_common.logs import setup_logging

from .services import SERVICES

if TYPE_CHECKING:
    from bmsgate_common.settings import Settings


class _Version(argparse.Action):
    """``--version``: the package metadata read only then (version.py: an import of 5 MB)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from bmsgate_common.version import VERSION

        print(f"bmsgate {VERSION}")  # on stdout, as argparse's own version action
        parser.exit()


def _fail(command: str, message: str, code: int = USER_ERROR) -> int:
    print(f"bmsgate {command}: {message}", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    """Start every service on this machine and apply the configuration file when it changes."""
    overrides = _run_overrides(args)
    if args.only == ["reader"] and not (args.simulate or args.simulate_packs or args.isolate):
        from .edge import edge_run  # readers only: a small supervisor without pydantic

        code = edge_run(args.config, overrides)
        if code is not None:
            return code
    return _run_full(args, overrides)


def _run_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The command line's settings, over the file's."""
    from .simulated import DEMO_PROTOCOL, simulated_bus_entries

    overrides: dict[str, object] = {}
    if args.http_port is not None:
        overrides["api"] = {"port": args.http_port}
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    if args.modbus_port is not None:
        overrides["modbus"] = {"port": args.modbus_port}
    if args.simulate or args.simulate_packs:  # the file is checked against the simulated packs
        count = args.simulate_packs or 1
        overrides["buses"] = simulated_bus_entries(count, args.simulate or DEMO_PROTOCOL)
    return overrides


def _run_full(args: argparse.Namespace, overrides: dict[str, object]) -> int:
    """Every service the configuration asks for, under run.py's supervisor."""
    import asyncio

    from bmsgate_common.config_file import config_path
    from bmsgate_common.service import until_signal
    from bmsgate_common.settings import ConfigError, load_settings

    from .run import supervise
    from .zygote import fork_zygote, share, zygote_modules

    path = config_path(args.config)

    def load() -> Settings:
        # no file yet (first start): defaults, and the web UI's setup page writes it
        return load_settings(path, missing_ok=True, **overrides)

    try:
        cfg = load()
    except ConfigError as err:
        return _fail("run", str(err))
    setup_logging(cfg.log_level, "run")
    share(not args.isolate)
    # before any event loop or thread: the services share our imports (zygote.py); their own
    # modules too when each is a process forked from the zygote. In the one process they share,
    # the services write to most of those pages, which would leave the originals here as a
    # second copy (docs/performance.md): that process imports them itself.
    fork_zygote(zygote_modules(cfg, args.only) if args.isolate else [])
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                until_signal(
                    supervise(
                        cfg,
                        simulate=args.simulate,
                        simulate_packs=args.simulate_packs,
                        only=args.only,
                        config_file=path.resolve(),
                        load=load,
                    )
                )
            )
    except RuntimeError as err:  # e.g. mosquitto missing
        return _fail("run", str(err), 1)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.replace(":", " ").replace(",", " ").split())
    cleaned = cleaned.removeprefix("0x")
    return bytes.fromhex(cleaned)


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode frames given as hex and print one JSON object."""
    try:
        data = _parse_hex(" ".join(args.hex))
    except ValueError:
        return _fail("decode", "not a hex string (pairs of 0-9a-f, spaces allowed)", 1)
    context = {
        "cell_count": args.cell_count,
        "temp_count": args.temp_count,
        "start_register": args.start_register,
        "command": args.answer_to,
        "variant": args.variant,
    }
    module = protocol(args.protocol)
    decoder = module.decode_request if args.request else module.decode_hex
    try:
        decoded = decoder(data, **{k: v for k, v in context.items() if v is not None})
    except FrameError as err:
        return _fail("decode", f"invalid {args.protocol} frame: {err}", 1)
    print(json.dumps(decoded, ensure_ascii=False))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve a simulated BMS (or bus of boards) on a pty or TCP until stopped."""
    import asyncio

    from bmsgate_bms.sim import make_bus
    from bmsgate_bms.sim.bus import FAULTS, PtyServer, TcpServer

    try:
        bus = make_bus(args.protocol, boards=args.boards, cells=args.cells)
    except (KeyError, ModuleNotFoundError) as err:
        return _fail("simulate", f"no simulator for {args.protocol}: {err}", 1)
    if args.fault not in FAULTS:
        return _fail("simulate", f"unknown fault {args.fault!r}; known: {', '.join(FAULTS)}")
    bus.faults.mode = args.fault
    bus.pace = args.pace
    if args.master is not None and (args.protocol != "jk_pb" or not args.pty):
        return _fail("simulate", "--master is for --protocol jk_pb with --pty")

    async def polled(pty: PtyServer) -> None:
        """A JK-PB master at DIP 0 polling the boards, for a reader that listens."""
        from bmsgate_bms.sim.jk_pb import JkPbBoard, Master
        from bmsgate_bms.sim.model import PackModel

        master = Master(bus, JkPbBoard(PackModel.create(cells=args.cells, seed=99), address=0))
        while True:
            await pty.send(master.round())
            await asyncio.sleep(args.master)

    async def serve() -> None:
        clock = asyncio.create_task(bus.run_time(speed=args.speed))
        try:
            if args.pty:
                async with PtyServer(bus, link=args.link) as pty:
                    print(pty.port, flush=True)
                    if args.master is not None:
                        await polled(pty)
                    await asyncio.Event().wait()
            else:
                host, _, port = args.listen.removeprefix("tcp://").rpartition(":")
                async with TcpServer(bus, host or "127.0.0.1", int(port)) as tcp:
                    print(f"tcp://{tcp.host}:{tcp.port}", flush=True)
                    await asyncio.Event().wait()
        finally:
            clock.cancel()

    if args.listen and not args.listen.removeprefix("tcp://").rpartition(":")[2].isdigit():
        return _fail("simulate", "--listen takes tcp://HOST:PORT")
    setup_logging("WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        from bmsgate_common.service import until_signal

        asyncio.run(until_signal(serve()))
    return 0


def cmd_ports(args: argparse.Namespace) -> int:
    """List the serial ports."""
    from .ports import command

    return command(args)


def cmd_config(args: argparse.Namespace) -> int:
    """Headless provisioning of the configuration file."""
    from .config_cli import run

    return run(args)


def cmd_setup(args: argparse.Namespace) -> int:
    """The first-run wizard."""
    from .setup_wizard import command

    return command(args)


def cmd_scan(args: argparse.Namespace) -> int:
    """Probe a serial port for every protocol and print what answers."""
    from .scan import command

    return command(args)


def cmd_service(args: argparse.Namespace, rest: list[str]) -> int:
    """Run one service as its container does."""
    module = importlib.import_module(f"{SERVICES[args.command].module}.__main__")
    return int(module.main(rest))


def cmd_tunnel(argv: list[str]) -> int:
    """Open, close or show the tunnel of a pack (``bmsgate tunnel open PACK [--minutes N]``)."""
    from bmsgate_tunnel.client import main as tunnel_main

    return tunnel_main(argv)


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Back up, then show how to upgrade this installation."""
    from .upgrade import command

    return command(args)


# subcommands whose options come from their own modules: (help, module with add_arguments)
OWN_MODULE: Final = {
    "scan": ("find which BMS answer on a serial port", ".scan"),
    "ports": ("list serial ports by their stable names", ".ports"),
    "config": ("get, set, check, export, import settings", ".config_cli"),
    "setup": ("first-run wizard: port, BMS, names, outputs", ".setup_wizard"),
    "upgrade": ("back up, then show how to upgrade", ".upgrade"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand.

    ``command``: the one that will run; the options of the others in OWN_MODULE are left out,
    and so are their modules' imports, which ``bmsgate run --only reader`` would keep.
    """
    parser = argparse.ArgumentParser(
        prog="bmsgate", description="Gateway for DALY and JK battery BMS."
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start every service on this machine")
    run.add_argument(
        "--config",
        help="YAML configuration file, watched for changes (default: $BMSGATE_CONFIG or "
        "./bmsgate.yaml; until it exists a simulated pack runs and the web UI offers setup)",
    )
    run.add_argument("--simulate", choices=sorted(PROTOCOLS), help="poll a simulated pack")
    run.add_argument(
        "--simulate-packs",
        type=_positive,
        default=0,
        metavar="N",
        help="N simulated packs, each on its own bus with its own reader (--simulate: protocol)",
    )
    run.add_argument(
        "--only",
        action="append",
        choices=sorted(SERVICES),
        metavar="SERVICE",
        help="start only this service (repeatable), e.g. readers on an edge machine",
    )
    run.add_argument(
        "--isolate",
        action="store_true",
        help="each service in a process of its own (more memory; default: one process for all)",
    )
    run.add_argument("--http-port", type=int, help="web UI and API port (default 8080)")
    run.add_argument("--modbus-port", type=int, help="Modbus TCP port (default 502)")
    run.add_argument("--data-dir", type=Path, help="where services keep their data")

    dec = sub.add_parser("decode", help="decode BMS frames given as hex")
    dec.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    dec.add_argument("--cell-count", type=int)
    dec.add_argument("--temp-count", type=int)
    dec.add_argument("--start-register", type=lambda v: int(v, 0))
    dec.add_argument("--request", action="store_true", help="the frame is a master's request")
    dec.add_argument(
        "--command",
        dest="answer_to",
        type=lambda v: int(v, 0),
        help="the command the answer belongs to, e.g. 66 or 0x42 (Seplos, Pace: not in the answer)",
    )
    dec.add_argument("--variant", help="the protocol's variant, as in the bus settings")
    dec.add_argument("hex", nargs="+", help="the frame(s), e.g. 'a5 01 90 08 ...'")

    sim = sub.add_parser("simulate", help="a simulated BMS on a pty or TCP")
    sim.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    sim.add_argument("--boards", type=int, default=1, help="boards on the bus (addresses 1..N)")
    sim.add_argument("--cells", type=int, default=16)
    sim.add_argument("--fault", default="none", help="wire fault to inject")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    sim.add_argument("--pace", action="store_true", help="send bytes at the baud rate")
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", help="tcp://HOST:PORT")
    where.add_argument("--pty", action="store_true", help="print the pty path to open")
    sim.add_argument("--link", help="with --pty: a symlink to the pty, removed on exit")
    sim.add_argument(
        "--master",
        type=float,
        metavar="SECONDS",
        help="jk_pb with --pty: a master (DIP 0) polls the boards every SECONDS and sends its own "
        "frame, for a reader with listen: true",
    )

    for name, (text, module) in OWN_MODULE.items():
        own = sub.add_parser(name, help=text)
        if command in (None, name):  # the others' modules (pydantic among them) not imported
            importlib.import_module(module, __package__).add_arguments(own)

    for name in SERVICES:
        sub.add_parser(name, help=f"run the {name} service (as its container does)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bmsgate`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    if argv[:1] == ["tunnel"] and argv[1:2] and argv[1] in ("open", "close", "status"):
        return cmd_tunnel(argv[1:])
    if argv and argv[0] in SERVICES:
        return cmd_service(argparse.Namespace(command=argv[0]), argv[1:])
    args = parser.parse_args(argv)
    handlers = {
        "run": cmd_run,
        "decode": cmd_decode,
        "simulate": cmd_simulate,
        "scan": cmd_scan,
        "ports": cmd_ports,
        "config": cmd_config,
        "setup": cmd_setup,
        "upgrade": cmd_upgrade,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

"""``bmsgate tunnel open|close|status PACK``: ask the tunnel service over the backbone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import re
import socket
import sys
import uuid
from collections.abc import Sequence

from pydantic import ValidationError

from bmsgate_common import topics
from bmsgate_common.models import PACK_ID_PATTERN, TunnelCommand, TunnelStatus
from bmsgate_common.mqtt import BROKER_ERRORS, Backbone
from bmsgate_common.service import USER_ERROR
from bmsgate_common.settings import ConfigError, MqttSettings, Settings, explain, load_settings

ACTIONS = ("open", "close", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``bmsgate tunnel ACTION PACK``."""
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("pack", help="a pack on the bus to tunnel to")
    parser.add_argument("--minutes", type=float, help="open: the window (default tunnel.minutes)")
    idle = parser.add_mutually_exclusive_group()
    idle.add_argument(
        "--idle-timeout", type=float, help="open: [s] without traffic (default tunnel.idle_timeout)"
    )
    idle.add_argument(
        "--no-timeout", action="store_true", help="open: no idle limit (the window still ends it)"
    )
    parser.add_argument("--config", help="YAML configuration file (default: $BMSGATE_CONFIG)")
    parser.add_argument("--wait", type=float, default=5.0, help="[s] to wait for an answer")


def backbone_settings(cfg: Settings) -> MqttSettings:
    """The broker to ask: the configured one, or the private one ``bmsgate run`` started."""
    runtime = cfg.data_dir / "run" / "config.yaml"
    if cfg.mqtt.host is None and runtime.exists():
        with contextlib.suppress(ConfigError):
            return load_settings(runtime).mqtt
    return cfg.mqtt


async def request(
    mqtt: MqttSettings, pack: str, cmd: TunnelCommand, wait: float
) -> TunnelStatus | None:
    """Send ``cmd`` for ``pack``; the status answering it, or None without an answer in time."""
    backbone = Backbone(mqtt, f"cli-{uuid.uuid4().hex[:8]}", restartable=False)
    answer: asyncio.Future[TunnelStatus] = asyncio.get_running_loop().create_future()

    async def on_status(name: str, status: TunnelStatus) -> None:
        if name == pack and status.transaction == cmd.transaction and not answer.done():
            answer.set_result(status)

    backbone.subscribe(topics.TUNNEL_STATUS, on_status, retained=False)
    try:
        async with asyncio.timeout(wait):
            await backbone.connect()
        await backbone.publish(topics.TUNNEL_COMMAND, pack, cmd)
        async with asyncio.timeout(wait):
            return await answer
    except (TimeoutError, *BROKER_ERRORS):
        return None
    finally:
        with contextlib.suppress(*BROKER_ERRORS):  # a connection that never came up or broke
            await backbone.close()


def describe(status: TunnelStatus) -> str:
    """The status in a line or two for people."""
    if not status.open:
        return f"tunnel of {status.pack} is closed (port {status.port})"
    idle = (
        "no idle limit"
        if status.idle_timeout is None
        else f"closes after {status.idle_timeout:g} s without traffic"
    )
    lines = [
        f"tunnel of {status.pack} is open on port {status.port}: "
        f"{(status.window_left or 0) / 60:.1f} min of the window left, {idle}"
    ]
    if status.client:
        lines.append(
            f"client {status.client} for {status.uptime or 0:.0f} s: "
            f"{status.tx_bytes} bytes to the BMS, {status.rx_bytes} from it, "
            f"{status.time_left or 0:.0f} s left"
        )
    else:
        lines.append("no client connected")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bmsgate tunnel open|close|status PACK``; 0 when done, 1 if refused or unanswered."""
    parser = argparse.ArgumentParser(
        prog="bmsgate tunnel", description="Open, close or show the TCP tunnel to a pack's bus."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not re.match(PACK_ID_PATTERN, args.pack):
        print(f"bmsgate tunnel: {args.pack!r} is not a pack id", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    try:
        cfg = load_settings(args.config or None)
        cmd = TunnelCommand(
            transaction=f"cli-{uuid.uuid4().hex[:12]}",
            action=args.action,
            minutes=args.minutes,
            idle_timeout=args.idle_timeout,
            no_timeout=args.no_timeout,
            requested_by=f"bmsgate tunnel, user {getpass.getuser()} on {socket.gethostname()}",
        )
    except ConfigError as err:
        print(f"bmsgate tunnel: {err}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    except ValidationError as err:
        print(f"bmsgate tunnel: {explain(err)}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    status = asyncio.run(request(backbone_settings(cfg), args.pack, cmd, args.wait))
    if status is None:
        print(  # noqa: T201
            f"bmsgate tunnel: no answer within {args.wait:g} s; is the tunnel service running "
            f"and {args.pack!r} a configured pack?",
            file=sys.stderr,
        )
        return 1
    if not status.ok:
        print(f"bmsgate tunnel: {status.error}", file=sys.stderr)  # noqa: T201
        return 1
    print(describe(status))  # noqa: T201
    return 0

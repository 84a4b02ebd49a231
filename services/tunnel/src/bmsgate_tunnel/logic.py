"""The tunnel's rules, without I/O: which bus a pack is on, windows, idle time, allow-lists."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bmsgate_common.models import TunnelCommand
from bmsgate_common.settings import Settings, TunnelSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class BusTunnel:
    """One bus as the tunnel sees it: its packs (the first names the lease) and its TCP port."""

    index: int
    packs: tuple[str, ...]
    port: int

    @property
    def lease_pack(self) -> str:
        """The pack whose raw topics carry this bus's lease."""
        return self.packs[0]


def bus_tunnels(cfg: Settings) -> list[BusTunnel]:
    """Every configured bus with its port: ``tunnel.port`` for the first, + n for bus n."""
    return [
        BusTunnel(n, tuple(p.id for p in bus.packs), cfg.tunnel.port + n)
        for n, bus in enumerate(cfg.buses)
    ]


def config_problem(cfg: Settings) -> str | None:
    """Why the tunnel service cannot run with ``cfg``, or None."""
    if not cfg.buses:
        return "no buses configured: nothing to tunnel to"
    last = cfg.tunnel.port + len(cfg.buses) - 1
    if last > 65535:
        return f"tunnel.port {cfg.tunnel.port} leaves no port for bus {len(cfg.buses) - 1}"
    return None


def networks(entries: list[str]) -> list[Network]:
    """The allow-list as networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def allowed(address: str, allow: list[Network]) -> bool:
    """Whether a client at ``address`` may connect; an empty allow-list lets everyone in."""
    if not allow:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    return any(ip.version == net.version and ip in net for net in allow)


@dataclass
class Window:
    """An open tunnel: until ``ends`` at the latest, or ``idle_timeout`` s without traffic."""

    opened: float
    ends: float
    idle_timeout: float | None  # None = no idle limit, asked for explicitly
    last_activity: float

    @classmethod
    def start(cls, cmd: TunnelCommand, cfg: TunnelSettings, now: float) -> Window:
        """The window an ``open`` command asks for, the configured defaults filling the gaps."""
        minutes = cmd.minutes if cmd.minutes is not None else cfg.minutes
        idle = None if cmd.no_timeout else (cmd.idle_timeout or cfg.idle_timeout)
        return cls(opened=now, ends=now + minutes * 60, idle_timeout=idle, last_activity=now)

    def touch(self, now: float) -> None:
        """Traffic: the idle clock starts again."""
        self.last_activity = now

    def window_left(self, now: float) -> float:
        """Seconds before the window ends."""
        return max(0.0, self.ends - now)

    def idle_left(self, now: float) -> float | None:
        """Seconds of silence left before the idle limit closes it; None without a limit."""
        if self.idle_timeout is None:
            return None
        return max(0.0, self.idle_timeout - (now - self.last_activity))

    def time_left(self, now: float) -> float:
        """Seconds before it closes by itself, whichever limit comes first."""
        idle = self.idle_left(now)
        left = self.window_left(now)
        return left if idle is None else min(left, idle)

    def expired(self, now: float) -> str | None:
        """Why the tunnel must close now, or None."""
        if self.window_left(now) <= 0:
            return "the window ended"
        if self.idle_left(now) == 0:
            return f"{self.idle_timeout:g} s without traffic"
        return None


@dataclass
class Session:
    """One client's time on the line, with what went each way."""

    client: str
    started: float  # monotonic
    started_at: datetime  # wall clock, for the log
    rx_bytes: int = 0  # from the BMS to the client
    tx_bytes: int = 0  # from the client to the BMS
    ended_at: datetime | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The session as one line of the session log."""
        end = self.ended_at or self.started_at
        return {
            "client": self.client,
            "start": self.started_at.isoformat(),
            "end": end.isoformat(),
            "seconds": round((end - self.started_at).total_seconds(), 3),
            "rx_bytes": self.rx_bytes,
            "tx_bytes": self.tx_bytes,
            "reason": self.reason,
            **self.extra,
        }


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (a RawData carries 4096)."""
    return [data[i : i + size] for i in range(0, len(data), size)]

"""The tunnel's pure rules: windows, idle time, allow-lists, ports per bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bmsgate_common.models import TunnelCommand
from bmsgate_common.settings import ConfigError, Settings, TunnelSettings, load_settings
from bmsgate_tunnel.logic import (
    Session,
    Window,
    allowed,
    bus_tunnels,
    chunks,
    config_problem,
    networks,
)


def bus(port: str, *packs: str) -> dict[str, object]:
    return {
        "port": port,
        "protocol": "daly_classic",
        "packs": [{"id": p, "address": n + 1} for n, p in enumerate(packs)],
    }


def test_each_bus_gets_the_next_port() -> None:
    cfg = Settings.model_validate({"buses": [bus("/dev/a", "a1", "a2"), bus("/dev/b", "b1")]})
    tunnels = bus_tunnels(cfg)
    assert [(t.port, t.packs, t.lease_pack) for t in tunnels] == [
        (6790, ("a1", "a2"), "a1"),
        (6791, ("b1",), "b1"),
    ]
    assert config_problem(cfg) is None
    assert config_problem(Settings()) == "no buses configured: nothing to tunnel to"
    high = cfg.model_copy(update={"tunnel": TunnelSettings(port=65535)})
    assert "no port for bus 1" in (config_problem(high) or "")


def test_defaults_are_closed_and_safe() -> None:
    cfg = TunnelSettings()
    assert (cfg.port, cfg.idle_timeout, cfg.minutes, cfg.allow) == (6790, 120.0, 15.0, [])
    with pytest.raises(ConfigError, match=r"tunnel\.allow"):
        load_settings(None, tunnel={"allow": ["not-an-address"]})
    with pytest.raises(ConfigError, match="idle_timeout"):
        load_settings(None, tunnel={"idle_timeout": None})  # no timeout only per open, explicitly


def test_window_idle_and_no_timeout() -> None:
    cfg = TunnelSettings()
    w = Window.start(TunnelCommand(transaction="t", action="open"), cfg, now=100.0)
    assert (w.window_left(100.0), w.idle_timeout, w.time_left(100.0)) == (900.0, 120.0, 120.0)
    assert w.expired(219.0) is None and w.expired(220.0) == "120 s without traffic"
    w.touch(200.0)
    assert w.time_left(250.0) == 70.0 and w.expired(319.0) is None
    endless = Window.start(
        TunnelCommand(transaction="t", action="open", minutes=1, no_timeout=True), cfg, now=0.0
    )
    assert endless.idle_timeout is None and endless.idle_left(59.0) is None
    assert endless.time_left(30.0) == 30.0
    assert endless.expired(59.9) is None and endless.expired(60.0) == "the window ended"
    short = Window.start(
        TunnelCommand(transaction="t", action="open", idle_timeout=5), cfg, now=0.0
    )
    assert short.expired(5.0) == "5 s without traffic"


def test_command_terms_are_checked() -> None:
    with pytest.raises(ValidationError):
        TunnelCommand(transaction="t", action="close", minutes=5)
    with pytest.raises(ValidationError):
        TunnelCommand(transaction="t", action="open", idle_timeout=5, no_timeout=True)
    with pytest.raises(ValidationError):
        TunnelCommand(transaction="t", action="open", minutes=0)
    with pytest.raises(ValidationError):
        TunnelCommand(transaction="t", action="open", minutes=24 * 60 + 1)


@pytest.mark.parametrize(
    ("address", "allow", "ok"),
    [
        ("192.168.1.20", [], True),
        ("192.168.1.20", ["192.168.1.0/24"], True),
        ("192.168.2.20", ["192.168.1.0/24"], False),
        ("10.0.0.5", ["10.0.0.5"], True),
        ("::ffff:10.0.0.5", ["10.0.0.5"], True),
        ("fe80::1%eth0", ["fe80::/64"], True),
        ("2001:db8::1", ["10.0.0.0/8"], False),
        ("garbage", ["10.0.0.0/8"], False),
    ],
)
def test_allow_list(address: str, allow: list[str], ok: bool) -> None:
    assert allowed(address, networks(allow)) is ok


def test_session_record_and_chunks() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    s = Session("1.2.3.4:5000", 0.0, start, rx_bytes=30, tx_bytes=13)
    s.ended_at, s.reason = start + timedelta(seconds=2.5), "the client disconnected"
    assert s.record() == {
        "client": "1.2.3.4:5000",
        "start": "2025-01-01T00:00:00+00:00",
        "end": "2025-01-01T00:00:02.500000+00:00",
        "seconds": 2.5,
        "rx_bytes": 30,
        "tx_bytes": 13,
        "reason": "the client disconnected",
    }
    assert chunks(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert chunks(b"", 3) == []

"""The services bmsgate runs: one line each; `bmsgate run`, the CLI and the API read this table.

Which service a configuration change restarts is decided here once (fingerprint): `bmsgate run`
acts on it, the web UI's Settings page tells it before and after a save.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

# every service reads these sections; a change to one restarts them all
COMMON_SECTIONS: Final = ("mqtt", "data_dir", "log_level")

Config = Mapping[str, Any]  # the effective settings as YAML data (what the services read)


def _section(cfg: Config, name: str) -> Config:
    value = cfg.get(name)
    return value if isinstance(value, Mapping) else {}


def _always(_: Config) -> str | None:
    return None


def _publisher_idle(cfg: Config) -> str | None:
    # banks are combined by the publisher and published as states (modbus, history, the notifier
    # read them); the API combines them itself
    if _section(cfg, "publisher").get("targets") or cfg.get("banks"):
        return None
    return "no publisher targets and no banks"


def _modbus_idle(cfg: Config) -> str | None:
    modbus = _section(cfg, "modbus")
    if modbus.get("enabled", True) or modbus.get("push"):
        return None
    return "modbus.enabled is false and no push targets"


def _notifier_idle(cfg: Config) -> str | None:
    # it publishes nothing but its own status: without targets its events go nowhere
    return None if _section(cfg, "notifier").get("targets") else "no notifier targets"


def _tunnel_idle(cfg: Config) -> str | None:
    # the tunnel changes a BMS: it opens only with control.enabled (the API refuses before)
    return None if _section(cfg, "control").get("enabled") else "control.enabled is false"


class Service(NamedTuple):
    """A service: its module (``python -m <module>``), once per serial bus or not, what it reads.

    ``reads`` are the configuration sections besides COMMON_SECTIONS ("*": every section);
    ``bmsgate run`` restarts a service when one of them changes; a reader reads its own bus.
    ``idle(cfg)`` says why the configuration leaves the service nothing to do (None: it has
    work); ``bmsgate run`` does not start it then. It looks only at sections in ``reads``, so a
    change that makes a service needed or idle is one that ``bmsgate run`` already acts on.
    """

    module: str
    per_bus: bool = False
    reads: tuple[str, ...] = ()
    idle: Callable[[Config], str | None] = _always
    setup: bool = False  # runs during the first setup even when idle (the setup page uses it)


SERVICES: Final[dict[str, Service]] = {
    "reader": Service("bmsgate_reader", per_bus=True, reads=("control",)),
    "api": Service("bmsgate_api", reads=("*",)),  # it shows the whole configuration
    "publisher": Service(
        "bmsgate_publisher", reads=("buses", "banks", "control", "publisher"), idle=_publisher_idle
    ),
    "modbus": Service(
        "bmsgate_modbus",
        reads=("buses", "banks", "control", "history", "modbus"),
        idle=_modbus_idle,
    ),
    "history": Service("bmsgate_history", reads=("buses", "banks", "history")),
    "notifier": Service(
        "bmsgate_notifier",
        reads=("buses", "banks", "history", "notifier"),
        idle=_notifier_idle,
        setup=True,  # the setup page's test message is sent by the notifier
    ),
    "tunnel": Service("bmsgate_tunnel", reads=("buses", "control", "tunnel"), idle=_tunnel_idle),
}


def left_out(
    runtime: Config, only: list[str] | None = None, *, setup: bool = False
) -> dict[str, str]:
    """The services (of ``only``, else all) ``runtime`` leaves idle, with the reason of each.

    ``setup``: the configuration file has no bus yet (the first setup is under way).
    """
    out = {}
    for name, service in SERVICES.items():
        if only is None or name in only:
            why = service.idle(runtime)
            if why is not None and not (setup and service.setup):
                out[name] = why
    return out


def fingerprint(runtime: Config, reads: tuple[str, ...], bus: Any = None) -> str:
    """What of ``runtime`` a service reads, as text: equal text, no restart needed."""
    keys = sorted(runtime) if "*" in reads else [*COMMON_SECTIONS, *reads]
    seen = {k: runtime.get(k) for k in keys}
    if bus is not None:
        seen["bus"] = bus
    return json.dumps(seen, sort_keys=True, default=str)


def instances(runtime: Config) -> dict[str, str]:
    """Every service instance the configuration runs (``reader-0``, ``api``...) -> fingerprint.

    Services the configuration leaves idle are not among them (see left_out).
    """
    idle = left_out(runtime)
    out: dict[str, str] = {}
    for name, service in SERVICES.items():
        if name in idle:
            continue
        if service.per_bus:
            for i, bus in enumerate(runtime.get("buses") or []):
                out[f"{name}-{i}"] = fingerprint(runtime, service.reads, bus)
        else:
            out[name] = fingerprint(runtime, service.reads)
    return out


def restarts(before: Config, after: Config) -> tuple[list[str], list[str], list[str]]:
    """What changing the configuration from ``before`` to ``after`` does to the services.

    Returns (restarted, started, stopped) instance names, each in table order.
    """
    old, new = instances(before), instances(after)
    restarted = [n for n in new if n in old and old[n] != new[n]]
    return restarted, [n for n in new if n not in old], [n for n in old if n not in new]

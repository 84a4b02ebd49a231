"""Who may publish and subscribe what on the backbone: one table, and the broker's ACL made from it.

Each service's user may publish exactly the topics of ``topics.py`` it publishes and read exactly
those it subscribes to (a test compares this table with the services' code). Mosquitto's ACL
(``deploy/mosquitto/acl`` and the private broker of ``bmsgate run``) is rendered from it, so the
two cannot drift. A ``+`` grants every pack, bus or client: MQTT wildcards cannot say "only my
packs". Where the configuration is known (``bmsgate run``, and the compose stack's ACL rendered
from deploy/bmsgate.yaml by ``scripts/export_acl.py --config``), the publisher's bank states are
granted per bank instead; the compose stack's ACL also has a user per reader (``reader-<bus>``)
that may publish and read only its own bus's packs and bus topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from . import topics
from .topics import DEFAULT_BASE, TopicSpec

if TYPE_CHECKING:
    from .settings import Settings

Right = Literal["read", "write", "readwrite"]


@dataclass(frozen=True)
class Use:
    """One topic of the table used by a service, for one name (``+``: every name)."""

    spec: TopicSpec[Any]
    name: str = "+"
    banks_only: bool = False  # the publisher's bank states: per bank when the banks are known


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's broker user publishes and subscribes to.

    Every service also writes (and, for its container healthcheck, reads) its own status
    ``service/<status>/status``, reads the restart requests and the requests for its log lines,
    and answers the latter (bmsgate_common.mqtt.Backbone).
    """

    publishes: tuple[Use, ...]
    subscribes: tuple[Use, ...]
    status: str  # the service name in its status topic; "+" for readers (reader-<bus>)
    # topics outside the backbone's table, from the root ({base}: the base): (right, topic, why)
    extra: tuple[tuple[Right, str, str], ...] = ()


def _uses(*specs: TopicSpec[Any]) -> tuple[Use, ...]:
    return tuple(Use(spec) for spec in specs)


T = topics
HISTORY_CLIENT: Final = "api"  # the API's name in history/<client>/request (its only client)

SERVICES: Final[dict[str, ServiceAccess]] = {
    "reader": ServiceAccess(
        publishes=_uses(
            T.STATE,
            T.AVAILABILITY,
            T.ALARM,
            T.RESULT,
            T.SETTINGS,
            T.RAW_LEASE_STATE,
            T.RAW_RX,
            T.SNIFF,
            T.SNIFF_STATE,
        ),
        # STATE: its own packs' retained states, read once at start (the counters go on)
        subscribes=_uses(T.COMMAND, T.RAW_LEASE, T.RAW_TX, T.SNIFF_SET, T.STATE),
        status="+",
    ),
    "api": ServiceAccess(
        publishes=(
            *_uses(
                T.COMMAND,
                T.RAW_LEASE,
                T.RAW_TX,
                T.SNIFF_SET,
                T.SERVICE_RESTART,
                T.SERVICE_LOGS,
                T.TUNNEL_COMMAND,
            ),
            Use(T.HISTORY_REQUEST, HISTORY_CLIENT),
            Use(T.HISTORY_FILES, HISTORY_CLIENT),
            Use(T.NOTIFY_TEST, HISTORY_CLIENT),
        ),
        subscribes=(
            *_uses(
                T.STATE,
                T.AVAILABILITY,
                T.ALARM,
                T.RESULT,
                T.SETTINGS,
                T.DAILY,
                T.HEALTH,
                T.SERVICE_STATUS,
                T.TUNNEL_STATUS,
                T.RAW_LEASE_STATE,
                T.RAW_RX,
                T.SNIFF,
                T.SNIFF_STATE,
                T.SERVICE_LOG_LINES,
            ),
            Use(T.HISTORY_REPLY, HISTORY_CLIENT),
            Use(T.HISTORY_FILES_REPLY, HISTORY_CLIENT),
            Use(T.NOTIFY_TEST_RESULT, HISTORY_CLIENT),
        ),
        status="api",
    ),
    "publisher": ServiceAccess(
        publishes=(
            Use(T.STATE, banks_only=True),
            Use(T.AVAILABILITY, banks_only=True),
            Use(T.COMMAND),  # a target's switch (Home Assistant) becomes a backbone command
        ),
        subscribes=_uses(T.STATE, T.AVAILABILITY, T.DAILY, T.RESULT, T.SETTINGS),
        status="publisher",
        extra=(
            ("readwrite", "homeassistant/#", "a target on the backbone broker: HA discovery"),
            ("readwrite", "{base}/out/#", "a target on the backbone broker: values"),
        ),
    ),
    "modbus": ServiceAccess(
        publishes=_uses(T.COMMAND),
        subscribes=_uses(T.STATE, T.AVAILABILITY, T.DAILY, T.RESULT),
        status="modbus",
    ),
    "history": ServiceAccess(
        publishes=_uses(T.DAILY, T.HEALTH, T.HISTORY_REPLY, T.HISTORY_FILES_REPLY),
        subscribes=_uses(T.STATE, T.AVAILABILITY, T.HISTORY_REQUEST, T.HISTORY_FILES),
        status="history",
    ),
    "notifier": ServiceAccess(
        publishes=_uses(T.NOTIFY_TEST_RESULT),
        subscribes=_uses(
            T.STATE, T.AVAILABILITY, T.ALARM, T.DAILY, T.HEALTH, T.SERVICE_STATUS, T.NOTIFY_TEST
        ),
        status="notifier",
    ),
    "tunnel": ServiceAccess(
        publishes=_uses(T.RAW_LEASE, T.RAW_TX, T.TUNNEL_STATUS),
        subscribes=_uses(T.TUNNEL_COMMAND, T.RAW_LEASE_STATE, T.RAW_RX),
        status="tunnel",
    ),
}

# people and other programs: (right, topic from the root, {base}: the base)
PEOPLE: Final[dict[str, tuple[tuple[Right, str], ...]]] = {
    # `bmsgate tunnel open`, `bmsgate run` itself (retained messages of removed packs), debugging
    "admin": (("readwrite", "{base}/#"), ("read", "$SYS/#"), ("read", "homeassistant/#")),
    # a user's own tools (mosquitto_sub, Node-RED, a dashboard): everything, read only
    "viewer": (("read", "{base}/#"), ("read", "homeassistant/#")),
    # Home Assistant's MQTT integration: discovery, values and its switches (docs/publisher.md)
    "homeassistant": (("readwrite", "homeassistant/#"), ("readwrite", "{base}/out/#")),
}


def _own(status: str, base: str) -> list[tuple[Right, str]]:
    """What every service's Backbone uses: its status, restart requests, its log lines."""
    return [
        ("readwrite", topics.SERVICE_STATUS.topic(status, base)),
        ("read", topics.SERVICE_RESTART.subscription(base)),
        ("read", topics.SERVICE_LOGS.topic(status, base)),
        ("write", topics.SERVICE_LOG_LINES.topic(status, base)),
    ]


def grants(
    service: str, base: str = DEFAULT_BASE, banks: Sequence[str] | None = None
) -> list[tuple[Right, str]]:
    """The (right, topic filter) lines of one service's user; ``banks`` known: per bank."""
    access = SERVICES[service]
    out: list[tuple[Right, str]] = []
    for right, uses in (("write", access.publishes), ("read", access.subscribes)):
        for use in uses:
            names = list(banks) if use.banks_only and banks is not None else [use.name]
            out += [(right, use.spec.topic(name, base)) for name in names]  # type: ignore[misc]
    out += _own(access.status, base)
    out += [(right, where.format(base=base)) for right, where, _ in access.extra]
    return out


def reader_grants(
    bus: int, packs: Sequence[str], base: str = DEFAULT_BASE
) -> list[tuple[Right, str]]:
    """The lines of the user ``reader-<bus>``: only its ``packs``' and its bus's topics.

    Its subscriptions are filters over every pack (``bms/+/set``): Mosquitto grants such a
    subscription and then delivers only the topics the ACL lets the user read.
    """
    access = SERVICES["reader"]
    name = f"reader-{bus}"  # the reader's service name, also its bus name in bus/<name>/...
    out: list[tuple[Right, str]] = []
    for right, uses in (("write", access.publishes), ("read", access.subscribes)):
        for use in uses:
            names = list(packs) if use.spec.pattern.startswith("bms/") else [name]
            out += [(right, use.spec.topic(each, base)) for each in names]  # type: ignore[misc]
    return out + _own(name, base)


def render_acl(
    base: str = DEFAULT_BASE,
    banks: Sequence[str] | None = None,
    buses: Sequence[Sequence[str]] | None = None,
) -> str:
    """Mosquitto's acl_file: one ``user`` block per service and per people's user.

    ``buses`` (each bus's pack ids) known: a user per reader instead of the shared ``reader``.
    """
    lines = [
        "# Generated from packages/common/src/bmsgate_common/access.py (do not edit: a test",
        "# regenerates it). Who may publish (write) and subscribe (read) what; anything not",
        "# granted is denied. A `+` grants every pack, bus or client.",
    ]
    for service in SERVICES:
        if service == "reader" and buses is not None:
            for bus, packs in enumerate(buses):
                lines += ["", f"user reader-{bus}"]
                own = reader_grants(bus, packs, base)
                lines += [f"topic {right} {where}" for right, where in own]
            continue
        lines += ["", f"user {service}"]
        lines += [f"topic {right} {where}" for right, where in grants(service, base, banks)]
    for user, rules in PEOPLE.items():
        lines += ["", f"user {user}"]
        lines += [f"topic {right} {where.format(base=base)}" for right, where in rules]
    lines += [
        "",
        "# the broker container's healthcheck",
        "user health",
        "topic read $SYS/broker/uptime",
    ]
    return "\n".join(lines) + "\n"


def render_acl_for(cfg: Settings) -> str:
    """The ACL of a deployment whose configuration is ``cfg``: its banks, a user per reader."""
    buses = [[pack.id for pack in bus.packs] for bus in cfg.buses]
    return render_acl(cfg.mqtt.base_topic, [bank.id for bank in cfg.banks], buses)

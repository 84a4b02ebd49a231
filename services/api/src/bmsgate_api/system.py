"""The System page's view: every service's state, each output's connection, storage.

Built from what the services publish on the backbone (their retained status, with counters in
``detail``) and from the configuration (which services should run, which outputs exist). Pure:
the route passes the statuses, the settings and the time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from bmsgate_common.config_file import revealed
from bmsgate_common.models import ServiceStatus
from bmsgate_common.service_table import SERVICES, instances, left_out
from bmsgate_common.settings import Settings

ServiceState = Literal["running", "not responding", "restarting", "stopped", "not started"]
LinkState = Literal["connected", "down", "unknown", "off"]
MISSED_BEATS = 3  # statuses missed before a service counts as not responding
RESTART_GRACE = 60.0  # [s] after a restart was asked for, an offline service is restarting


class ServiceView(BaseModel):
    """One service instance (``reader-0``, ``api``...)."""

    name: str
    state: ServiceState
    why: str = Field(description="what the state means here, in words")
    version: str | None = None
    started: datetime | None = None
    uptime: float | None = Field(default=None, description="[s]")
    last_heard: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class OutputView(BaseModel):
    """One place data goes: the backbone, an MQTT target, InfluxDB, Modbus, a notifier target."""

    kind: str
    name: str
    state: LinkState
    facts: dict[str, Any] = Field(default_factory=dict, description="figures, by label")


class StorageView(BaseModel):
    """The archive's size and the disk it is on, as the history service reports them."""

    archive_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    disk_write_rate: float | None = Field(default=None, description="[B/s] over the last hour")
    reported: datetime | None = None


class SystemView(BaseModel):
    """GET /api/system."""

    version: str
    install: str
    services: list[ServiceView]
    outputs: list[OutputView]
    storage: StorageView | None = Field(description="null: no word from the history service")


def _age(now: datetime, then: datetime | None) -> float | None:
    return (now - then).total_seconds() if then is not None else None


def service_view(
    name: str,
    status: ServiceStatus | None,
    *,
    heartbeat: float,
    now: datetime,
    idle: str | None,
    restart_asked: datetime | None,
) -> ServiceView:
    """What one service's last status says about it now."""
    # `bmsgate run` leaves an idle service unstarted; a container runs it anyway, and then its
    # status says so (it idles, answers for its log and for a restart)
    if idle is not None and (status is None or status.state != "online"):
        return ServiceView(name=name, state="not started", why=f"nothing to do: {idle}")
    asked = _age(now, restart_asked)
    restarting = asked is not None and asked < RESTART_GRACE
    if status is None:
        if restarting:
            return ServiceView(name=name, state="restarting", why="a restart was asked for")
        return ServiceView(
            name=name, state="stopped", why="never heard on the backbone since the API started"
        )
    common: dict[str, Any] = {
        "name": name,
        "version": status.version,
        "last_heard": status.ts,
        "detail": dict(status.detail),
    }
    if status.state == "online":
        age = _age(now, status.ts) or 0.0
        uptime = _age(now, status.started)
        common |= {"started": status.started, "uptime": uptime}
        if age > MISSED_BEATS * heartbeat:
            why = f"no status for {age:.0f} s (it reports every {heartbeat:g} s): hung or cut off"
            return ServiceView(state="not responding", why=why, **common)
        why = "reporting" if idle is None else f"reporting, with nothing to do: {idle}"
        return ServiceView(state="running", why=why, **common)
    left = status.detail.get("left_out")
    if left:
        return ServiceView(state="not started", why=f"nothing to do: {left}", **common)
    if restarting:
        return ServiceView(state="restarting", why="a restart was asked for", **common)
    if status.ts is None:
        why = "its connection broke off (crashed, killed, or the broker lost it)"
        return ServiceView(state="stopped", why=why, **common)
    return ServiceView(state="stopped", why="stopped cleanly", **common)


def services_view(
    cfg: Settings,
    statuses: dict[str, ServiceStatus],
    now: datetime,
    restarts_asked: dict[str, datetime],
) -> list[ServiceView]:
    """Every service the configuration runs or leaves out, then any other one heard."""
    runtime = revealed(cfg)
    idle = left_out(runtime)
    names = [*instances(runtime), *(n for n in SERVICES if n in idle)]
    names += sorted(n for n in statuses if n not in names)
    every = restarts_asked.get("all")
    out = []
    for name in names:
        asked = [t for t in (restarts_asked.get(name), every) if t is not None]
        out.append(
            service_view(
                name,
                statuses.get(name),
                heartbeat=cfg.mqtt.heartbeat,
                now=now,
                idle=idle.get(name),
                restart_asked=max(asked) if asked else None,
            )
        )
    return out


def _broker(host: str | None, port: int | None, tls: bool) -> str:
    return f"{host or 'the backbone broker'}:{port or (8883 if tls else 1883)}"


def _link(up: Any, running: bool) -> LinkState:
    if not running or up is None:
        return "unknown"
    return "connected" if up else "down"


def outputs_view(
    cfg: Settings, statuses: dict[str, ServiceStatus], backbone: bool
) -> list[OutputView]:
    """Each output's connection, from the counters its service reports."""

    def detail(service: str) -> tuple[dict[str, Any], bool]:
        status = statuses.get(service)
        online = status is not None and status.state == "online"
        return (dict(status.detail) if status else {}), online

    host = cfg.mqtt.host or "the private broker of bmsgate run"
    out = [
        OutputView(
            kind="Backbone",
            name=f"{host}:{cfg.mqtt.port}" if cfg.mqtt.host else host,
            state="connected" if backbone else "down",
            facts={"base topic": cfg.mqtt.base_topic},
        )
    ]
    pub, pub_on = detail("publisher")
    for target in cfg.publisher.targets:
        n = target.name
        out.append(
            OutputView(
                kind="MQTT target",
                name=n,
                state=_link(pub.get(f"{n}_connected"), pub_on),
                facts={
                    "broker": _broker(target.host, target.port, target.tls),
                    "sent": pub.get(f"{n}_sent"),
                    "dropped": pub.get(f"{n}_dropped"),
                    # a broker slower than the packs gets each one's newest value only
                    "replaced by newer": pub.get(f"{n}_replaced"),
                    "Home Assistant": "on" if target.homeassistant.enabled else "off",
                }
                # why it is down (a refused login, a certificate), only while it is
                | ({"error": error} if (error := pub.get(f"{n}_error")) else {}),
            )
        )
    hist, hist_on = detail("history")
    influx = cfg.history.influx
    if influx.enabled:
        out.append(
            OutputView(
                kind="InfluxDB",
                name=influx.url,
                state=_link(hist.get("influx_up"), hist_on),
                facts={
                    "backlog (points)": hist.get("influx_buffered"),
                    "written": hist.get("influx_written"),
                    "rejected": hist.get("influx_rejected"),
                    "overflow": hist.get("influx_overflow"),
                },
            )
        )
    mod, mod_on = detail("modbus")
    if cfg.modbus.enabled:
        out.append(
            OutputView(
                kind="Modbus TCP server",
                name=f"{cfg.modbus.host}:{cfg.modbus.port}",
                # serving while the service runs; not running, unknown as every output (docs/web.md)
                state="connected" if mod_on else "unknown",
                facts={
                    "clients connected": mod.get("clients"),
                    "requests": mod.get("requests"),
                    "refused": mod.get("refused"),
                },
            )
        )
    for i, push in enumerate(cfg.modbus.push):
        out.append(
            OutputView(
                kind="Modbus push",
                name=f"{push.host}:{push.port}",
                state=_link(mod.get(f"push{i}_up"), mod_on),
                facts={
                    "writes": mod.get(f"push{i}_writes"),
                    "failures": mod.get(f"push{i}_failures"),
                },
            )
        )
    note, note_on = detail("notifier")
    for nt in cfg.notifier.targets:
        n = nt.name
        failed, sent = note.get(f"{n}_last_failed"), note.get(f"{n}_last_sent")
        # nothing tried yet says nothing about the target: unknown, not connected
        tried = note_on and (sent or failed)
        ok: bool | None = not (failed and (not sent or failed > sent)) if tried else None
        out.append(
            OutputView(
                kind="Notifications",
                name=n,
                state=_link(ok, note_on),
                facts={
                    "last sent": sent,
                    "last failure": failed,
                    "sent": note.get(f"{n}_sent"),
                    "failures": note.get(f"{n}_failures"),
                    "waiting": note.get(f"{n}_waiting"),
                },
            )
        )
    return out


def storage_view(statuses: dict[str, ServiceStatus]) -> StorageView | None:
    """The history service's storage figures, None before it has reported them."""
    status = statuses.get("history")
    if status is None or "archive_bytes" not in status.detail:
        return None
    d = status.detail
    return StorageView(
        archive_bytes=d.get("archive_bytes"),
        disk_free_bytes=d.get("disk_free_bytes"),
        disk_total_bytes=d.get("disk_total_bytes"),
        disk_write_rate=d.get("disk_write_rate"),
        reported=status.ts,
    )

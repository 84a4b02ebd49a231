"""The first-run setup page's API: ports, BMS scan with progress, test message, time zone, write.

The configuration is built by bmsgate_common.first_run (shared with ``bmsgate setup``) and
validated and written by bmsgate_common.config_file; ``bmsgate run`` applies the new file at once.
Everything but the status needs a login: the first visit sets the password before the setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from bmsgate_bms.discovery import (
    DEFAULT_TIMEOUT,
    Found,
    holders,
    plan_probes,
)
from bmsgate_common import topics
from bmsgate_common.config_file import masked, merge, read_raw, save
from bmsgate_common.first_run import SetupAnswers, build_config
from bmsgate_common.models import NotifyTest, NotifyTestResult, SerialPort
from bmsgate_common.settings import ConfigError
from bmsgate_common.timezones import find_zone, zone_name
from bmsgate_serial.scan import scan, serial_ports

from ..deps import Ctx, Reader, User, ask, audit, limited_to, logged_in
from ..live import CLIENT
from .settings import config_file, file_needs_setup

router = APIRouter(prefix="/api/setup", tags=["setup"])
TEST_TIMEOUT = 25.0  # [s] for the test message: the notifier gives up sending after 20 s


class SetupStatus(BaseModel):
    """Whether the first-run setup is due, and where it writes."""

    needed: bool = Field(description="no configuration file yet, or no bus in it")
    config_file: str | None = Field(
        description="the file the setup writes; null: none given, or not logged in"
    )


class PortView(BaseModel):
    """A serial port for the picker."""

    device: str
    by_id: str | None
    description: str
    vid_pid: str | None
    serial_number: str | None
    held_by: list[str] = Field(description="processes that have it open; never scanned then")
    reader: str | None = Field(description="the configured bus that owns it, e.g. 'bus 0'")


class ScanRequest(BaseModel):
    """Scan one port for every protocol (or only those given)."""

    port: SerialPort = Field(min_length=1, max_length=300)
    protocols: list[str] | None = None
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=5, description="[s] per probe")


@dataclass
class ScanJob:
    """The one scan that may run at a time, and what it found so far."""

    port: str
    total: int
    done: int = 0
    found: list[dict[str, Any]] = field(default_factory=list)
    running: bool = True
    error: str | None = None
    task: asyncio.Task[None] | None = None


class NotifyTestBody(BaseModel):
    """Where a test message goes: the Apprise URL being saved, or a configured target's name."""

    url: str | None = Field(default=None, min_length=3, max_length=2000)
    target: str | None = Field(default=None, max_length=64)


def _real(path: str) -> str:
    return os.path.realpath(path)


def _bus_of(ctx: Ctx, port: str) -> str | None:
    """Which configured bus uses ``port`` (its reader may hold it), if any."""
    for i, bus in enumerate(ctx.settings.buses):
        if _real(bus.port) == _real(port):
            return f"bus {i}"
    return None


@router.get("/status")
async def status(request: Request, ctx: Ctx) -> SetupStatus:
    """Whether the setup is due (no file, or no bus in it); the file's path only after a login."""
    path = config_file(ctx)
    owner = logged_in(request, ctx) and limited_to(request, ctx) is None  # no pack-limited token
    shown = str(path) if path and owner else None
    return SetupStatus(needed=file_needs_setup(path), config_file=shown)


@router.get("/ports", dependencies=[User])
async def ports(ctx: Ctx) -> list[PortView]:
    """The machine's serial ports with their stable names and who holds them."""
    found = await asyncio.to_thread(serial_ports)
    views = [PortView(**asdict(p), reader=_bus_of(ctx, p.device)) for p in found]
    listed = {_real(p.device) for p in found}
    for i, bus in enumerate(ctx.settings.buses):  # configured ports pyserial does not list (ptys)
        if _real(bus.port) not in listed and not bus.port.startswith("socket://"):
            listed.add(_real(bus.port))
            views.append(
                PortView(
                    device=bus.port,
                    by_id=None,
                    description="configured bus",
                    vid_pid=None,
                    serial_number=None,
                    held_by=[],
                    reader=f"bus {i}",
                )
            )
    return views


def _job(request: Request) -> ScanJob | None:
    job: ScanJob | None = getattr(request.app.state, "setup_scan", None)
    return job


@router.post("/scan", status_code=202, dependencies=[User])
async def start_scan(body: ScanRequest, request: Request, ctx: Ctx) -> dict[str, Any]:
    """Start scanning ``port``; GET /api/setup/scan shows the progress and what answered."""
    running = _job(request)
    if running is not None and running.running:
        raise HTTPException(status_code=409, detail=f"a scan of {running.port} is running")
    bus = _bus_of(ctx, body.port)
    if bus is not None:
        raise HTTPException(
            status_code=409, detail=f"{body.port} belongs to {bus}: its reader polls it"
        )
    held = await asyncio.to_thread(_readers_holding, body.port)
    if held:
        raise HTTPException(status_code=409, detail=f"{body.port} is polled by reader {held[0]}")
    try:
        probes = plan_probes(body.protocols)
    except ValueError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    job = ScanJob(port=body.port, total=len(probes))
    request.app.state.setup_scan = job

    def on_found(found: Found) -> None:
        job.found.append(found.as_dict())

    def on_probe(_: object) -> None:
        job.done += 1

    async def work() -> None:
        try:
            await scan(body.port, probes, body.timeout, on_found=on_found, on_probe=on_probe)
        except OSError as err:
            job.error = f"{body.port}: {err}".splitlines()[0]
        finally:
            job.running = False
            job.done = job.total

    job.task = asyncio.create_task(work())
    return {"port": job.port, "total": job.total}


def _readers_holding(port: str) -> list[str]:
    """The readers of bmsgate that have ``port`` open, though no configured bus names it.

    Other holders are shown in the port list but do not stop a scan: a simulator serving a
    pseudo-terminal holds its own port, and a stuck program is for the user to judge.
    """
    found = []
    for holder in holders(_real(port)):
        pid = holder.split()[0]
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"bmsgate_reader" in cmdline or b"bmsgate\x00reader" in cmdline:
            found.append(holder)
    return found


@router.get("/scan", dependencies=[User])
async def scan_progress(request: Request) -> dict[str, Any]:
    """The running or last scan: probes done of total, the BMS found, an error."""
    job = _job(request)
    if job is None:
        raise HTTPException(status_code=404, detail="no scan has run")
    # fmt: off
    return {
        "port": job.port, "total": job.total, "done": job.done, "found": job.found,
        "running": job.running, "error": job.error,
    }
    # fmt: on


@router.delete("/scan", status_code=204, dependencies=[User])
async def stop_scan(request: Request) -> None:
    """Stop the running scan."""
    job = _job(request)
    if job is not None and job.task is not None and job.running:
        job.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job.task


@router.post(
    "/notify-test",
    dependencies=[User],
    responses={400: {}, 502: {"description": "failed"}, 503: {}, 504: {}},
)
async def notify_test(body: NotifyTestBody, ctx: Ctx) -> dict[str, str]:
    """Send a test message through the notifier: to a configured target or the URL being saved.

    The answer is ``sent`` or ``failed`` (502), never why: the test is no probe of what the
    gateway can reach. The notifier service sends it; the API holds no notification code.
    """
    status = ctx.store.services.get("notifier")
    if status is None or status.state != "online":
        raise HTTPException(
            status_code=503,
            detail="the notifier service is not running (it runs with a notifier target)",
        )
    outcome: NotifyTestResult = await ask(
        ctx,
        topics.NOTIFY_TEST,
        CLIENT,
        lambda t: NotifyTest(transaction=t, target=body.target, url=body.url),
        seconds=TEST_TIMEOUT,
        silent="the notifier did not answer",
        prefix="notify",
    )
    if outcome.result == "refused":
        raise HTTPException(status_code=400, detail=outcome.error or "refused")
    if outcome.result == "failed":
        raise HTTPException(status_code=502, detail="failed")
    return {"result": "sent"}


@router.get("/timezone", dependencies=[Reader])
async def timezone(
    latitude: float = Query(ge=-90, le=90), longitude: float = Query(ge=-180, le=180)
) -> dict[str, str]:
    """The time zone at these coordinates, found offline."""
    zone = await asyncio.to_thread(find_zone, latitude, longitude)
    return {"timezone": zone_name(zone)}


@router.post("/apply", dependencies=[User])
async def apply(
    body: SetupAnswers, request: Request, ctx: Ctx, replace: bool = Query(default=False)
) -> dict[str, Any]:
    """Write the configuration for these answers (validated) and show it, secrets masked.

    The existing file's other settings are kept; its buses, banks and chosen outputs are
    replaced. A file that already has buses is replaced only with ``replace=true``.
    """
    path = config_file(ctx)
    if path is None:
        raise HTTPException(status_code=409, detail="no configuration file was given (--config)")
    try:
        stored = read_raw(path)
        if stored.get("buses") and not replace:
            raise HTTPException(
                status_code=409, detail=f"{path} already has buses: edit it in Settings"
            )
        # the old banks name the old buses' packs: replaced too, even by none
        data = merge({k: v for k, v in stored.items() if k != "banks"}, build_config(body))
        await asyncio.to_thread(save, path, data)
        audit(request, ctx, f"setup wrote {path}")
    except (ConfigError, OSError) as err:
        raise HTTPException(status_code=400, detail=str(err).splitlines()[0]) from None
    text = yaml.safe_dump(masked(data), sort_keys=False, allow_unicode=True)
    packs = [p["id"] for bus in data["buses"] for p in bus["packs"]]
    return {"config_file": str(path), "yaml": text, "packs": packs}

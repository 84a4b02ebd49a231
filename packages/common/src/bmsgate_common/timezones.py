"""The one time zone of a site: every local day, clock and timestamp of bmsgate is in it.

The zone is the top-level ``timezone`` setting when given, else the zone at the coordinates
(``notifier.latitude``/``longitude``, found offline with tzfpy), else the machine's. History days,
CSV rows, daily statistics, Modbus registers 41/42/52, the dongle's ``ts``, the notifier's reports
and quiet hours, and the web UI's times all use :func:`site_zone`.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator
from tzfpy import get_tz

if TYPE_CHECKING:
    from .settings import Settings


def machine_zone() -> tzinfo:
    """The machine's time zone with its DST rules ($TZ, /etc/timezone, /etc/localtime), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    with contextlib.suppress(OSError):
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC


def known_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows; ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


ZoneName = Annotated[str, AfterValidator(known_zone)]


@lru_cache(maxsize=8)  # tzfpy's lookup once per configuration
def find_zone(
    latitude: float | None, longitude: float | None, configured: str | None = None
) -> tzinfo:
    """The configured zone, else the one at the coordinates (offline), else the machine's."""
    if configured:
        return ZoneInfo(configured)
    if latitude is not None and longitude is not None:
        name = get_tz(longitude, latitude)  # tzfpy takes longitude first
        if name:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                return ZoneInfo(name)
    return machine_zone()


def site_zone(cfg: Settings) -> tzinfo:
    """The zone of this installation (see the module's text for where it comes from)."""
    return find_zone(cfg.notifier.latitude, cfg.notifier.longitude, cfg.timezone)


def zone_name(tz: tzinfo) -> str:
    """The IANA name of ``tz`` ("Europe/Berlin"), else its abbreviation now ("UTC")."""
    return str(getattr(tz, "key", None) or datetime.now(tz).tzname() or "UTC")

"""Sunrise and sunset for the configured coordinates (offline), and an optional forecast.

The coordinates are the notifier's (``notifier.latitude``/``longitude``), the zone the site's
(bmsgate_common.timezones). The forecast comes from an Open-Meteo compatible
API (open-meteo.com, ``/v1/forecast``), fetched in the background with a short timeout and kept;
when the internet is not reachable there is simply no forecast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final, Literal

from astral import Observer
from astral.sun import elevation, sunrise, sunset
from pydantic import BaseModel, Field

from bmsgate_common.settings import Settings
from bmsgate_common.timezones import site_zone, zone_name

log = logging.getLogger(__name__)

FETCH_TIMEOUT: Final = 4.0  # [s] one forecast request; the pages never wait for it
KEEP_FOR: Final = 6 * 3600.0  # [s] a forecast older than this is not shown
RETRY_AFTER: Final = 300.0  # [s] after a failed fetch
MAX_BYTES: Final = 256 * 1024

# WMO weather interpretation codes as Open-Meteo documents them (open-meteo.com/en/docs)
# fmt: off
WMO: Final[dict[int, str]] = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast",
    45: "fog", 48: "rime fog", 51: "light drizzle", 53: "drizzle", 55: "dense drizzle",
    56: "freezing drizzle", 57: "dense freezing drizzle", 61: "light rain", 63: "rain",
    65: "heavy rain", 66: "freezing rain", 67: "heavy freezing rain", 71: "light snow",
    73: "snow", 75: "heavy snow", 77: "snow grains", 80: "light showers", 81: "showers",
    82: "violent showers", 85: "snow showers", 86: "heavy snow showers", 95: "thunderstorm",
    96: "thunderstorm with hail", 99: "thunderstorm with heavy hail",
}
# fmt: on


class ForecastDay(BaseModel):
    """One day of the forecast."""

    day: date
    weather: str | None = None
    t_min: float | None = Field(default=None, description="[°C]")
    t_max: float | None = Field(default=None, description="[°C]")
    rain_chance: float | None = Field(default=None, description="[%] highest of the day")


class Forecast(BaseModel):
    """The weather now and the next days."""

    source: str = Field(description="host the forecast came from")
    fetched: datetime
    temperature: float | None = Field(default=None, description="[°C] now")
    weather: str | None = Field(default=None, description="now, in words")
    wind: float | None = Field(default=None, description="[km/h] now")
    days: list[ForecastDay] = Field(default_factory=list)


class Sky(BaseModel):
    """What the Status page shows of the sky; everything null without coordinates."""

    latitude: float | None = None
    longitude: float | None = None
    timezone: str | None = None
    sunrise: datetime | None = None
    sunset: datetime | None = None
    polar: Literal["day", "night"] | None = Field(
        default=None, description="the sun neither rises nor sets today"
    )
    weather: bool = Field(default=False, description="a forecast is configured (api.weather)")
    forecast: Forecast | None = Field(default=None, description="null until fetched, or offline")


def coordinates(cfg: Settings) -> tuple[float, float] | None:
    """The configured coordinates (notifier.latitude/longitude), if both are set."""
    n = cfg.notifier
    return None if n.latitude is None or n.longitude is None else (n.latitude, n.longitude)


def sun_times(
    day: date, latitude: float, longitude: float, tz: tzinfo
) -> tuple[datetime | None, datetime | None, Literal["day", "night"] | None]:
    """Sunrise and sunset of the local ``day``; in polar day or night both None and which one."""
    observer = Observer(latitude=latitude, longitude=longitude)
    try:
        return sunrise(observer, day, tzinfo=tz), sunset(observer, day, tzinfo=tz), None
    except ValueError:  # astral: "the sun is always above/below the horizon" that day
        noon = datetime.combine(day, datetime.min.time(), tz) + timedelta(hours=12)
        return None, None, "day" if elevation(observer, noon) > 0 else "night"


def forecast_url(base: str, latitude: float, longitude: float) -> str:
    """The Open-Meteo request: current weather and three days, in the place's own time zone."""
    query = {
        "latitude": f"{latitude:.4f}",
        "longitude": f"{longitude:.4f}",
        "current": "temperature_2m,weather_code,wind_speed_10m",
        "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max",
        "timezone": "auto",
        "forecast_days": "3",
    }
    return f"{base}?{urllib.parse.urlencode(query)}"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _words(code: Any) -> str | None:
    return WMO.get(int(code)) if _num(code) is not None else None


def parse_forecast(data: Any, source: str, fetched: datetime) -> Forecast:
    """A Forecast from an Open-Meteo answer; missing or odd values become null."""
    if not isinstance(data, dict):
        raise ValueError("the forecast is not a JSON object")
    now = _mapping(data.get("current"))
    daily = _mapping(data.get("daily"))

    def column(name: str) -> list[Any]:
        values = daily.get(name)
        return values if isinstance(values, list) else []

    days = []
    for i, text in enumerate(column("time")):
        try:
            day = date.fromisoformat(str(text))
        except ValueError:
            continue

        def at(name: str, i: int = i) -> Any:
            values = column(name)
            return values[i] if i < len(values) else None

        days.append(
            ForecastDay(
                day=day,
                weather=_words(at("weather_code")),
                t_min=_num(at("temperature_2m_min")),
                t_max=_num(at("temperature_2m_max")),
                rain_chance=_num(at("precipitation_probability_max")),
            )
        )
    return Forecast(
        source=source,
        fetched=fetched,
        temperature=_num(now.get("temperature_2m")),
        weather=_words(now.get("weather_code")),
        wind=_num(now.get("wind_speed_10m")),
        days=days,
    )


def fetch_json(url: str, timeout: float = FETCH_TIMEOUT) -> Any:
    """GET ``url`` and parse its JSON (blocking: run it in a thread)."""
    request = urllib.request.Request(url, headers={"User-Agent": "bmsgate"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # http(s): settings
        return json.loads(answer.read(MAX_BYTES))


@dataclass
class Weather:
    """The last good forecast, refreshed in the background when it is due; never waited for."""

    url: str | None  # None: no forecast (off, or no coordinates)
    refresh: float  # [s]
    source: str = ""
    forecast: Forecast | None = None
    _got: float = 0.0  # [s] monotonic of the last good fetch
    _next: float = 0.0  # [s] monotonic of the next attempt
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, cfg: Settings) -> Weather:
        """On when api.weather is set and the coordinates are known."""
        where = coordinates(cfg)
        url = forecast_url(cfg.api.weather_url, *where) if cfg.api.weather and where else None
        host = urllib.parse.urlsplit(cfg.api.weather_url).hostname or ""
        return cls(url=url, refresh=cfg.api.weather_refresh, source=host)

    def current(self) -> Forecast | None:
        """The forecast to show now (None when there is none or it is too old); starts a fetch."""
        now = time.monotonic()
        if self.url is not None and now >= self._next and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.update())
        if self.forecast is not None and now - self._got <= KEEP_FOR:
            return self.forecast
        return None

    async def update(self) -> None:
        """Fetch once; a failure is logged at debug level and tried again later."""
        assert self.url is not None
        try:
            data = await asyncio.to_thread(fetch_json, self.url)
            self.forecast = parse_forecast(data, self.source, datetime.now().astimezone())
            self._got = time.monotonic()
            self._next = self._got + self.refresh
        except (OSError, ValueError) as err:
            log.debug("no forecast from %s: %s", self.source, err)
            self._next = time.monotonic() + min(RETRY_AFTER, self.refresh)
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop a fetch under way."""
        if self._task is not None:
            self._task.cancel()


def sky(cfg: Settings, weather: Weather, now: datetime) -> Sky:
    """Today's sun times for the coordinates, and the forecast when one is at hand."""
    where = coordinates(cfg)
    if where is None:
        return Sky()
    tz = site_zone(cfg)
    rise, set_, polar = sun_times(now.astimezone(tz).date(), where[0], where[1], tz)
    return Sky(
        latitude=where[0],
        longitude=where[1],
        timezone=zone_name(tz),
        sunrise=rise,
        sunset=set_,
        polar=polar,
        weather=weather.url is not None,
        forecast=weather.current(),
    )

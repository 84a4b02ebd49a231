"""Pack states to InfluxDB (v2 write API) in batches, through a bounded on-disk buffer when away.

Order is kept: while the buffer holds anything, new batches join it at the end and the buffer is
written oldest first. A batch the server rejects as malformed (HTTP 400/422) is not retried: it can
never succeed, and retrying would block every point behind it; it is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any, Final

from bmsgate_common.config_file import mask_urls
from bmsgate_common.models import PackState
from bmsgate_common.schema_version import Step, open_file
from bmsgate_common.settings import InfluxSettings

from .sample import to_ms

log = logging.getLogger(__name__)

MAX_BACKOFF: Final = 60.0  # [s] between attempts while the server is away
PERMANENT: Final = frozenset({400, 422})  # malformed or outside the bucket's retention


_ESCAPE_KEY: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_ESCAPE_MEASUREMENT: Final = str.maketrans({",": r"\,", " ": r"\ "})


def _value(value: float | int | bool) -> str | None:
    """A line-protocol field value; None for what the protocol cannot carry (NaN, inf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    return repr(float(value)) if math.isfinite(value) else None


def line(measurement: str, tags: dict[str, str], fields: dict[str, Any], ts_ms: int) -> str:
    """One point in InfluxDB line protocol with a timestamp in ms; None fields are left out."""
    head = measurement.translate(_ESCAPE_MEASUREMENT) + "".join(
        f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in sorted(tags.items())
    )
    body = ",".join(
        f"{k.translate(_ESCAPE_KEY)}={text}"
        for k, v in fields.items()
        if v is not None and (text := _value(v)) is not None
    )
    return f"{head} {body} {ts_ms}"


def to_line(state: PackState, measurement: str = "bms") -> str:
    """One pack state as one point: tags pack and protocol, a field per value and per cell."""
    # fmt: off
    fields: dict[str, Any] = {
        "pack_voltage": float(state.pack_voltage), "current": float(state.current),
        "power": float(state.power), "soc": float(state.soc), "cell_count": state.cell_count,
    }
    # fmt: on
    for i, v in enumerate(state.cell_voltages, 1):
        fields[f"cell_{i}"] = float(v)
    stats = state.cells
    if stats is not None:
        fields["cell_min"] = float(stats.low)
        fields["cell_max"] = float(stats.high)
        fields["cell_delta"] = round(stats.delta, 4)
        fields["cell_average"] = round(stats.average, 4)
    for i, t in enumerate(state.temperatures, 1):
        fields[f"temp_{i}"] = float(t)
    fields.update(
        mos_temperature=state.mos_temperature,
        remaining_capacity=state.remaining_capacity,
        nominal_capacity=state.nominal_capacity,
        cycles=state.cycles,
        charge_mos=state.charge_mos,
        discharge_mos=state.discharge_mos,
        balancing=state.balancing,
        energy_in=state.energy_in,
        energy_out=state.energy_out,
        charge_in=state.charge_in,
        charge_out=state.charge_out,
    )
    tags = {"pack": state.pack, "protocol": state.protocol}
    return line(measurement, tags, fields, to_ms(state.ts))


def _buffer_layout_1(conn: sqlite3.Connection) -> None:
    """The points table as bmsgate 0.1.0 made it (no layout version: 0)."""
    conn.execute("CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, line TEXT)")


# the buffer's layout steps (bmsgate_common.schema_version)
BUFFER_LAYOUT: Final[tuple[Step, ...]] = (_buffer_layout_1,)


class DiskBuffer:
    """Points waiting for the server, in an SQLite file, oldest dropped beyond ``limit``."""

    def __init__(self, path: Path, limit: int) -> None:
        self.conn = open_file(path, BUFFER_LAYOUT)
        self.limit = limit
        self.size = int(self.conn.execute("SELECT count(*) FROM points").fetchone()[0])

    def push(self, lines: list[str]) -> int:
        """Append ``lines``; returns how many of the oldest points were dropped to stay bounded."""
        if len(lines) > self.limit:
            dropped_new = len(lines) - self.limit
            lines = lines[-self.limit :]
        else:
            dropped_new = 0
        excess = max(0, self.size + len(lines) - self.limit)
        self.conn.execute("BEGIN")
        if excess:
            self.conn.execute(
                "DELETE FROM points WHERE id IN (SELECT id FROM points ORDER BY id LIMIT ?)",
                (excess,),
            )
        self.conn.executemany("INSERT INTO points (line) VALUES (?)", ((x,) for x in lines))
        self.conn.execute("COMMIT")
        self.size = min(self.limit, self.size + len(lines))
        return excess + dropped_new

    def peek(self, n: int) -> tuple[int, list[str]]:
        """The oldest ``n`` points and the id of the last one (0 when empty)."""
        rows = self.conn.execute("SELECT id, line FROM points ORDER BY id LIMIT ?", (n,)).fetchall()
        return (rows[-1][0] if rows else 0), [r[1] for r in rows]

    def drop(self, upto: int) -> None:
        """Forget the points up to id ``upto`` (they were written)."""
        n = self.conn.execute("DELETE FROM points WHERE id <= ?", (upto,)).rowcount
        self.size = max(0, self.size - n)

    def close(self) -> None:
        """Close the file."""
        self.conn.close()


class InfluxWriter:
    """Batches points, writes them, and falls back to the disk buffer; never loses order."""

    def __init__(self, cfg: InfluxSettings, buffer_path: Path) -> None:
        self.cfg = cfg
        self.shown_url = mask_urls(cfg.url)  # for the logs: user:password@ masked
        self.buffer = DiskBuffer(buffer_path, cfg.buffer_points)
        self.pending: list[str] = []
        self.written = 0  # points the server accepted
        self.rejected = 0  # points the server refused as malformed
        self.overflow = 0  # points dropped because the buffer was full
        self.up = True
        self._client: Any = None
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._backoff = 0.0

    def counters(self) -> dict[str, int | float | str | bool | None]:
        """Health figures for the service status."""
        return {
            "influx_written": self.written,
            "influx_buffered": self.buffer.size,
            "influx_overflow": self.overflow,
            "influx_rejected": self.rejected,
            "influx_up": self.up,
        }

    def add(self, line: str) -> None:
        """Queue one point; a full batch is written at the next turn of the loop."""
        self.pending.append(line)
        if len(self.pending) >= self.cfg.batch_size:
            self._wake.set()

    async def _write(self, lines: list[str]) -> bool | None:
        """True: written; None: refused for good (dropped); False: try again later."""
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.rest import ApiException

        if self._client is None:
            token = self.cfg.token.get_secret_value() if self.cfg.token else ""
            self._client = InfluxDBClientAsync(
                url=self.cfg.url,
                token=token,
                org=self.cfg.org,
                timeout=int(self.cfg.timeout * 1000),  # [ms]
            )
        try:
            await asyncio.wait_for(  # its own task: the HTTP client must not see our cancel
                self._client.write_api().write(
                    bucket=self.cfg.bucket, org=self.cfg.org, record=lines, write_precision="ms"
                ),
                self.cfg.timeout,
            )
        except ApiException as err:
            if err.status in PERMANENT:
                self.rejected += len(lines)
                body = (err.body or b"")[:200]
                log.error(
                    "InfluxDB refused %d points as invalid (HTTP %s): %r; dropped",
                    len(lines),
                    err.status,
                    body,
                )
                return None
            self._down(f"HTTP {err.status} {err.reason}")
            return False
        except (OSError, TimeoutError) as err:
            self._down(type(err).__name__)
            return False
        except Exception as err:  # aiohttp's errors are not OSError; the server is unusable
            self._down(type(err).__name__)
            return False
        if not self.up:
            log.info("InfluxDB at %s accepts writes again", self.shown_url)
        self.up = True
        self._backoff = 0.0
        self.written += len(lines)
        return True

    def _down(self, why: str) -> None:
        if self.up:
            log.warning("InfluxDB at %s unusable (%s); buffering on disk", self.shown_url, why)
        self.up = False
        self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
        self._retry_at = asyncio.get_running_loop().time() + self._backoff

    def _spill(self, lines: list[str]) -> None:
        dropped = self.buffer.push(lines)
        if dropped:
            self.overflow += dropped
            log.warning(
                "InfluxDB buffer full (%d points): dropped the %d oldest (%d in all)",
                self.cfg.buffer_points,
                dropped,
                self.overflow,
            )

    async def flush(self) -> None:
        """Write what is pending, buffer first; what cannot be written goes to the disk buffer."""
        batch, self.pending = self.pending, []
        if self.buffer.size or (not self.up and asyncio.get_running_loop().time() < self._retry_at):
            if batch:
                self._spill(batch)
            await self._drain()
            return
        for i in range(0, len(batch), self.cfg.batch_size):
            chunk = batch[i : i + self.cfg.batch_size]
            try:
                result = await self._write(chunk)
            except asyncio.CancelledError:
                self._spill(batch[i:])  # at least once: a point may arrive twice, never not
                raise
            if result is False:
                self._spill(batch[i:])
                return

    async def _drain(self) -> None:
        """Write the buffer oldest first until empty or the server fails again."""
        while self.buffer.size:
            if not self.up and asyncio.get_running_loop().time() < self._retry_at:
                return
            last, lines = self.buffer.peek(self.cfg.batch_size)
            if await self._write(lines) is False:
                return
            self.buffer.drop(last)

    async def run(self) -> None:
        """Flush every flush_interval, or sooner when a batch is full."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        """Last flush (whatever fails stays on disk for next time), then close."""
        # _write turns the server's failures into False; the time limit and the disk remain
        with contextlib.suppress(TimeoutError, sqlite3.Error):
            async with asyncio.timeout(3 * self.cfg.timeout):
                await self.flush()
        if self.pending:
            self._spill(self.pending)
            self.pending = []
        if self._client is not None:
            with contextlib.suppress(OSError):  # the HTTP session of a server that went away
                await self._client.close()
        self.buffer.close()

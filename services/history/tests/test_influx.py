"""The InfluxDB writer against a real VictoriaMetrics: batches, outages, refusals, the bound."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bmsgate.broker import free_port
from bmsgate_common.models import PackState
from bmsgate_common.settings import InfluxSettings
from bmsgate_history.influx import InfluxWriter, line, to_line
from bmsgate_history.sample import from_ms, to_ms
from tests.support.needs import require
from tests.support.victoria import VictoriaMetrics, find_victoria

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    require(find_victoria(), "victoria-metrics is not installed")
    server = VictoriaMetrics(tmp_path)
    yield server
    server.stop()


def state(pack: str, i: int, t0: int) -> PackState:
    return PackState(
        pack=pack,
        name=pack,
        protocol="jk_pb",
        ts=from_ms(t0 + i * 1000),
        pack_voltage=53.0 + i / 100,
        current=-1.5,
        power=-79.5,
        soc=50.0,
        cell_voltages=[3.3 + i / 1000, 3.31],
        cell_count=2,
        temperatures=[21.5],
        charge_mos=True,
        cycles=7,
    )


def writer(tmp_path: Path, url: str, **kw: object) -> InfluxWriter:
    # fmt: off
    cfg = InfluxSettings.model_validate(
        {"enabled": True, "url": url, "token": TOKEN, "batch_size": 10, "flush_interval": 0.2,
         "timeout": 2, **kw}
    )
    # fmt: on
    return InfluxWriter(cfg, tmp_path / "buffer.sqlite")


def test_line_protocol() -> None:
    text = line(
        "bms",
        {"pack": "a b", "protocol": "x,y"},
        {"v": 3.3, "n": 7, "on": True, "nan": math.nan, "none": None},
        1000,
    )
    assert text == r"bms,pack=a\ b,protocol=x\,y v=3.3,n=7i,on=true 1000"
    point = to_line(state("p1", 0, 1_700_000_000_000))
    assert point.startswith("bms,pack=p1,protocol=jk_pb pack_voltage=53.0,current=-1.5,")
    assert "cell_1=3.3,cell_2=3.31," in point and "temp_1=21.5" in point
    assert "charge_mos=true" in point and "cycles=7i" in point
    assert point.endswith(" 1700000000000")


def now_ms() -> int:
    return to_ms(from_ms(0).now().astimezone()) - 60_000


async def test_points_arrive_with_tags_fields_and_ms_times(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    vm.start()
    w = writer(tmp_path, vm.url)
    t0 = now_ms()
    for i in range(25):
        w.add(to_line(state("p1", i, t0)))
        w.add(to_line(state("p2", i, t0)))
    await w.flush()
    assert w.written == 50 and w.buffer.size == 0
    (series,) = await asyncio.to_thread(vm.wait_values, 'bms_cell_1{pack="p1"}', 25)
    assert series["metric"] == {"__name__": "bms_cell_1", "pack": "p1", "protocol": "jk_pb"}
    assert series["timestamps"] == [t0 + i * 1000 for i in range(25)]
    assert series["values"] == [round(3.3 + i / 1000, 6) for i in range(25)]
    await w.close()


async def test_outage_buffers_on_disk_then_writes_in_order(
    tmp_path: Path, vm: VictoriaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = writer(tmp_path, vm.url)  # not started: connection refused
    t0 = now_ms()
    for i in range(15):
        w.add(to_line(state("p1", i, t0)))
    await w.flush()
    assert w.buffer.size == 15 and w.written == 0 and not w.up
    await w.close()  # the service stops during the outage: the buffer is on disk
    vm.start()
    w = writer(tmp_path, vm.url)
    assert w.buffer.size == 15
    for i in range(15, 30):
        w.add(to_line(state("p1", i, t0)))
    await w.flush()
    assert w.buffer.size == 0 and w.written == 30
    (series,) = await asyncio.to_thread(vm.wait_values, 'bms_pack_voltage{pack="p1"}', 30)
    assert series["timestamps"] == [t0 + i * 1000 for i in range(30)]
    await w.close()
    assert TOKEN not in caplog.text


async def test_refused_writes_wait_until_the_server_accepts(
    tmp_path: Path, vm: VictoriaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vm.start(refuse=True)  # basic auth required: the token gets 401
    w = writer(tmp_path, vm.url)
    t0 = now_ms()
    for i in range(12):
        w.add(to_line(state("p1", i, t0)))
    await w.flush()
    assert w.buffer.size == 12 and not w.up and "HTTP 401" in caplog.text
    vm.stop()
    vm.start()
    w._retry_at = 0.0  # skip the back-off wait (up to 60 s in service)
    await w.flush()
    assert w.buffer.size == 0 and w.written == 12 and w.up
    (series,) = await asyncio.to_thread(vm.wait_values, 'bms_soc{pack="p1"}', 12)
    assert len(series["values"]) == 12
    await w.close()
    assert TOKEN not in caplog.text


async def test_the_buffer_is_bounded_and_overflow_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(tmp_path, f"http://127.0.0.1:{free_port()}", buffer_points=20)
    t0 = now_ms()
    for i in range(30):
        w.add(to_line(state("p1", i, t0)))
        if i % 10 == 9:
            await w.flush()
    assert w.buffer.size == 20 and w.overflow == 10
    assert "dropped the 10 oldest" in caplog.text
    _, lines = w.buffer.peek(100)
    assert lines[0].endswith(str(t0 + 10_000))  # the newest 20 are kept, in order
    assert w.counters()["influx_overflow"] == 10
    await w.close()


def test_the_token_is_a_secret() -> None:
    cfg = InfluxSettings(token=TOKEN)  # type: ignore[arg-type]
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump())
    assert timedelta(seconds=cfg.timeout)

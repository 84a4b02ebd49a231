"""The lean supervisor's pure parts: the settings view the lean reader reads, the restart rules.

The view restates no default and no bound: every name it has is a field of the Settings model
(or a value the model computes, written by run_check), and reads what the model validated.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bmsgate.restarts import ended, restart_delay
from bmsgate.run_check import edge_data, not_edge
from bmsgate_common import settings_view as sv
from bmsgate_common.exits import RESTART_EXIT, USER_ERROR
from bmsgate_common.settings import MqttSettings, Settings


def settings() -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"host": "broker", "port": 1884, "username": "edge", "password": "s3cret"},
            "control": {"enabled": True},
            "buses": [
                {
                    "port": "/dev/ttyUSB0",
                    "protocol": "jk_pb",
                    "packs": [{"id": "a", "address": 1}, {"id": "b", "name": "B", "address": 2}],
                },
                {
                    "port": "socket://10.0.0.5:8899",
                    "protocol": "daly_classic",
                    "packs": [{"id": "c"}],
                },
            ],
        }
    )


def names(view: type) -> list[str]:
    """The public properties and methods of a view class."""
    return [
        n
        for n, v in vars(view).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]


def check(view: Any, model: BaseModel, derived: tuple[str, ...] = ()) -> None:
    """Every name of ``view`` is a field of ``model`` (or derived) and reads the same value."""
    for name in names(type(view)):
        if name in ("settings", "version"):  # the whole data; where the version comes from
            continue
        assert name in type(model).model_fields or name in derived, name
        want = getattr(model, name)
        got = getattr(view, name)
        if callable(want):
            want, got = want(), got()
        if isinstance(want, BaseModel):
            check(got, want, derived)
        elif isinstance(want, list) and want and isinstance(want[0], BaseModel):
            kind = "bus" if name == "buses" else "pack"
            for g, w in zip(got, want, strict=True):
                check(g, w, sv.DERIVED[kind])
        elif hasattr(want, "get_secret_value"):
            assert got == want.get_secret_value()
        elif isinstance(want, Path):
            assert got == want
        else:
            assert got == want, name


def test_the_view_reads_what_the_model_validated() -> None:
    cfg = settings()
    view = sv.settings_view(json.loads(json.dumps(edge_data(cfg))))
    check(view, cfg)
    assert view.buses[0].packs[0].display_name == "a"  # the model's rule, not restated
    assert view.buses[1].baud == cfg.buses[1].baud
    assert Settings.model_validate(view.settings) == cfg  # the full reader's settings


def test_every_view_name_is_a_model_field() -> None:
    from bmsgate_common.settings import BusSettings, ControlSettings, MqttSettings, PackSettings

    pairs = [
        (sv.MqttSection, MqttSettings, ()),
        (sv.PackSection, PackSettings, sv.DERIVED["pack"]),
        (sv.BusSection, BusSettings, sv.DERIVED["bus"]),
        (sv.ControlSection, ControlSettings, ()),
    ]
    for view, model, derived in pairs:
        for name in names(view):
            assert name in model.model_fields or name in derived, f"{view.__name__}.{name}"
            if name in derived:
                assert inspect.isfunction(getattr(model, name, None)) or isinstance(
                    getattr(model, name, None), property
                )


def test_the_lean_supervisor_runs_only_with_a_broker_and_a_bus() -> None:
    assert not_edge(settings()) is None
    assert "broker" in str(not_edge(Settings.model_validate({"buses": settings().buses})))
    assert "bus" in str(not_edge(Settings.model_validate({"mqtt": {"host": "b"}})))


@pytest.mark.parametrize(
    ("code", "lived", "backoff", "wait"),
    [
        (USER_ERROR, 5.0, 1.0, None),  # the user must fix it: stays stopped
        (RESTART_EXIT, 5.0, 8.0, 0.0),  # asked for: at once
        (1, 5.0, 1.0, 2.0),  # a quick crash doubles the wait
        (1, 5.0, 40.0, 60.0),  # up to a minute
        (-9, 120.0, 40.0, 1.0),  # after a long run: 1 s
    ],
)
def test_the_restart_rules(code: int, lived: float, backoff: float, wait: float | None) -> None:
    assert ended("reader-0", code, lived, backoff) == wait
    if wait not in (None, 0.0):
        assert wait == restart_delay(backoff, lived)


def test_the_backbone_has_no_tls_so_the_edge_readers_run_without_ssl() -> None:
    """edge.py's readers run without Python's ssl because the backbone is plain TCP.

    A TLS setting for the backbone needs ssl in them: give it back there (edge.py) with it.
    tests/integration/test_edge_reader.py checks that they run without it.
    """
    tls_like = {"tls", "ca_file", "certfile", "keyfile", "insecure"}
    assert not tls_like & set(MqttSettings.model_fields)


async def test_a_bus_task_that_fails_starts_again_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The edge reader process's rules per bus (edge_buses.py), with a bus whose reader fails.

    A reader's failure is a bug no input is known to cause, so it is made here: bus 1's first
    run raises, its second asks for a restart, its third runs; bus 0 runs throughout.
    """
    import asyncio

    import bmsgate_reader.lean
    from bmsgate.edge_buses import Buses
    from bmsgate_common.hosted import HOSTED

    caplog.set_level("INFO", "bmsgate.run")
    runtime = tmp_path / "readers.json"
    runtime.write_text(json.dumps(edge_data(settings())))
    runs: list[int] = []

    async def run_bus(view: Any, index: int) -> int:
        runs.append(index)
        if index == 1 and runs.count(1) == 1:
            raise RuntimeError("a bug")
        if index == 1 and runs.count(1) == 2:
            hosted = HOSTED.get()
            assert hosted is not None and hosted.name == "reader-1"
            hosted.restart = True  # as request_restart does
            return 0
        await asyncio.Event().wait()
        return 0

    monkeypatch.setattr(bmsgate_reader.lean, "run_bus", run_bus)
    buses = Buses(runtime)
    await buses.apply()
    for _ in range(60):  # restart_delay: 2 s after a quick failure, then at once
        await asyncio.sleep(0.1)
        if runs.count(1) == 3:
            break
    assert runs.count(0) == 1 and runs.count(1) == 3
    assert "reader-1 exited with code 1; restarting in 2 s" in caplog.text
    assert "reader-1 restarting on request" in caplog.text
    first = buses.buses["reader-0"].task
    await buses.stop(list(buses.buses))
    assert first is not None and first.cancelled()

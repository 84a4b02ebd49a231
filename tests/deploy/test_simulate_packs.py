"""`bmsgate run --simulate-packs N --only reader`: an edge machine's readers against a central broker."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from bmsgate.cli import build_parser
from tests.support.mqtt import listen
from tests.support.needs import needs
from tests.support.procs import Mosquitto, find_mosquitto
from tests.support.tree import run_argv


def test_simulate_packs_takes_a_positive_count() -> None:
    args = build_parser().parse_args(["run", "--simulate-packs", "3", "--only", "reader"])
    assert (args.simulate_packs, args.only) == (3, ["reader"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--simulate-packs", "0"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--only", "nosuchservice"])


@pytest.mark.integration
@needs(find_mosquitto(), "mosquitto is not installed")
async def test_three_simulated_packs_each_with_its_own_reader(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)  # stands for the central broker
    broker.start()
    env = {**os.environ, "BMSGATE_MQTT__HOST": "127.0.0.1", "BMSGATE_MQTT__PORT": str(broker.port)}
    env.pop("BMSGATE_CONFIG", None)
    argv = run_argv("--simulate-packs", "3", "--only", "reader", "--data-dir", tmp_path / "data")
    try:
        async with listen(broker.port, "bmsgate/bms/+/state", "bmsgate/service/+/status") as seen:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: ASYNC220
            try:

                def packs(_: object) -> bool:
                    got = {m.topic.split("/")[2] for m in seen.messages if "/bms/" in m.topic}
                    return got == {"sim-1", "sim-2", "sim-3"}

                await seen.wait_for(packs, within=20)
                services = {m.payload["service"] for m in seen.messages if "/service/" in m.topic}
                assert services == {"reader-0", "reader-1", "reader-2"}  # readers only
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0
        assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
        assert b"web UI" not in (proc.stdout.read() if proc.stdout else b"")  # no api started
    finally:
        broker.stop()


@pytest.mark.integration
@needs(find_mosquitto(), "mosquitto is not installed")
async def test_a_bank_of_simulated_packs(tmp_path: Path) -> None:
    """The file's bank names the simulated packs: checked against them, combined by the publisher."""
    broker = Mosquitto(tmp_path)
    broker.start()
    config = tmp_path / "bmsgate.yaml"
    config.write_text("banks:\n  - {id: house, packs: [sim-1, sim-2]}\n")
    env = {**os.environ, "BMSGATE_MQTT__HOST": "127.0.0.1", "BMSGATE_MQTT__PORT": str(broker.port)}
    env.pop("BMSGATE_CONFIG", None)
    argv = run_argv(
        *("--simulate-packs", "2", "--only", "reader", "--only", "publisher"),
        *("--data-dir", tmp_path / "data"),
        config=config,
    )
    try:
        async with listen(broker.port, "bmsgate/bms/house/state") as seen:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: ASYNC220
            try:

                def both(_: object) -> bool:
                    return any(
                        m.payload["extras"]["bank_members"] == "sim-1,sim-2" for m in seen.messages
                    )

                await seen.wait_for(both, within=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0
        bank = seen.messages[-1].payload
        assert bank["pack"] == "house" and bank["extras"]["bank"] is True
        assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
    finally:
        broker.stop()

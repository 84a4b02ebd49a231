"""The reader against simulated boards on real ptys and a real Mosquitto, one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms import daly_classic
from bmsgate_bms.jk_pb import TYPE_SETTINGS
from bmsgate_bms.registry import infos
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_bms.sim.daly_new import DalyNewBoard
from bmsgate_bms.sim.jk_pb import JkPbBoard, Master
from bmsgate_bms.sim.model import PackModel, lying
from bmsgate_common import topics
from bmsgate_common.models import Command, PackState, RawData, RawLease, SniffSet
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import BusSettings, MqttSettings
from bmsgate_reader.counters import CounterStore
from bmsgate_reader.service import Reader, serve
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration
# boards per bus in the tests: three where the protocol has bus addresses
BOARDS = {i.name: min(3, i.addresses[1] - i.addresses[0] + 1) for i in infos()}


def bus_settings(port: str, protocol: str, boards: int, **over: Any) -> BusSettings:
    return BusSettings.model_validate(
        {
            "port": port,
            "protocol": protocol,
            "poll_interval": 0.2,
            "timeout": 0.3,
            "offline_after": 2,
            "packs": [{"id": f"p{n}", "address": n} for n in range(1, boards + 1)],
        }
        | over
    )


@contextlib.asynccontextmanager
async def running(broker: Mosquitto, bus: BusSettings, **kw: Any) -> AsyncIterator[Reader]:
    backbone = Backbone(MqttSettings(host="127.0.0.1", port=broker.port, heartbeat=2), "reader-0")
    reader = Reader(bus, backbone, **kw)
    task = asyncio.create_task(serve(reader))
    try:
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)  # a stop that hangs fails here, with its stack


def states(seen: Listener, pack: str) -> list[PackState]:
    return [PackState.model_validate(p) for p in seen.on(f"/bms/{pack}/state")]


def availability(seen: Listener, pack: str) -> list[str]:
    """The pack's availability changes (repeats, e.g. the periodic republish, folded)."""
    changes: list[str] = []
    for payload in seen.on(f"/bms/{pack}/availability"):
        if not changes or changes[-1] != payload["state"]:
            changes.append(payload["state"])
    return changes


@pytest.mark.parametrize("protocol", sorted(BOARDS))
async def test_every_board_on_the_bus_is_its_own_pack(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    boards = BOARDS[protocol]
    sim = make_bus(protocol, boards=boards)
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, protocol, boards)),
    ):
        packs = [f"p{n}" for n in range(1, boards + 1)]
        # the availability follows the first state: wait for both, they are separate messages
        await seen.wait_for(
            lambda s: all(states(s, p) and availability(s, p) for p in packs), within=15
        )
        for n, pack in enumerate(packs):
            state = states(seen, pack)[-1]
            model = sim.boards[n].model
            assert state.protocol == protocol and state.cell_count == len(model.cells)
            assert state.cell_voltages == pytest.approx(model.cell_voltages, abs=0.0015)
            assert state.soc == pytest.approx(model.soc, abs=1.0)
            assert availability(seen, pack) == ["online"]
        retained = [m.retain for m in seen.messages if m.topic.endswith("/state")]
        assert retained and not any(retained)  # live messages; the broker keeps the last one


@pytest.mark.parametrize(
    ("fault", "publishes"),
    [
        ("echo", True),
        ("split", True),
        ("glued", True),
        ("slow", False),
        ("silent", False),
        ("garbage", False),
        ("bad_checksum", False),
        ("sleep", False),
    ],
)
async def test_faults_never_publish_bad_values_and_recover(
    tmp_path: Path, mosquitto: Mosquitto, fault: str, publishes: bool
) -> None:
    sim = make_bus("daly_classic")
    sim.faults.slow_delay = 1.0
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1)) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        sim.faults.mode = fault  # type: ignore[assignment]
        before = len(states(seen, "p1"))
        started = time.monotonic()
        if publishes:
            await seen.wait_for(lambda s: len(states(s, "p1")) >= before + 3)
            assert availability(seen, "p1") == ["online"]
        else:
            await seen.wait_for(lambda s: availability(s, "p1") == ["online", "offline"])
            assert reader.failures >= 2
            # nothing decoded from a broken answer was published as a state
            for state in states(seen, "p1")[before + 1 :]:
                assert state.cell_voltages == pytest.approx(
                    sim.boards[0].model.cell_voltages, abs=0.002
                )
        sim.faults.mode = "none"
        recovered = time.monotonic()
        await seen.wait_for(lambda s: availability(s, "p1")[-1] == "online", within=10)
        what = "3 good states" if publishes else "offline"
        print(
            f"{fault}: {what} after {recovered - started:.2f} s, back {time.monotonic() - recovered:.2f} s"
        )


async def test_unplugged_adapter_comes_back_without_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    link = tmp_path / "ttyUSB-garage"
    sim = make_bus("jk_pb", boards=1)
    async with listen(mosquitto.port, "bmsgate/bms/#") as seen:
        pty = PtyServer(sim, link)
        await pty.__aenter__()
        first_device = pty.device
        async with running(mosquitto, bus_settings(str(link), "jk_pb", 1)) as reader:
            await seen.wait_for(lambda s: availability(s, "p1") == ["online"], within=15)
            pty.close()  # unplugged: the node and its link are gone
            await seen.wait_for(lambda s: availability(s, "p1") == ["online", "offline"])
            assert "serial port unavailable" in seen.on("/bms/p1/availability")[-1]["reason"]
            await asyncio.sleep(1.0)
            holder = PtyServer(make_bus("daly_classic"))  # takes a pts number meanwhile
            # plugged back: a new pts number behind the same name. Numbers are shared with every
            # process of the machine, so the old one can still come back (freed by another in
            # between): that pty is kept open, so the next one asked for gets another number
            held: list[PtyServer] = []
            pty = PtyServer(sim, link)
            while pty.device == first_device:
                held.append(pty)
                pty = PtyServer(sim, link)
            await pty.__aenter__()
            replugged = time.monotonic()
            await seen.wait_for(lambda s: availability(s, "p1")[-1] == "online", within=15)
            print(f"replug recovered in {time.monotonic() - replugged:.2f} s")
            assert reader.link.device == pty.device
            pty.close()
            holder.close()
            for kept in held:
                kept.close()


async def commands(seen: Listener) -> list[dict[str, Any]]:
    return seen.on("/result")


@contextlib.asynccontextmanager
async def one_daly_online(
    tmp_path: Path, mosquitto: Mosquitto, control: bool
) -> AsyncIterator[tuple[PtyServer, Listener, Reader]]:
    """One simulated DALY board on a pty, a reader polling it, and a listener; once online."""
    sim = make_bus("daly_classic")
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1), control=control) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        yield pty, seen, reader


@pytest.mark.parametrize("control", [False, True])
async def test_commands_are_refused_or_confirmed_by_reading_back(
    tmp_path: Path, mosquitto: Mosquitto, control: bool
) -> None:
    async with one_daly_online(tmp_path, mosquitto, control=control) as (pty, seen, reader):
        model = pty.bus.boards[0].model
        sent = [
            Command(transaction="t1", action="set_charge_mos", value=False),
            Command(transaction="t2", action="set_soc", value=42.0),
            Command(transaction="t3", action="reset"),
            Command(transaction="t4", action="set_discharge_mos", value=False),
        ]
        for cmd in sent:
            await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        await seen.wait_for(lambda s: len(s.on("/bms/p1/result")) == 4, within=15)
        results = {r["transaction"]: r for r in seen.on("/bms/p1/result")}
        if not control:
            assert {r["status"] for r in results.values()} == {"error"}
            assert {r["error"] for r in results.values()} == {"control is disabled"}
            assert model.charge_mos is True
            return
        assert results["t1"] == results["t1"] | {"status": "ok", "value": False}
        assert results["t2"]["status"] == "ok" and results["t2"]["value"] == pytest.approx(
            42.0, abs=0.1
        )
        assert results["t3"]["status"] == "ok"
        assert results["t4"]["status"] == "ok" and results["t4"]["value"] is False
        assert model.charge_mos is False and model.discharge_mos is False
        last = states(seen, "p1")[-1]
        assert last.charge_mos is False and last.discharge_mos is False


async def test_a_command_the_asleep_bms_never_read_does_not_act_when_it_wakes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An unanswered command's bytes still waiting for the board are dropped at the timeout.

    The board dozes (stops reading its pty) behind a full line: 4 kB of filler fill the pty's
    line buffer on the board's side, so what the reader sends next waits in the kernel, as in
    an adapter's buffer. The reader flushes it (tcflush) when the board does not answer; when
    the board wakes it reads the filler and never the command.
    """
    async with one_daly_online(tmp_path, mosquitto, control=True) as (pty, seen, reader):
        model = pty.bus.boards[0].model
        pty.doze()
        os.write(pty._slave, bytes(4096))  # junk to the board's framer: it waits for 0xA5
        cmd = Command(transaction="off", action="set_discharge_mos", value=False)
        await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        await seen.wait_for(lambda s: s.on("/bms/p1/result"), within=10)
        assert seen.on("/bms/p1/result")[0]["status"] == "error"
        pty.wake()
        online = len(states(seen, "p1"))
        await seen.wait_for(lambda s: len(states(s, "p1")) > online + 2, within=10)
        assert pty.received >= 4096  # the board read what waited for it
        assert model.discharge_mos is True  # and the command was not among it
        assert states(seen, "p1")[-1].discharge_mos is True


@pytest.mark.parametrize("protocol", sorted(BOARDS))
async def test_mos_commands_are_read_back_or_refused_for_every_protocol(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    sim = make_bus(protocol)
    model = sim.boards[0].model
    switching = next(i for i in infos() if i.name == protocol).mos_switching
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, protocol, 1), control=True) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        for n, on in enumerate((False, True)):
            cmd = Command(transaction=f"t{n}", action="set_charge_mos", value=on)
            await reader.backbone.publish(topics.COMMAND, "p1", cmd)
            await seen.wait_for(lambda s, n=n: len(s.on("/bms/p1/result")) > n, within=10)
            result = seen.on("/bms/p1/result")[n]
            if switching:
                assert result["status"] == "ok" and result["value"] is on, result
                assert model.charge_mos is on
            else:
                assert result["status"] == "error" and model.charge_mos is True, result


async def test_stuck_mos_is_reported_not_assumed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = make_bus("daly_classic")
    model = sim.boards[0].model
    model.set_mos = lambda charge, on: None  # type: ignore[method-assign]  # a welded MOSFET
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1), control=True) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        await reader.backbone.publish(
            topics.COMMAND, "p1", Command(transaction="x", action="set_charge_mos", value=False)
        )
        result = (await seen.wait_for(lambda s: s.on("/bms/p1/result")))[0]
        assert result["status"] == "error" and result["value"] is True
        assert "reports True" in result["error"]


async def test_energy_counters_integrate_and_survive_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = make_bus("daly_classic")
    model = sim.boards[0].model
    model.profile, model.demand = False, 50.0  # a steady 50 A charge
    model.step(0)
    store = CounterStore(tmp_path / "reader")
    bus = bus_settings(str(tmp_path / "tty"), "daly_classic", 1)
    async with PtyServer(sim, tmp_path / "tty"), listen(mosquitto.port, "bmsgate/bms/#") as seen:
        async with running(mosquitto, bus, counters=store):
            await seen.wait_for(lambda s: len(states(s, "p1")) >= 6)
        first = states(seen, "p1")
        span = (first[-1].ts - first[0].ts).total_seconds()
        expected_ah = 50.0 * span / 3600
        assert first[-1].charge_in == pytest.approx(expected_ah, rel=0.05, abs=1e-3)
        assert first[-1].energy_in == pytest.approx(
            expected_ah * first[-1].pack_voltage / 1000, rel=0.05, abs=1e-4
        )
        assert first[-1].energy_out == 0
        saved = first[-1].charge_in or 0.0
        async with running(mosquitto, bus, counters=store):
            await seen.wait_for(lambda s: len(states(s, "p1")) >= len(first) + 3)
        again = states(seen, "p1")[len(first) :]
        assert again[0].charge_in is not None and again[0].charge_in >= saved  # not back to zero
        assert again[-1].charge_in is not None and again[-1].charge_in > saved


def lease_states(seen: Listener) -> list[dict[str, Any]]:
    return seen.on("/bms/p1/raw/lease/state")


async def test_lease_needs_control(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (
        PtyServer(make_bus("daly_classic"), tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1)) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        await reader.backbone.publish(
            topics.RAW_LEASE, "p1", RawLease(transaction="l1", holder="tunnel", action="acquire")
        )
        state = (await seen.wait_for(lease_states))[0]
        assert state["ok"] is False and state["error"] == "control is disabled"
        assert state["holder"] is None


async def test_lease_pauses_polling_relays_bytes_and_gives_the_line_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        PtyServer(make_bus("daly_classic"), tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1), control=True) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        publish = reader.backbone.publish
        await publish(
            topics.RAW_LEASE, "p1", RawLease(transaction="l1", holder="tunnel", action="acquire")
        )
        granted = (await seen.wait_for(lease_states))[0]
        assert granted == granted | {"ok": True, "holder": "tunnel", "transaction": "l1"}
        await asyncio.sleep(0.3)  # a poll under way when the lease came may still finish
        polled = len(states(seen, "p1"))

        # a second holder is refused while the line is taken
        await publish(
            topics.RAW_LEASE, "p1", RawLease(transaction="l2", holder="webui", action="acquire")
        )
        refused = await seen.wait_for(
            lambda s: [x for x in lease_states(s) if x["transaction"] == "l2"]
        )
        assert refused[0]["ok"] is False and "held by tunnel" in refused[0]["error"]

        # bytes from the holder reach the BMS; its answer comes back on raw/rx
        request = daly_classic.request(daly_classic.SOC)
        await publish(topics.RAW_TX, "p1", RawData(holder="tunnel", data=request.hex()))
        rx = await seen.wait_for(lambda s: "".join(p["data"] for p in s.on("/bms/p1/raw/rx")))
        assert daly_classic.frame_data(bytes.fromhex(rx[:26]), daly_classic.SOC, 1)
        await asyncio.sleep(1.0)
        assert len(states(seen, "p1")) == polled  # no polling while leased

        await publish(
            topics.RAW_LEASE, "p1", RawLease(transaction="l3", holder="tunnel", action="release")
        )
        freed = await seen.wait_for(lambda s: [x for x in lease_states(s) if x["holder"] is None])
        assert freed[-1]["rx_bytes"] == 13 and freed[-1]["tx_bytes"] == 13
        await seen.wait_for(lambda s: len(states(s, "p1")) > polled)  # polling resumed


async def test_idle_lease_expires_and_polling_resumes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (
        PtyServer(make_bus("daly_classic"), tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1), control=True) as reader,
    ):
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        await reader.backbone.publish(
            topics.RAW_LEASE,
            "p1",
            RawLease(transaction="l1", holder="tunnel", action="acquire", idle_timeout=0.5),
        )
        started = time.monotonic()
        await seen.wait_for(lambda s: [x for x in lease_states(s) if x["holder"] is None], within=5)
        assert 0.4 < time.monotonic() - started < 3
        polled = len(states(seen, "p1"))
        await seen.wait_for(lambda s: len(states(s, "p1")) > polled)
        assert reader.lease.current is None


async def test_gadget_passthrough_and_sniffer(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A DALY dongle on a second port keeps working; every frame shows on the sniff topic."""
    gadget, gadget_port = os.openpty()  # the test plays the dongle on the master side
    tty.setraw(gadget)
    sim = make_bus("daly_classic")
    try:
        async with (
            PtyServer(sim, tmp_path / "tty") as pty,
            listen(mosquitto.port, "bmsgate/bus/#") as seen,
        ):
            bus = bus_settings(
                pty.port, "daly_classic", 1, passthrough=os.ttyname(gadget_port), sniff=True
            )
            async with running(mosquitto, bus) as reader:
                await seen.wait_for(
                    lambda s: any(p["direction"] == "from_bms" for p in s.on("/sniff"))
                )
                loop = asyncio.get_running_loop()
                answer = bytearray()
                got = asyncio.Event()

                def readable() -> None:
                    answer.extend(os.read(gadget, 4096))
                    if len(answer) >= 13:
                        got.set()

                loop.add_reader(gadget, readable)
                try:
                    for _ in range(3):
                        answer.clear()
                        got.clear()
                        os.write(gadget, daly_classic.request(daly_classic.MOS))
                        await asyncio.wait_for(got.wait(), 5)
                        data = daly_classic.frame_data(bytes(answer[:13]), daly_classic.MOS, 1)
                        assert bool(data[1]) is sim.boards[0].model.charge_mos
                finally:
                    loop.remove_reader(gadget)
                assert reader.passthrough is not None and reader.passthrough.relayed >= 3
                sniffed = await seen.wait_for(
                    lambda s: [
                        p for p in s.on("/bus/reader-0/sniff") if p["direction"] == "bms_to_gadget"
                    ]
                )
                assert sniffed[0]["decoded"]["charge_mos"] is True
                directions = {p["direction"] for p in seen.on("/sniff")}
                assert directions == {"to_bms", "from_bms", "gadget_to_bms", "bms_to_gadget"}
                own = [p for p in seen.on("/sniff") if p["direction"] == "from_bms"]
                assert any("pack_voltage" in (p["decoded"] or {}) for p in own)
                # requests decode as requests: "a5 40 93 08 ..." is a question, not a MOS state
                asked = [p for p in seen.on("/sniff") if p["direction"] == "gadget_to_bms"]
                assert asked[0]["data"].startswith("a54093")
                assert asked[0]["decoded"] == {
                    "request": "mos",
                    "command": 0x93,
                    "host_address": 0x40,
                    "board": 1,
                }
                polls = [p for p in seen.on("/sniff") if p["direction"] == "to_bms"]
                assert all(p["decoded"]["request"] for p in polls)
                assert not any(
                    "charge_mos" in p["decoded"] for p in polls if p["data"][4:6] == "93"
                )
    finally:
        os.close(gadget)
        os.close(gadget_port)


async def test_sniffer_is_switched_on_and_off_at_runtime(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A SniffSet turns the sniffer on and off without a restart; the state answers it."""
    sim = make_bus("daly_classic")
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bus/#") as seen,
        running(mosquitto, bus_settings(pty.port, "daly_classic", 1)) as reader,
    ):
        first = await seen.wait_for(lambda s: s.on("/bus/reader-0/sniff/state"))
        assert first[0]["enabled"] is False and first[0]["transaction"] is None
        await asyncio.sleep(0.5)  # several polls: nothing sniffed while off
        assert seen.on("/bus/reader-0/sniff") == []
        on = SniffSet(transaction="t-on", enabled=True)
        await reader.backbone.publish(topics.SNIFF_SET, "reader-0", on)
        await seen.wait_for(
            lambda s: [p for p in s.on("/sniff/state") if p["transaction"] == "t-on"]
        )
        assert reader.sniffer.enabled
        await seen.wait_for(lambda s: s.on("/bus/reader-0/sniff"))
        await reader.backbone.publish(
            topics.SNIFF_SET, "reader-1", SniffSet(transaction="x", enabled=False)
        )
        off = SniffSet(transaction="t-off", enabled=False)
        await reader.backbone.publish(topics.SNIFF_SET, "reader-0", off)
        answers = await seen.wait_for(
            lambda s: [p for p in s.on("/sniff/state") if p["transaction"] == "t-off"]
        )
        assert answers[0]["enabled"] is False and reader.sniffer.enabled is False
        assert all(p["transaction"] != "x" for p in seen.on("/sniff/state"))  # not its bus
        await asyncio.sleep(0.3)  # the queue drains
        count = len(seen.on("/bus/reader-0/sniff"))
        await asyncio.sleep(0.6)
        assert len(seen.on("/bus/reader-0/sniff")) == count


@pytest.mark.parametrize("protocol", ["daly_classic", "jk_pb"])
async def test_a_lying_board_is_not_published_nor_integrated_and_logged_once(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bmsgate_reader")
    sim = make_bus(protocol)
    board = sim.boards[0]
    truthful = board.model
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, protocol, 1)) as reader,
    ):
        await seen.wait_for(
            lambda s: availability(s, "p1") == ["online"] and len(states(s, "p1")) > 2
        )
        good = len(states(seen, "p1"))
        energy_out = states(seen, "p1")[-1].energy_out
        # valid frames, checksums right: 250 % and 3000 A discharging (0.044 kWh a second at 53 V)
        board.model = lying(truthful, soc=250.0, current=-3000.0)
        await seen.wait_for(lambda s: availability(s, "p1") == ["online", "offline"])
        reason = seen.on("/bms/p1/availability")[-1]["reason"]
        assert reason.startswith("implausible values: SOC 250 %"), reason
        await seen.wait_for(lambda _: reader.implausible >= 4)
        assert len(states(seen, "p1")) <= good + 1  # at most one poll already under way
        board.model = truthful
        await seen.wait_for(lambda s: availability(s, "p1")[-1] == "online", within=10)
        await seen.wait_for(lambda s: len(states(s, "p1")) > good + 1)
    published = states(seen, "p1")
    assert all(0 <= s.soc <= 100 and abs(s.current) < 1000 for s in published)
    assert published[-1].energy_out - energy_out < 0.005  # [kWh] no phantom discharge
    warned = [r.getMessage() for r in caplog.records if "implausible answer" in r.getMessage()]
    assert len(warned) == 1, warned
    first_frame = {"daly_classic": "a5 01 90 08", "jk_pb": "55 aa eb 90 02"}[protocol]
    assert first_frame in warned[0]
    assert any("plausible answers again" in r.getMessage() for r in caplog.records)


@contextlib.asynccontextmanager
async def gateway(scheme: str, device: str, port: int = 0) -> AsyncIterator[tuple[str, Any]]:
    """A network serial port as its own process: ``bmsgate simulate --listen`` for socket://,
    an RFC 2217 server in front of ``device`` for rfc2217://. Yields the URL and the process."""
    if scheme == "socket":
        argv = [
            "-m",
            "bmsgate.cli",
            "simulate",
            "--protocol",
            "daly_classic",
            "--boards",
            "2",
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ]
    else:
        argv = ["-m", "tests.support.rfc2217_server", device, "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        printed = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        yield printed.replace("tcp://", "socket://"), proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize("scheme", ["socket", "rfc2217"])
async def test_network_gateway_ports(tmp_path: Path, mosquitto: Mosquitto, scheme: str) -> None:
    """An RS485-to-Ethernet gateway, raw TCP (socket://) or RFC 2217 (rfc2217://): polled like
    a tty; when the gateway goes away the packs go offline, and they come back without a
    restart."""
    sim = make_bus("daly_classic", boards=2)
    async with contextlib.AsyncExitStack() as stack:
        pty = await stack.enter_async_context(PtyServer(sim, tmp_path / "tty"))
        url, proc = await stack.enter_async_context(gateway(scheme, pty.port))
        seen = await stack.enter_async_context(listen(mosquitto.port, "bmsgate/bms/#"))
        await stack.enter_async_context(running(mosquitto, bus_settings(url, "daly_classic", 2)))
        await seen.wait_for(
            lambda s: all(availability(s, p) == ["online"] for p in ("p1", "p2")), within=20
        )
        assert states(seen, "p2")[-1].cell_count == 16
        if scheme == "rfc2217":  # the simulator behind the gateway is this test's own
            model = sim.boards[1].model
            assert states(seen, "p2")[-1].cell_voltages == pytest.approx(
                model.cell_voltages, abs=0.002
            )
        proc.kill()
        await proc.wait()
        await seen.wait_for(lambda s: availability(s, "p1") == ["online", "offline"], within=20)
        port = int(url.rpartition(":")[2])
        await stack.enter_async_context(gateway(scheme, pty.port, port))
        await seen.wait_for(lambda s: availability(s, "p1")[-1] == "online", within=30)


async def test_listening_to_a_jk_pb_master_and_its_slaves(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A JK-PB master (DIP 0) polls two slaves; the reader only listens: one pack per address,
    not a byte sent, and a slave that goes quiet goes offline while the others stay online."""
    sim = make_bus("jk_pb", boards=2)
    master = Master(sim, JkPbBoard(PackModel.create(cells=16, seed=42), address=0))

    async def polling(pty: PtyServer) -> None:
        while True:
            await pty.send(master.round())
            await asyncio.sleep(0.2)

    async with contextlib.AsyncExitStack() as stack:
        pty = await stack.enter_async_context(PtyServer(sim, tmp_path / "tty"))
        seen = await stack.enter_async_context(listen(mosquitto.port, "bmsgate/bms/#"))
        bus = bus_settings(
            pty.port,
            "jk_pb",
            0,
            listen=True,
            poll_interval=0.5,
            packs=[{"id": "master", "address": 0}],
        )
        await stack.enter_async_context(running(mosquitto, bus))
        cycle = asyncio.create_task(polling(pty))
        try:
            packs = {
                "master": master.own.model,
                "reader-0-1": sim.boards[0].model,
                "reader-0-2": sim.boards[1].model,
            }
            await seen.wait_for(
                lambda s: all(availability(s, p) == ["online"] for p in packs), within=15
            )
            for pack, model in packs.items():
                state = states(seen, pack)[-1]
                assert state.cell_voltages == pytest.approx(model.cell_voltages, abs=0.0015)
                assert state.current == pytest.approx(model.current, abs=0.002)
            master.silent.add(2)
            await seen.wait_for(lambda s: availability(s, "reader-0-2") == ["online", "offline"])
            reason = seen.on("/bms/reader-0-2/availability")[-1]["reason"]
            assert reason.startswith("not heard on the bus")
            assert availability(seen, "reader-0-1") == ["online"]
            assert availability(seen, "master") == ["online"]
            master.silent.clear()
            await seen.wait_for(lambda s: availability(s, "reader-0-2")[-1] == "online")
            # the master's settings round: every pack's settings, heard, not asked for
            await pty.send(master.round(kind=TYPE_SETTINGS))
            heard = await seen.wait_for(
                lambda s: {p for p in packs if s.on(f"/bms/{p}/settings")} == set(packs)
            )
            assert heard
            rows = {
                r["key"]: r["value"] for r in seen.on("/bms/reader-0-1/settings")[-1]["settings"]
            }
            assert rows["device_address"] == 1 and rows["cell_count"] == 16
        finally:
            cycle.cancel()
        assert pty.received == 0  # the reader never sent a byte


@pytest.mark.parametrize("protocol", ["jk_pb", "jk_uart", "daly_classic"])
async def test_bms_settings_are_published_and_written_with_read_back(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The BMS's own settings are read and published (retained); a safe write is read back as
    the result and logged with who asked; a bad write changes nothing."""
    caplog.set_level(logging.INFO, logger="bmsgate_reader")
    sim = make_bus(protocol)
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, protocol, 1), control=True) as reader,
    ):
        published = await seen.wait_for(lambda s: s.on("/bms/p1/settings"))
        rows = {r["key"]: r for r in published[-1]["settings"]}
        writable = [r for r in rows.values() if r["writable"]]
        if protocol == "daly_classic":  # 0x50 only, nothing writable
            assert set(rows) == {"rated_capacity", "nominal_cell_voltage"} and not writable
            cmd = Command(
                transaction="w0",
                action="set_setting",
                setting="rated_capacity",
                value=50.0,
                requested_by="test",
            )
            await reader.backbone.publish(topics.COMMAND, "p1", cmd)
            result = (await seen.wait_for(lambda s: s.on("/bms/p1/result")))[-1]
            assert result["status"] == "error" and "read-only" in result["error"]
            return
        key = "balance_start_voltage"
        cells = {"jk_pb": "cell_count", "jk_uart": "cell_count_setting"}[protocol]
        low, high = rows[key]["min"], rows[key]["max"]
        target = round((low + high) / 2, 3)
        count = len(seen.on("/bms/p1/settings"))
        commands = [
            Command(
                transaction="w1",
                action="set_setting",
                setting=key,
                value=target,
                requested_by="web-admin",
            ),
            Command(
                transaction="w2",
                action="set_setting",
                setting=key,
                value=high + 0.5,
                requested_by="web-admin",
            ),
            Command(transaction="w3", action="set_setting", setting=cells, value=8.0),
        ]
        for cmd in commands:
            await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        await seen.wait_for(lambda s: len(s.on("/bms/p1/result")) == 3, within=15)
        results = {r["transaction"]: r for r in seen.on("/bms/p1/result")}
        assert results["w1"]["status"] == "ok"
        assert results["w1"]["value"] == pytest.approx(target, abs=0.001)
        assert results["w2"]["status"] == "error" and f"{key} must be" in results["w2"]["error"]
        assert results["w3"]["status"] == "error" and "read-only" in results["w3"]["error"]
        after = seen.on("/bms/p1/settings")
        assert len(after) > count
        rows = {r["key"]: r for r in after[-1]["settings"]}
        assert rows[key]["value"] == pytest.approx(target, abs=0.001)
        assert rows[cells]["value"] == 16  # untouched
        logged = [r.getMessage() for r in caplog.records if "asked by" in r.getMessage()]
        assert any("set_setting balance_start_voltage" in m and "web-admin" in m for m in logged)


async def test_jbd_eeprom_settings_are_published_read_only(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """JBD's EEPROM settings, read in factory mode (left without saving), published retained."""
    sim = make_bus("jbd", cells=16)
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "jbd", 1), control=True) as reader,
    ):
        published = await seen.wait_for(lambda s: s.on("/bms/p1/settings"))
        rows = {r["key"]: r for r in published[-1]["settings"]}
        assert rows["cell_overvoltage"]["value"] == pytest.approx(3.65)
        assert rows["design_capacity"]["value"] == pytest.approx(
            sim.boards[0].model.nominal_capacity
        )
        assert rows["cell_count"]["value"] == 16 and not any(r["writable"] for r in rows.values())
        assert sim.boards[0].factory is False
        cmd = Command(transaction="w", action="set_setting", setting="cell_overvoltage", value=3.6)
        await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        result = (await seen.wait_for(lambda s: s.on("/bms/p1/result")))[-1]
        assert result["status"] == "error" and "read-only" in result["error"]


@pytest.mark.parametrize("protocol", ["jk_uart", "jk_pb"])
async def test_jk_balancer_switch_is_read_back(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    sim = make_bus(protocol)
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, protocol, 1), control=True) as reader,
    ):
        await seen.wait_for(
            lambda s: any("balancer_enabled" in p.extras for p in states(s, "p1")), within=15
        )
        assert states(seen, "p1")[-1].extras["balancer_enabled"] is True
        cmd = Command(transaction="b1", action="set_balancer", value=False)
        await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        result = (await seen.wait_for(lambda s: s.on("/bms/p1/result"), within=15))[-1]
        assert result["status"] == "ok" and result["value"] is False
        await seen.wait_for(lambda s: states(s, "p1")[-1].extras["balancer_enabled"] is False)
        awake = Command(transaction="b2", action="set_keep_awake", value=True)
        await reader.backbone.publish(topics.COMMAND, "p1", awake)
        await seen.wait_for(lambda s: len(s.on("/bms/p1/result")) == 2)
        assert "keep-awake" in seen.on("/bms/p1/result")[-1]["error"]


async def test_daly_keep_awake_sends_harmless_reads_between_polls_until_switched_off(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = make_bus("daly_classic")
    async with contextlib.AsyncExitStack() as stack:
        pty = await stack.enter_async_context(PtyServer(sim, tmp_path / "tty"))
        seen = await stack.enter_async_context(listen(mosquitto.port, "bmsgate/bms/#"))
        bus = bus_settings(pty.port, "daly_classic", 1, poll_interval=2.0, keep_awake=0.2)
        reader = await stack.enter_async_context(running(mosquitto, bus, control=True))
        await seen.wait_for(lambda s: availability(s, "p1") == ["online"])
        await seen.wait_for(lambda _: reader.wakes >= 3, within=10)
        assert states(seen, "p1")[-1].extras["keep_awake"] is True
        cmd = Command(transaction="k1", action="set_keep_awake", value=False)
        await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        result = (await seen.wait_for(lambda s: s.on("/bms/p1/result")))[-1]
        assert result["status"] == "ok" and result["value"] is False
        assert states(seen, "p1")[-1].extras["keep_awake"] is False
        wakes = reader.wakes
        await asyncio.sleep(1.0)
        assert reader.wakes <= wakes + 1  # at most one already under way


@pytest.mark.parametrize("variant", [None, "d2"], ids=["daly_classic", "daly_new_d2"])
async def test_own_soc_beside_the_drifting_bms_and_pushed_to_it_at_full(
    tmp_path: Path, mosquitto: Mosquitto, variant: str | None
) -> None:
    """A DALY whose counter says 80 % while its cells are full and the charger has tapered
    off: bmsgate's own SOC re-syncs to 100 % and, with push_soc, writes it to the BMS."""
    protocol = "daly_new" if variant else "daly_classic"
    sim = make_bus(protocol)
    if variant:
        sim = SimBus([DalyNewBoard(PackModel.create(cells=16), 1, variant="d2")])
    model = sim.boards[0].model
    model.profile, model.demand = False, 0.5  # a tapered charge current
    model.set_soc(100.0)
    for cell in model.cells:
        cell.soc = 99.9  # the cells are full...
    model.set_soc(80.0)  # ...the BMS's counter is not
    pack = {
        "id": "p1",
        "address": 1,
        "own_soc": True,
        "push_soc": True,
        "full_time": 0.5,
        "full_cell_voltage": 3.45,
        "full_current": 1.0,
        "nominal_capacity": 100,
    }
    async with contextlib.AsyncExitStack() as stack:
        pty = await stack.enter_async_context(PtyServer(sim, tmp_path / "tty"))
        seen = await stack.enter_async_context(listen(mosquitto.port, "bmsgate/bms/#"))
        extra = {"variant": variant} if variant else {}
        bus = bus_settings(pty.port, protocol, 1, packs=[pack], **extra)
        await stack.enter_async_context(running(mosquitto, bus, control=True))
        first = (await seen.wait_for(lambda s: states(s, "p1")))[0]
        assert first.soc == pytest.approx(80.0, abs=0.2) and first.soc_estimate == first.soc
        await seen.wait_for(lambda s: states(s, "p1")[-1].soc_estimate == 100.0, within=10)
        # pushed: the BMS's own SOC is 100 % from then on
        await seen.wait_for(lambda s: states(s, "p1")[-1].soc == pytest.approx(100.0, abs=0.2))
        assert model.soc == pytest.approx(100.0, abs=0.2)


async def test_a_write_the_bms_refuses_is_a_clear_error_that_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = make_bus("jk_pb")
    sim.boards[0].refuse.add(0x107C)  # type: ignore[attr-defined]  # design capacity
    async with (
        PtyServer(sim, tmp_path / "tty") as pty,
        listen(mosquitto.port, "bmsgate/bms/#") as seen,
        running(mosquitto, bus_settings(pty.port, "jk_pb", 1), control=True) as reader,
    ):
        before = {
            r["key"]: r["value"]
            for r in (await seen.wait_for(lambda s: s.on("/bms/p1/settings")))[-1]["settings"]
        }
        cmd = Command(
            transaction="r1",
            action="set_setting",
            setting="design_capacity",
            value=150.0,
            requested_by="test",
        )
        await reader.backbone.publish(topics.COMMAND, "p1", cmd)
        result = (await seen.wait_for(lambda s: s.on("/bms/p1/result"), within=15))[-1]
        assert result["status"] == "error"
        assert result["error"] == "JK-PB refused function 10: exception 04 (bad data)"
        assert sim.boards[0].settings["design_capacity"] == before["design_capacity"]  # type: ignore[attr-defined]

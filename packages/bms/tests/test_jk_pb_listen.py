"""Listening to a JK-PB bus a master (DIP 0) polls: every frame heard, each given its address."""

from __future__ import annotations

import random

import pytest

from bmsgate_bms import jk_pb
from bmsgate_bms.link import FrameCollector
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.jk_pb import JkPbBoard, Master
from bmsgate_bms.sim.model import PackModel

from .conftest import frame_bytes, load_vectors


def _bus(slaves: int = 3, padding: bool = False) -> Master:
    bus = make_bus("jk_pb", boards=slaves)
    for board in bus.boards:
        board.padding = padding  # type: ignore[attr-defined]
    return Master(bus, JkPbBoard(PackModel.create(cells=16, seed=99), address=jk_pb.MASTER))


def _hear(data: bytes, chunk: int | None = None) -> list[jk_pb.Heard]:
    collector = FrameCollector(b"", jk_pb.bus_framer)
    listener = jk_pb.BusListener()
    heard: list[jk_pb.Heard] = []
    rng = random.Random(3)
    pos = 0
    while pos < len(data):
        size = chunk or rng.randint(1, 64)
        for frame in collector.feed(data[pos : pos + size]):
            heard += listener.feed(frame)
        pos += size
    return heard


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("chunk", [None, 1, 4096])
def test_every_address_is_heard_with_its_own_values(padding: bool, chunk: int | None) -> None:
    master = _bus(3, padding)
    data = b"".join(b for _, b in master.round() + master.round())
    heard = _hear(data, chunk)
    assert [h.address for h in heard] == [1, 2, 3, 0, 1, 2, 3, 0]
    models = {b.address: b.model for b in master.bus.boards} | {0: master.own.model}
    for item in heard:
        reading = jk_pb.to_reading(item.values)
        model = models[item.address]
        assert item.frame_type == jk_pb.TYPE_LIVE
        assert reading.cell_voltages == pytest.approx(model.cell_voltages, abs=0.0015)
        assert reading.current == pytest.approx(model.current, abs=0.002)


def test_a_quiet_slave_is_not_heard_and_the_others_are() -> None:
    master = _bus(3)
    master.silent.add(2)  # asked, never answers
    heard = _hear(b"".join(b for _, b in master.round()))
    assert [h.address for h in heard] == [1, 3, 0]


def test_a_lost_ack_falls_back_to_the_trigger_before_the_frame() -> None:
    master = _bus(1)
    writes = [b for _, b in master.round()]
    ack = jk_pb.ack_frame(1, jk_pb.TRIGGER_LIVE, 1)
    heard = _hear(b"".join(b for b in writes if b != ack))
    assert [h.address for h in heard] == [1, 0]


def test_captured_answer_after_its_trigger_is_heard_as_address_1() -> None:
    """mpp-solar's captured JK-PB2A16S15P answer (frame + ACK from address 1) after its trigger."""
    vectors = {v["id"]: frame_bytes(v) for v in load_vectors("jk_pb")}
    data = (
        vectors["jkpb_req_trigger_status_0x1620"] + vectors["jkpb_resp_type02_status_pb2a16s15p_8s"]
    )
    heard = _hear(data, 4096)
    assert len(heard) == 1 and heard[0].address == 1
    assert jk_pb.to_reading(heard[0].values).current == pytest.approx(17.841)


def test_junk_between_frames_is_dropped() -> None:
    master = _bus(2)
    chunks = [b for _, b in master.round()]
    noisy = b"".join(b"\xff\x00\x07" + c for c in chunks)
    assert [h.address for h in _hear(noisy)] == [1, 2, 0]

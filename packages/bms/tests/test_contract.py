"""The driver contract, checked for every protocol in the registry: registering is enough.

Each protocol module must describe itself consistently, frame junk without stalling, raise only
FrameError on bad bytes, round-trip a simulated pack and reject the broken captured vectors.
The protocol's own test file checks what its fields mean.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.errors import FrameError
from bmsgate_bms.plausible import Limits, implausible
from bmsgate_bms.registry import NAMES, PROTOCOLS, info, protocol
from bmsgate_bms.sim import BOARDS, make_bus
from bmsgate_bms.sim.link import SimLink

from .conftest import VECTORS, frame_bytes, load_vectors

DOCS = Path(__file__).parents[3] / "docs" / "protocols"
JUNK = b"\x00\xee\xfe\x13"  # starts no frame of any protocol: no start byte, no bus address

every_protocol = pytest.mark.parametrize("name", NAMES)


def _contexts(name: str) -> list[dict[str, Any]]:
    """The decoding contexts the captured vectors need (what a frame does not carry)."""
    found: list[dict[str, Any]] = [{}]
    for vector in load_vectors(name):
        context = dict(vector.get("context", {}))
        context |= {k: vector[k] for k in ("start_register", "layout") if k in vector}
        context = _renamed(context)
        if context and context not in found:
            found.append(context)
    return found


def _renamed(context: dict[str, Any]) -> dict[str, Any]:
    """The vectors' context in decode_hex's words: cid2 is the command an answer belongs to,
    a Pace ``command`` of 255 the request for every pack at once."""
    out = dict(context)
    if "command" in out:
        out["all_packs"] = out.pop("command") == 0xFF
    if "cid2" in out:
        out["command"] = out.pop("cid2")
    return out


def _decode(name: str, raw: bytes, context: dict[str, Any]) -> dict[str, Any]:
    return protocol(name).decode_hex(raw, **context)


@every_protocol
def test_module_describes_itself(name: str) -> None:
    module = protocol(name)
    about = info(name)
    assert module.NAME == about.name == name
    assert PROTOCOLS[name] == f"bmsgate_bms.{name}"
    assert about.baudrate == module.BAUDRATE
    assert module.Driver.protocol == name
    assert isinstance(module.INFO.limits, Limits) and module.INFO.limits.max_current > 0
    assert about.label and about.manufacturer and about.model
    low, high = about.addresses
    assert 0 <= low <= high <= 247  # 0: Seplos and Pace DIP switches start there
    for variant_low, variant_high in about.variants.values():
        assert low <= variant_low <= variant_high <= high
    for step in about.scan:
        assert step.baudrate in about.baudrates
        assert step.variant is None or step.variant in about.variants
        first, last = about.address_range(step.variant)
        assert all(first <= a <= last for a in step.addresses)
    assert about.mos_switching or about.read_only_note, "say why commands are refused"


@every_protocol
def test_protocol_has_its_board_vectors_and_page(name: str) -> None:
    assert hasattr(importlib.import_module(BOARDS[name]), "Board")
    assert (VECTORS / f"{name}.json").exists()
    assert all(v["protocol"] for v in load_vectors(name))
    assert (DOCS / f"{name}.md").exists()


@every_protocol
@given(data=st.binary(max_size=400))
def test_framer_makes_progress_or_waits(name: str, data: bytes) -> None:
    framer = protocol(name).framer
    rest = data
    while rest:
        used, frame = framer(rest)
        assert 0 <= used <= len(rest)
        if used == 0:
            assert frame is None
            break
        if frame is not None:
            assert frame in rest[:used]
        rest = rest[used:]


@every_protocol
def test_framer_finds_each_captured_answer_among_junk(name: str) -> None:
    framer = protocol(name).framer
    answers = [v for v in load_vectors(name) if v["direction"] == "response" and v["verified"]]
    assert answers, "every protocol has captured answers"
    for vector in answers:
        raw = frame_bytes(vector)
        buf, frames = JUNK + raw + JUNK, []
        while buf:
            used, frame = framer(buf)
            if used == 0:
                break
            frames += [frame] if frame is not None else []
            buf = buf[used:]
        assert b"".join(frames) == raw, vector["id"]


@every_protocol
@given(data=st.data())
def test_decoder_raises_only_frame_errors(name: str, data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=400))
    context = data.draw(st.sampled_from(_contexts(name)))
    try:
        decoded = _decode(name, raw, context)
    except FrameError:
        return
    assert isinstance(decoded, dict)


@every_protocol
def test_captured_vectors(name: str) -> None:
    """Broken frames are refused; every verified answer decodes; every request is framed."""
    board = make_bus(name).boards[0]
    for vector in load_vectors(name):
        raw = frame_bytes(vector)
        context = dict(vector.get("context", {}))
        context |= {k: vector[k] for k in ("start_register", "layout") if k in vector}
        context = _renamed(context)
        if not vector["verified"]:
            with pytest.raises(FrameError):
                _decode(name, raw, context)
        elif vector["direction"] == "response":
            assert _decode(name, raw, context), vector["id"]
        else:
            assert board.request_framer(raw) == (len(raw), raw), vector["id"]
            assert protocol(name).decode_request(raw), vector["id"]


@every_protocol
@pytest.mark.parametrize("fault", ["none", "echo", "split", "glued"])
async def test_simulator_round_trip(name: str, fault: str) -> None:
    low, high = info(name).addresses
    boards = min(3, high - low + 1)
    bus = make_bus(name, boards=boards, cells=15)
    bus.faults.mode = fault  # type: ignore[assignment]
    link = SimLink(bus)
    for board in bus.boards:
        model = board.model
        model.profile, model.demand = False, -12.5
        model.step(1)
        reading = await protocol(name).Driver(link, board.address).read()
        assert reading.cell_voltages == pytest.approx(model.cell_voltages, abs=0.001)
        assert reading.pack_voltage == pytest.approx(model.pack_voltage, abs=0.1)
        assert reading.current == pytest.approx(model.current, abs=0.1)  # negative: discharging
        assert reading.soc == pytest.approx(model.soc, abs=1)
        assert implausible(reading, protocol(name).INFO.limits) is None


@every_protocol
async def test_commands_are_read_back_or_refused(name: str) -> None:
    about = info(name)
    bus = make_bus(name)
    driver = protocol(name).Driver(SimLink(bus), bus.boards[0].address)
    if about.mos_switching:
        assert await driver.set_mos(charge=True, on=False) is False
        assert bus.boards[0].model.charge_mos is False
        assert await driver.set_mos(charge=True, on=True) is True
    else:
        with pytest.raises(UnsupportedCommand):
            await driver.set_mos(charge=True, on=False)
    if about.soc_setting:
        assert await driver.set_soc(42.5) == pytest.approx(42.5, abs=1)
    else:
        with pytest.raises(UnsupportedCommand):
            await driver.set_soc(42.5)

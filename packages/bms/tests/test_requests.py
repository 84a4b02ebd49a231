"""Requests decode as requests and never as answers, for every protocol (captured vectors)."""

from __future__ import annotations

from typing import Any

import pytest

from bmsgate_bms import daly_classic
from bmsgate_bms.errors import FrameError
from bmsgate_bms.registry import NAMES, protocol

from .conftest import frame_bytes, load_vectors

FILES = {name: name for name in NAMES}  # every registered protocol: its vectors file


def _params(direction: str) -> list[Any]:
    return [
        pytest.param(name, v, id=v["id"])
        for name, file in FILES.items()
        for v in load_vectors(file)
        if v["direction"] == direction and v.get("verified", True)
    ]


def _echoed(name: str, frame: bytes) -> bool:
    """A DALY D2 write is answered by its own bytes: the same frame is request and answer."""
    return name == "daly_new" and frame[0] == 0xD2 and frame[1] == 0x06


@pytest.mark.parametrize(("name", "vector"), _params("request"))
def test_request_decodes_as_a_request(name: str, vector: dict[str, Any]) -> None:
    frame = frame_bytes(vector)
    decoded = protocol(name).decode_request(frame)
    named = getattr(protocol(name), "REQUEST_NAMES", {})  # the ASCII makes name their CID2 codes
    assert decoded["request"] in (
        "read",
        "write",
        "trigger",
        "read_all",
        "read_one",
        "password",
        "activate",
        *daly_classic.COMMAND_NAMES.values(),
        *named.values(),
    )
    if _echoed(name, frame):
        return
    with pytest.raises(FrameError, match="request"):
        protocol(name).decode_hex(frame)


@pytest.mark.parametrize(("name", "vector"), _params("response"))
def test_answer_is_not_a_request(name: str, vector: dict[str, Any]) -> None:
    frame = frame_bytes(vector)
    if _echoed(name, frame):
        return
    with pytest.raises(FrameError):
        protocol(name).decode_request(frame)


def _by_id(file: str, vector_id: str) -> bytes:
    return frame_bytes(next(v for v in load_vectors(file) if v["id"] == vector_id))


def test_request_fields() -> None:
    mos = protocol("daly_classic").decode_request(
        _by_id("daly_classic", "daly_req_d9_discharge_mos_on")
    )
    assert mos == {
        "request": "discharge_mos",
        "command": 0xD9,
        "host_address": 0x40,
        "board": 1,
        "on": True,
    }
    soc = protocol("daly_classic").decode_request(
        _by_id("daly_classic", "daly_req_0x21_set_soc_50pct")
    )
    assert soc["soc"] == 50.0
    trigger = protocol("jk_pb").decode_request(_by_id("jk_pb", "jkpb_req_trigger_settings_0x161e"))
    assert trigger == {
        "request": "trigger",
        "frame_type": 1,
        "address": 1,
        "register": 0x161E,
        "count": 1,
    }
    write = protocol("jk_pb").decode_request(_by_id("jk_pb", "jkpb_req_fc16_charge_switch_off"))
    assert (write["request"], write["register"], write["value"]) == ("write", 0x1070, 0)
    read = protocol("daly_new").decode_request(_by_id("daly_new", "daly_new_req_81_read_0041_x62"))
    assert read == {"request": "read", "variant": "81", "board": 1, "register": 0x41, "count": 62}
    jk = protocol("jk_uart").decode_request(_by_id("jk_uart", "jk_req_write_charge_mos_off"))
    assert (jk["request"], jk["identifier"], jk["value"]) == ("write", 0xAB, 0)

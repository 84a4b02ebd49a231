"""``bmsgate decode`` as a user runs it (a subprocess): real captured frames in, one JSON object out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms.registry import NAMES
from tests.support.vectors import PACK_STATE_NAMES

VECTORS = Path(__file__).parents[1] / "packages" / "bms" / "tests" / "vectors"

# protocol -> (vector file, vector id): one captured answer each, verified against its source
CASES = {
    "daly_classic": ("daly_classic", "daly_0x90_mpp_test_53v2"),
    "daly_new": ("daly_new", "daly_new_d2_status62_aiobmsble_4s"),
    "jk_uart": ("jk_uart", "jk_resp_16s_b1a24s15p_opendtu_1"),
    "jk_pb": ("jk_pb", "jkpb_resp_type02_status_pb2a16s15p_8s"),
}


def _vector(protocol: str) -> dict[str, Any]:
    name, vector_id = CASES[protocol]
    vectors = json.loads((VECTORS / f"{name}.json").read_text())
    return next(v for v in vectors if v["id"] == vector_id)


def _frame(protocol: str) -> bytes:
    return bytes.fromhex(_vector(protocol)["hex"].replace(" ", ""))


def _decode(protocol: str, *hex_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "decode", "--protocol", protocol, *hex_args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("protocol", sorted(CASES))
def test_decode_prints_one_json_object_with_pack_state_names(protocol: str) -> None:
    frame = _frame(protocol)
    spaced = frame.hex(" ")  # the form a capture is usually pasted in
    result = _decode(protocol, spaced)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    decoded = json.loads(lines[0])
    expected = _vector(protocol)["expected"]
    compared = 0
    for key, name in PACK_STATE_NAMES.items():
        if key in expected:
            # a DALY classic vector gives the 0x90 field as sent; the CLI signs it as the reader
            field = "current_field" if (protocol, name) == ("daly_classic", "current") else name
            assert decoded[field] == pytest.approx(expected[key]), name
            compared += 1
    assert compared >= 3
    assert {"pack_voltage", "current", "soc"} <= decoded.keys()


@pytest.mark.parametrize("protocol", sorted(CASES))
def test_bad_checksum_is_one_line_naming_it(protocol: str) -> None:
    frame = bytearray(_frame(protocol))
    # the checksum byte: the last one, except that a JK-PB answer ends with the FC 0x10 ACK
    # after the 300-byte 55 AA frame whose byte 299 is its sum
    frame[299 if protocol == "jk_pb" else -1] ^= 0x01
    result = _decode(protocol, frame.hex())
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bmsgate decode: invalid {protocol} frame: ")
    assert re.search(r"checksum|CRC|sum", lines[0])


@pytest.mark.parametrize("text", ["a5 01 zz", "a5 0"])
def test_bad_hex_is_one_line(text: str) -> None:
    result = _decode("daly_classic", text)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "not a hex string" in lines[0]
    assert "Traceback" not in result.stderr


def test_daly_classic_current_signed_by_the_state_of_the_same_poll() -> None:
    """0x90 raw 30500 (the field says +50.0 A) with the 0x93 answer saying discharging: -50.0 A."""
    body = bytes.fromhex("a5 01 90 08 02 14 00 00 77 24 03 78".replace(" ", ""))
    soc = body + bytes((sum(body) & 0xFF,))
    body = bytes.fromhex("a5 01 93 08 02 01 01 78 00 03 cb 40".replace(" ", ""))
    state = body + bytes((sum(body) & 0xFF,))
    result = _decode("daly_classic", soc.hex(" "), state.hex(" "))
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["current"] == -50.0
    assert decoded["current_field"] == 50.0
    assert decoded["state"] == "discharging"


@pytest.mark.parametrize(
    ("protocol", "frame"),
    [
        ("daly_classic", "a5 40 93 08 00 00 00 00 00 00 00 00 80"),
        ("jk_pb", "01 10 16 20 00 01 02 00 00 d6 f1"),
    ],
)
def test_a_request_is_an_error_unless_asked_for(protocol: str, frame: str) -> None:
    result = _decode(protocol, frame)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "is a request" in result.stderr
    result = _decode(protocol, "--request", frame)
    assert result.returncode == 0, result.stderr
    assert "request" in json.loads(result.stdout)


# context key of a vector -> the decode option that gives it
OPTIONS = {
    "cell_count": "--cell-count",
    "temp_sensor_count": "--temp-count",
    "start_register": "--start-register",
    "cid2": "--command",
}


def _pack_answer(name: str) -> dict[str, Any]:
    """The first verified answer of a protocol's vectors that carries a pack voltage."""
    vectors = json.loads((VECTORS / f"{name}.json").read_text())
    return next(
        v
        for v in vectors
        if v["direction"] == "response"
        and v["verified"]
        and "total_voltage_V" in v["expected"]
        and "command" not in v.get("context", {})
    )


@pytest.mark.parametrize("protocol", NAMES)
def test_every_registered_protocol_decodes_and_refuses_a_broken_frame(protocol: str) -> None:
    vector = _pack_answer(protocol)
    context = vector.get("context", {}) | {k: vector[k] for k in ("start_register",) if k in vector}
    options = [f"{OPTIONS[k]}={v}" for k, v in context.items() if k in OPTIONS]
    frame = bytes.fromhex(vector["hex"].replace(" ", ""))
    result = _decode(protocol, *options, frame.hex(" "))
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["pack_voltage"] == pytest.approx(vector["expected"]["total_voltage_V"])
    broken = _decode(protocol, *options, frame[: len(frame) // 2].hex())
    assert broken.returncode == 1 and broken.stdout == ""
    assert len(broken.stderr.splitlines()) == 1, broken.stderr
    assert broken.stderr.startswith(f"bmsgate decode: invalid {protocol} frame: ")

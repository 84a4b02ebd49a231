"""The register map as data: layout, encodings, and the documented table."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsgate_modbus.registers import (
    BASE,
    REGISTERS,
    SIZE,
    WIDTH,
    WordOrder,
    decode,
    encode,
    encode_block,
    markdown_table,
)

DOC = Path(__file__).parents[3] / "docs" / "modbus.md"


def test_no_two_rows_share_a_register() -> None:
    used: dict[int, str] = {}
    for reg in REGISTERS:
        for offset in range(reg.offset, reg.offset + WIDTH[reg.type]):
            assert offset not in used, f"{reg.quantity} overlaps {used[offset]} at {offset}"
            used[offset] = reg.quantity
    assert max(used) == SIZE - 1
    assert BASE == 144


def test_the_dongles_legible_offsets_are_kept() -> None:
    # SEED.md feature 6: the offsets the manual's scan shows clearly
    # fmt: off
    legible = {
        0: "soc", 1: "pack_voltage", 2: "current", 3: "power", 4: "cell_delta",
        5: "cell_average", 6: "cell_max", 7: "cell_min", 8: "temperature", 10: "pack_voltage",
        12: "current", 14: "power", 35: "cell_count", 40: "daily_max_soc",
        41: "daily_max_soc_hour", 42: "daily_max_soc_minute", 44: "remaining_capacity",
        45: "failure", 50: "free_memory", 51: "uptime", 52: "time_zone", 53: "dashboard_id",
        54: "display_word_1", 56: "display_word_2",
    }
    # fmt: on
    by_offset = {r.offset: r for r in REGISTERS}
    for offset, quantity in legible.items():
        assert by_offset[offset].quantity == quantity
    assert [by_offset[o].type for o in (8, 10, 12, 14)] == ["float32"] * 4
    assert by_offset[2].type == by_offset[3].type == by_offset[52].type == "s16"
    assert by_offset[54].type == by_offset[56].type == "u32"


@pytest.mark.parametrize(
    ("value", "reg_type", "scale", "order", "regs"),
    [
        (87, "u16", 1, "big", [87]),
        (53.25, "u16", 100, "big", [5325]),
        (-12.5, "s16", 10, "big", [0xFF83]),
        (-0.05, "s16", 10, "big", [0xFFFF]),  # -0.5 rounds away from zero
        (0.05, "s16", 10, "big", [1]),
        (70000, "u16", 1, "big", [0xFFFF]),  # clamped, never wrapped
        (-5, "u16", 1, "big", [0]),
        (-40000, "s16", 1, "big", [0x8000]),
        (math.nan, "u16", 1, "big", [0]),
        (math.inf, "s16", 1, "big", [0x7FFF]),
        (53.25, "float32", 1, "big", [0x4255, 0x0000]),  # ABCD (LIBS.md section 3)
        (53.25, "float32", 1, "little", [0x0000, 0x4255]),  # CDAB
        (-12.5, "float32", 1, "little", [0x0000, 0xC148]),
        (1e300, "float32", 1, "big", [0x7F80, 0x0000]),  # beyond float32: infinity
        (0x1264320A, "u32", 1, "big", [0x1264, 0x320A]),
        (0x1264320A, "u32", 1, "little", [0x320A, 0x1264]),
        (-2, "s32", 1, "big", [0xFFFF, 0xFFFE]),
        (-2, "s32", 1, "little", [0xFFFE, 0xFFFF]),
    ],
)
def test_encode(value: float, reg_type: str, scale: float, order: str, regs: list[int]) -> None:
    assert encode(value, reg_type, scale, order) == regs  # type: ignore[arg-type]


@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"])
)
def test_float32_round_trips_bit_exact(value: float, order: str) -> None:
    regs = encode(value, "float32", 1, order)  # type: ignore[arg-type]
    assert all(0 <= r <= 0xFFFF for r in regs)
    back = decode(regs, "float32", 1, order)  # type: ignore[arg-type]
    assert struct.pack(">f", back) == struct.pack(">f", value)


@given(st.integers(-0x8000, 0x7FFF))
def test_s16_round_trips(value: int) -> None:
    assert decode(encode(value, "s16", 1, "big"), "s16", 1, "big") == value


def test_a_block_of_nothing_is_zeros() -> None:
    assert encode_block({}, "little") == [0] * SIZE


def test_docs_show_the_map_of_the_code() -> None:
    assert markdown_table() in DOC.read_text(encoding="utf-8"), (
        "docs/modbus.md's table differs from registers.py; paste markdown_table() into it"
    )


_QUANTITY = st.sampled_from(sorted({r.quantity for r in REGISTERS}))
_VALUE = st.one_of(st.floats(allow_infinity=True, allow_nan=True, width=32), st.integers(-9, 9))


@given(
    st.dictionaries(_QUANTITY, _VALUE),
    st.dictionaries(_QUANTITY, _VALUE),
    st.lists(_QUANTITY),
    st.sampled_from(["big", "little"]),
)
def test_a_block_encoded_again_from_the_last_one_equals_one_encoded_whole(
    first: dict[str, float], changes: dict[str, float], gone: list[str], word_order: WordOrder
) -> None:
    # quantities that stay, change, appear, vanish (read 0 again) or are NaN
    then = {k: v for k, v in {**first, **changes}.items() if k not in gone}
    last = encode_block(first, word_order)
    assert encode_block(then, word_order, (first, last)) == encode_block(then, word_order)

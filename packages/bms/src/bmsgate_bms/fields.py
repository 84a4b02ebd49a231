"""Table-driven field decoding: the one place that slices bytes into numbers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

from .errors import LengthError


class Field(NamedTuple):
    """One numeric field of a frame or register block: value = (raw + offset) * scale."""

    key: str
    pos: int  # byte offset into the data
    size: int  # bytes
    signed: bool = False
    offset: int = 0  # added to the raw integer before scaling
    scale: float = 1.0
    byteorder: Literal["big", "little"] = "big"


def read_int(
    data: bytes,
    pos: int,
    size: int,
    *,
    signed: bool = False,
    byteorder: Literal["big", "little"] = "big",
) -> int:
    """Return the integer at data[pos:pos+size]; raise LengthError when the data is too short."""
    if pos < 0 or pos + size > len(data):
        raise LengthError(f"need {pos + size} bytes, have {len(data)}")
    return int.from_bytes(data[pos : pos + size], byteorder, signed=signed)


def decode_field(field: Field, data: bytes) -> float:
    """Decode one field; integers stay integers when the scale is 1."""
    raw = read_int(data, field.pos, field.size, signed=field.signed, byteorder=field.byteorder)
    if field.scale == 1.0:
        return raw + field.offset
    return round((raw + field.offset) * field.scale, 6)


def decode(fields: Iterable[Field], data: bytes) -> dict[str, float]:
    """Decode every field of a table into a dict keyed by the field keys."""
    return {f.key: decode_field(f, data) for f in fields}

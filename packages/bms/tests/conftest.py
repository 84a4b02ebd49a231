"""Shared helpers for protocol tests: the captured vectors (copied from shared/protocols/vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.vectors import PACK_STATE_NAMES

VECTORS = Path(__file__).parent / "vectors"
__all__ = ["PACK_STATE_NAMES", "frame_bytes", "load_vectors", "vector_params"]


def load_vectors(name: str) -> list[dict[str, Any]]:
    """All vectors of one protocol file, e.g. ``daly_classic``."""
    return json.loads((VECTORS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def vector_params(name: str, direction: str) -> list[Any]:
    """pytest params (id = vector id) of one direction."""
    import pytest

    return [pytest.param(v, id=v["id"]) for v in load_vectors(name) if v["direction"] == direction]


def frame_bytes(vector: dict[str, Any]) -> bytes:
    """The vector's bytes."""
    return bytes.fromhex(vector["hex"].replace(" ", ""))

"""Typed topics: mypy refuses a payload of the wrong model and a topic that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[3]

GOOD = """
from bmsgate_common import topics
from bmsgate_common.models import Availability, PackState
from bmsgate_common.mqtt import Backbone

async def ok(bb: Backbone, avail: Availability) -> None:
    await bb.publish(topics.AVAILABILITY, "garage", avail)

async def on_state(name: str, state: PackState) -> None: ...

def wire(bb: Backbone) -> None:
    bb.subscribe(topics.STATE, on_state)
"""

BAD = """
from bmsgate_common import topics
from bmsgate_common.models import Availability, PackState
from bmsgate_common.mqtt import Backbone

async def wrong_payload(bb: Backbone, avail: Availability) -> None:
    await bb.publish(topics.STATE, "garage", avail)

async def unknown_kind(bb: Backbone, state: PackState) -> None:
    await bb.publish(topics.STAET, "garage", state)

async def on_avail(name: str, avail: Availability) -> None: ...

def wrong_handler(bb: Backbone) -> None:
    bb.subscribe(topics.STATE, on_avail)
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's errors per snippet, from one run over both (a cold run takes ~20 s)."""
    tmp = tmp_path_factory.mktemp("typed-topics")
    (tmp / "good.py").write_text(GOOD)
    (tmp / "bad.py").write_text(BAD)
    # fmt: off
    out, err, _ = api.run(
        [
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp / "cache"),
            "--follow-imports", "silent",
            str(tmp / "good.py"), str(tmp / "bad.py"),
        ]
    )
    # fmt: on
    errors = [line for line in (out + err).splitlines() if ": error:" in line]
    return {name: [e for e in errors if f"{name}.py:" in e] for name in ("good", "bad")}


def test_right_payloads_type_check(checked: dict[str, list[str]]) -> None:
    assert checked["good"] == []


def test_wrong_payload_and_unknown_kind_are_type_errors(checked: dict[str, list[str]]) -> None:
    bad = checked["bad"]
    assert any("bad.py:7:" in line and "publish" in line for line in bad), bad
    assert any("bad.py:10:" in line and "STAET" in line for line in bad), bad
    assert any("bad.py:15:" in line and "subscribe" in line for line in bad), bad
    assert len(bad) == 3, bad

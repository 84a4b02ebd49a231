"""schemas/ is generated from the models; any drift fails here (regenerate with scripts/export_schemas.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from bmsgate_common.schemas import render

SCHEMAS = Path(__file__).parents[1] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    generated = render()
    committed = {p.name for p in SCHEMAS.glob("*.json")}
    assert committed == set(generated), "schemas/ has missing or extra files"
    for name, text in generated.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, (
            f"{name} is out of date: run `uv run python scripts/export_schemas.py`"
        )


def test_every_schema_is_a_valid_json_schema() -> None:
    for path in SCHEMAS.glob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads((SCHEMAS / "command.v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"transaction": "t1", "action": "set_charge_mos", "value": True})
    assert not validator.is_valid({"transaction": "t1", "action": "explode"})
    assert not validator.is_valid({"transaction": "t1", "action": "reset", "extra": 1})

"""Every backbone message model refuses arbitrary JSON and raw bytes with a ValidationError only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bmsgate_common.topics import TOPICS
from tests.reliability.counts import COUNTS

EXAMPLES = 60
MODELS = sorted({spec.model for spec in TOPICS.values()}, key=lambda m: m.__name__)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def shaped(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own field names, so validation goes past the first key."""
    fields = list(model.model_fields)
    return st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields))


def check(model: type[BaseModel], payload: str | bytes) -> None:
    try:
        model.model_validate_json(payload)
    except ValidationError:
        COUNTS[f"models: {model.__name__} refused"] += 1
    else:
        COUNTS[f"models: {model.__name__} accepted"] += 1


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_json_payloads_raise_only_validation_error(model: type[BaseModel]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(json_values, shaped(model)))
    def run(value: Any) -> None:
        COUNTS["models: json examples"] += 1
        check(model, json.dumps(value))

    run()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_raw_bytes_raise_only_validation_error(model: type[BaseModel]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=200))
    def run(raw: bytes) -> None:
        COUNTS["models: bytes examples"] += 1
        check(model, raw)

    run()

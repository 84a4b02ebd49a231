"""The configuration loader: random YAML documents, mappings and BMSGATE_* variables.

Only ConfigError comes out, and its message is always one line. The three findings of the first
run (docs/reliability.md) keep a regression test each at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmsgate_common.settings import ConfigError, Settings, load_settings
from tests.reliability.counts import COUNTS

EXAMPLES = 150
SECTIONS = list(Settings.model_fields)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=15)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
keys = st.sampled_from(SECTIONS) | st.text(max_size=10)
# keys of the real sections with the real field names under them, so validation goes deep
section_fields = {
    name: list(getattr(field.annotation, "model_fields", {}))
    for name, field in Settings.model_fields.items()
}
deep = st.dictionaries(
    st.sampled_from(SECTIONS),
    st.one_of(
        values,
        st.sampled_from(SECTIONS).flatmap(
            lambda s: st.dictionaries(
                st.sampled_from(section_fields[s] or ["x"]), values, max_size=4
            )
        ),
    ),
    max_size=4,
)
documents = st.one_of(
    st.text(max_size=200),  # anything at all, mostly not YAML mappings
    st.dictionaries(keys, values, max_size=5).map(lambda d: yaml.safe_dump(d)),
    deep.map(lambda d: yaml.safe_dump(d)),
)


def load(text: str, env: dict[str, str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        saved = {k: v for k, v in os.environ.items() if k.startswith("BMSGATE_")}
        for k in saved:
            del os.environ[k]
        os.environ.update(env or {})
        try:
            load_settings(path)
        except ConfigError as err:
            COUNTS["config: ConfigError"] += 1
            message = str(err)
            assert message and "\n" not in message and "\r" not in message, repr(message)
        else:
            COUNTS["config: accepted"] += 1
        finally:
            for k in env or {}:
                os.environ.pop(k, None)
            os.environ.update(saved)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_random_yaml_documents_give_only_one_line_config_errors(text: str) -> None:
    COUNTS["config: yaml examples"] += 1
    load(text)


env_names = st.sampled_from(SECTIONS).flatmap(
    lambda s: st.sampled_from(
        [f"BMSGATE_{s.upper()}"] + [f"BMSGATE_{s.upper()}__{f.upper()}" for f in section_fields[s]]
    )
)
env_values = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(env_names, env_values, max_size=3))
def test_random_environment_gives_only_one_line_config_errors(env: dict[str, str]) -> None:
    COUNTS["config: env examples"] += 1
    load("", env)


def test_finding1_a_key_with_a_line_break_still_gives_one_line() -> None:
    load('"bad\\nkey": 1\n')


def test_finding2_an_env_value_that_is_not_json_is_a_config_error() -> None:
    load("", {"BMSGATE_API__HOST": "["})


def test_finding3_a_scalar_and_a_nested_env_name_for_one_section_is_a_config_error() -> None:
    load("", {"BMSGATE_API": "x", "BMSGATE_API__PORT": "1"})
    load("", {"BMSGATE_API__PORT": "1", "BMSGATE_API": "x"})

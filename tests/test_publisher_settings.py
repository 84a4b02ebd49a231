"""The publisher and banks sections of the settings: one-line errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from bmsgate_common.settings import ConfigError, load_settings

BUSES = [
    {
        "port": "/dev/null",
        "protocol": "daly_classic",
        "packs": [{"id": "a"}, {"id": "b", "address": 2}],
    }
]


def load(**data: Any) -> Any:
    return load_settings(None, buses=BUSES, **data)


def test_defaults_are_safe_and_empty() -> None:
    cfg = load()
    assert cfg.publisher.targets == [] and cfg.banks == []
    target = load(publisher={"targets": [{"name": "ha"}]}).publisher.targets[0]
    assert target.host is None and target.interval == 5 and not target.homeassistant.enabled
    assert target.dongle.style == "type2" and len(target.dongle.fields) == 10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"publisher": {"targets": [{"name": "x", "interval": 0.5}]}},
            "bad value for 'publisher.targets.0.interval': must be at least 1",
        ),
        ({"publisher": {"targets": [{"name": "x"}, {"name": "x"}]}}, "two targets share a name"),
        ({"publisher": {"targets": [{"name": "Bad Name"}]}}, "'publisher.targets.0.name'"),
        (
            {"publisher": {"targets": [{"name": "x", "dongle": {"fields": ["soc", "pie"]}}]}},
            "'publisher.targets.0.dongle.fields.1'",
        ),
        (
            {"publisher": {"targets": [{"name": "x", "topic_prefix": "a/+/b"}]}},
            "'publisher.targets.0.topic_prefix'",
        ),
        (
            {"publisher": {"targets": [{"name": "x", "pasword": "typo"}]}},
            "unknown key 'publisher.targets.0.pasword'",
        ),
        ({"banks": [{"id": "bank", "packs": ["a", "zz"]}]}, "bank 'bank' names unknown packs: zz"),
        ({"banks": [{"id": "a", "packs": ["a", "b"]}]}, "bank id 'a' is already a pack or bank id"),
        ({"banks": [{"id": "bank", "packs": ["a"]}]}, "'banks.0.packs'"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")) as err:
        load(**data)
    assert "\n" not in str(err.value)


def test_password_is_secret() -> None:
    cfg = load(publisher={"targets": [{"name": "x", "password": "hunter2"}]})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.publisher)

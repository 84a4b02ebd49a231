from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bmsgate_common import topics
from bmsgate_common.models import Command, PackState, ServiceStatus

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def state(**over: object) -> PackState:
    fields: dict[str, object] = {
        "pack": "garage",
        "name": "Garage",
        "protocol": "daly_classic",
        "ts": NOW,
        "pack_voltage": 53.2,
        "current": -2.1,
        "power": -111.7,
        "soc": 88.8,
        "cell_voltages": [3.3, 3.31, 3.32],
        "cell_count": 3,
    }
    return PackState.model_validate(fields | over)


def test_state_round_trips_through_json() -> None:
    original = state(temperatures=[21.0], alarms=["cell_overvoltage"], extras={"bms_life": 3})
    assert PackState.model_validate_json(original.model_dump_json()) == original
    assert original.cell_delta == pytest.approx(0.02)
    assert original.cell_average == pytest.approx(3.31)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ts": datetime(2026, 1, 1)}, "timezone"),
        ({"soc": 101}, "less than or equal to 100"),
        ({"cell_count": 4}, "cell_count is 4 but 3 voltages"),
        ({"pack": "Garage/1"}, "pattern"),
        ({"protocol": "victron"}, "daly_classic"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_state_refuses_bad_values(over: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        state(**over)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"transaction": "t-1", "action": "set_charge_mos", "value": True}, True),
        ({"transaction": "t-1", "action": "set_charge_mos", "value": 1}, False),
        ({"transaction": "t-1", "action": "set_soc", "value": 55.5}, True),
        ({"transaction": "t-1", "action": "set_soc", "value": 120}, False),
        ({"transaction": "t-1", "action": "set_soc", "value": True}, False),
        ({"transaction": "t-1", "action": "reset"}, True),
        ({"transaction": "t-1", "action": "reset", "value": 1}, False),
        ({"transaction": "", "action": "reset"}, False),
        ({"transaction": "a b", "action": "reset"}, False),
    ],
)
def test_command_value_must_fit_the_action(body: dict[str, object], ok: bool) -> None:
    if ok:
        Command.model_validate(body)
    else:
        with pytest.raises(ValidationError):
            Command.model_validate(body)


def test_service_name_is_one_topic_level() -> None:
    ServiceStatus(service="reader-0", state="online")
    with pytest.raises(ValidationError):
        ServiceStatus(service="reader/0", state="online")


def test_topics_are_built_and_parsed_from_one_map() -> None:
    assert topics.STATE.topic("garage") == "bmsgate/bms/garage/state"
    assert topics.SERVICE_STATUS.topic("api", "home/bms") == "home/bms/service/api/status"
    assert topics.AVAILABILITY.subscription() == "bmsgate/bms/+/availability"
    assert topics.STATE.name_in("bmsgate/bms/garage/state") == "garage"
    assert topics.STATE.name_in("bmsgate/bms/garage/alarm") is None
    assert topics.STATE.name_in("bmsgate/bms/garage/state/x") is None
    assert topics.COMMAND.name_in("home/bms/bms/p1/set", "home/bms") == "p1"
    assert topics.STATE.retained and topics.AVAILABILITY.retained
    assert all(kind == spec.kind for kind, spec in topics.TOPICS.items())

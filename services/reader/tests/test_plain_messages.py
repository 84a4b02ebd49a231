"""The lean reader's plain messages are the models' (bmsgate_common.plain against models.py).

The field list comes from each model's ``model_fields`` here, at test time: a field added to a
model and not to its builder fails, and so does a value the model would refuse or change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from bmsgate_bms.reading import BmsReading
from bmsgate_bms.registry import protocol
from bmsgate_bms.setpoints import table_of
from bmsgate_common import plain
from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    BmsSettings,
    PackState,
    ServiceStatus,
    SettingValue,
    SniffState,
)
from bmsgate_common.settings import PackSettings
from bmsgate_reader.core import BusPoller
from bmsgate_reader.lean import PlainMessages
from bmsgate_reader.logic import EnergyCounter, state_fields
from bmsgate_reader.service import ModelMessages

T0 = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)


def same(model: type[BaseModel], message: dict[str, Any]) -> BaseModel:
    """``message`` has exactly the model's fields and, as JSON, validates to equal values."""
    assert set(message) == set(model.model_fields), model.__name__
    parsed = model.model_validate_json(plain.encode(message))
    assert parsed == model(**message)
    # the same JSON as the model writes (the order of the keys aside)
    assert json.loads(parsed.model_dump_json()) == json.loads(plain.encode(message))
    return parsed


def state() -> dict[str, Any]:
    reading = BmsReading(
        pack_voltage=52.1,
        current=-10.25,
        soc=55.5,
        cell_voltages=[3.25] * 15 + [3.3],
        temperatures=[21.0, 22.5],
        cycles=12,
        alarms=["cell_undervoltage"],
        extras={"firmware": "1.2", "nested": {"no": 1}},
    )
    pack = PackSettings(id="shed", name="Shed", nominal_capacity=280)
    fields = state_fields(reading, pack, "daly_classic", T0)
    energy = EnergyCounter()
    energy.add(T0, fields["power"], fields["current"], 0.0)
    energy.add(T0, fields["power"], fields["current"], 10.0)
    return fields | energy.totals() | {"extras": {**fields["extras"], "balancer_enabled": True}}


def test_a_pack_state_is_the_model() -> None:
    fields = state()
    parsed = same(PackState, plain.pack_state(fields))
    assert parsed == ModelMessages().pack_state(fields)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Availability, {"pack": "shed", "state": "online", "ts": T0}),
        (Availability, {"pack": "shed", "state": "offline", "ts": T0, "reason": "no answer"}),
        (
            AlarmEvent,
            {
                "pack": "shed",
                "ts": T0,
                "code": "cell_undervoltage",
                "level": "alarm",
                "text": "cell 1 undervoltage",
                "active": True,
            },
        ),
        (SniffState, {"bus": "reader-0", "enabled": False, "ts": T0}),
        (SniffState, {"bus": "reader-0", "enabled": True, "ts": T0, "transaction": "t-1"}),
    ],
)
def test_each_message_is_its_model(model: type[BaseModel], fields: dict[str, Any]) -> None:
    lean, full = PlainMessages(), ModelMessages()
    name = {
        Availability: "availability",
        AlarmEvent: "alarm_event",
        SniffState: "sniff_state",
    }[model]
    parsed = same(model, getattr(lean, name)(**fields))
    assert parsed == getattr(full, name)(**fields)


def test_a_service_status_and_its_last_will_are_the_model() -> None:
    detail = {"dropped": 0, "unsent": 2, "port": "/dev/ttyUSB0", "port_open": True, "x": None}
    same(ServiceStatus, plain.service_status("reader-0", "online", T0, "1.0", T0, detail))
    same(ServiceStatus, plain.service_status("reader-0", "offline", T0, "1.0"))
    will = ServiceStatus(service="reader-0", state="offline", version="1.0")
    assert plain.will("reader-0", "1.0") == will.model_dump_json(exclude_none=True).encode()


async def test_the_settings_message_is_the_model() -> None:
    points = table_of(protocol("daly_classic"), None)
    values = {point.key: 3.65 for point in points}

    class Sink(BusPoller):
        async def send(self, kind: str, name: str, message: Any) -> bool:
            self.sent.append(message)
            return True

    sent: dict[str, Any] = {}
    for messages in (PlainMessages(), ModelMessages()):
        bus = type("Bus", (), {})()  # only what _publish_settings reads
        sink = object.__new__(Sink)
        sink.sent, sink.messages, sink.setpoints, sink.bus = [], messages, points, bus
        bus.protocol = "daly_classic"
        pack = type("P", (), {"cfg": PackSettings(id="shed"), "settings": {}})()
        await sink._publish_settings(pack, values)  # type: ignore[arg-type]
        sent[type(messages).__name__] = sink.sent[0]
    message = sent["PlainMessages"]
    assert message["settings"] and all(
        set(row) == set(SettingValue.model_fields) for row in message["settings"]
    )
    parsed = BmsSettings.model_validate_json(plain.encode(message))
    assert parsed.model_copy(update={"ts": T0}) == sent["ModelMessages"].model_copy(
        update={"ts": T0}
    )
    assert set(message) == set(BmsSettings.model_fields)

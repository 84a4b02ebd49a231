"""The one table of unit conversions: both directions, whole units, register steps."""

from __future__ import annotations

import pytest

from bmsgate_common.units import UnitError, convert, factor, shown, step


def test_both_directions_come_from_one_row() -> None:
    assert convert(3.3051, "V", "mV") == 3.3051 * 1000
    assert convert(3305.1, "mV", "V") == 3305.1 / 1000
    assert convert(1234.5, "Wh", "kWh") == 1.2345  # divided: no 1.2345000000000002
    assert convert(0.5, "kWh", "Wh") == 500.0
    assert factor("V", "mV") == 1000.0 and factor("Wh", "kWh") == 0.001
    assert convert(7.25, "Ah", "Ah") == 7.25 and factor("°C", "°C") == 1.0


def test_millivolts_are_shown_whole() -> None:
    assert shown(3.3051, "V", "mV") == 3305 and isinstance(shown(3.3051, "V", "mV"), int)
    assert shown(0.0125, "kWh", "kWh") == 0.0125


def test_an_undeclared_pair_is_an_error() -> None:
    with pytest.raises(UnitError, match="no conversion from V to kWh"):
        convert(1.0, "V", "kWh")


@pytest.mark.parametrize(
    ("unit", "scale", "want"),
    [("V", 1000, "mV"), ("V", 100, "0.01 V"), ("A", 10, "0.1 A"), ("%", 1, "%")],
)
def test_a_register_step_is_named_from_unit_and_scale(unit: str, scale: float, want: str) -> None:
    assert step(unit, scale) == want

"""The site's one time zone: explicit, else from the coordinates, else the machine's."""

from __future__ import annotations

import pytest

from bmsgate_common.settings import ConfigError, Settings, load_settings
from bmsgate_common.timezones import find_zone, machine_zone, site_zone, zone_name

VIENNA = (48.21, 16.37)


def test_zone_from_coordinates_offline() -> None:
    assert zone_name(find_zone(*VIENNA)) == "Europe/Vienna"
    assert zone_name(find_zone(-36.85, 174.76)) == "Pacific/Auckland"
    assert zone_name(find_zone(*VIENNA, "UTC")) == "UTC"


def test_site_zone_explicit_then_coordinates_then_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    where = {"latitude": VIENNA[0], "longitude": VIENNA[1]}
    both = Settings.model_validate({"timezone": "Asia/Tokyo", "notifier": where})
    assert zone_name(site_zone(both)) == "Asia/Tokyo"
    assert zone_name(site_zone(Settings.model_validate({"notifier": where}))) == "Europe/Vienna"
    monkeypatch.setenv("TZ", "America/Denver")
    find_zone.cache_clear()
    try:
        assert zone_name(site_zone(Settings())) == zone_name(machine_zone()) == "America/Denver"
    finally:
        find_zone.cache_clear()


@pytest.mark.parametrize("section", ["history", "notifier"])
def test_a_zone_per_section_is_refused_naming_the_key(section: str) -> None:
    with pytest.raises(ConfigError, match=f"'{section}.timezone' is now the top-level key"):
        load_settings(None, **{section: {"timezone": "UTC"}})


def test_an_unknown_zone_is_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        load_settings(None, timezone="Mars/Olympus")

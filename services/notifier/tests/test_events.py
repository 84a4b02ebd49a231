from __future__ import annotations

from datetime import date, datetime, timedelta

from bmsgate_common.models import HealthFinding, HealthReport, ServiceStatus
from bmsgate_common.service import READER_STOPPED
from bmsgate_notifier.events import Detector
from tests.support.notify import T0, alarm, avail, settings, state


def kinds(events: list) -> list[str]:
    return [e.kind for e in events]


def test_alarm_names_pack_and_cell() -> None:
    d = Detector(settings())
    d.on_state("garage", state())
    [raised] = d.on_alarm("garage", alarm())
    assert raised.body == "Garage: cell 12 over-voltage, 3.65 V"
    assert raised.title == "Garage: alarm" and raised.priority == "high"
    [cleared] = d.on_alarm("garage", alarm(active=False, text="cell 12 over-voltage, 3.52 V"))
    assert cleared.kind == "alarm_cleared" and cleared.subject == raised.subject
    assert "cleared" in cleared.body and cleared.priority == "low"
    assert [t for _, t in d.take_alarm_log()] == ["Garage: cell 12 over-voltage, 3.65 V"]
    assert d.take_alarm_log() == []


def test_soc_full_and_low_with_hysteresis() -> None:
    d = Detector(settings(low_soc=20, soc_hysteresis=5))
    assert d.on_state("garage", state(soc=90)) == []
    assert kinds(d.on_state("garage", state(soc=100))) == ["soc_full"]
    assert d.on_state("garage", state(soc=99)) == []
    assert d.on_state("garage", state(soc=100)) == []  # not re-armed: only 1 % down
    assert d.on_state("garage", state(soc=94)) == []
    assert kinds(d.on_state("garage", state(soc=100))) == ["soc_full"]
    assert kinds(d.on_state("garage", state(soc=19))) == ["soc_low"]
    assert d.on_state("garage", state(soc=22)) == []
    assert d.on_state("garage", state(soc=18)) == []
    assert d.on_state("garage", state(soc=26)) == []
    [low] = d.on_state("garage", state(soc=15))
    assert low.body == "Garage: SOC down to 15 % (alert at 20 %)" and low.priority == "high"


def test_low_soc_at_first_sight_is_told_full_is_not() -> None:
    assert kinds(Detector(settings()).on_state("garage", state(soc=10))) == ["soc_low"]
    assert Detector(settings()).on_state("garage", state(soc=100)) == []


def test_cell_delta_hysteresis() -> None:
    d = Detector(settings(cell_delta=0.1, cell_delta_clear=0.05))
    cells = [3.30] * 16
    assert d.on_state("garage", state(cells=cells)) == []
    high = [*cells[:2], 3.42, *cells[3:8], 3.31, *cells[9:]]
    high[8] = 3.30
    high[5] = 3.31
    [ev] = d.on_state("garage", state(cells=high))
    assert (
        ev.kind == "cell_delta" and "cell delta 120 mV" in ev.body and "cell 3 3.420 V" in ev.body
    )
    assert d.on_state("garage", state(cells=[3.37] + [3.30] * 15)) == []  # 70 mV: still high
    [ok] = d.on_state("garage", state(cells=[3.34] + [3.30] * 15))
    assert ok.kind == "cell_delta_ok" and ok.subject == ev.subject


def test_availability_edges() -> None:
    d = Detector(settings(), names={"garage": "Garage"})  # names from the config
    assert d.on_availability("garage", avail(True)) == []
    [off] = d.on_availability("garage", avail(False))
    assert off.body == "Garage: the BMS does not answer (no answer 3 times)"
    assert d.on_availability("garage", avail(False)) == []
    assert kinds(d.on_availability("garage", avail(True))) == ["online"]
    # offline when first seen (retained at start) is told
    assert kinds(Detector(settings()).on_availability("garage", avail(False))) == ["offline"]


def test_a_stopped_reader_is_no_bms_offline() -> None:
    d = Detector(settings())
    stopped = avail(False).model_copy(update={"reason": READER_STOPPED})
    assert d.on_availability("garage", avail(True)) == []
    assert d.on_availability("garage", stopped) == []  # a reader restarted for a new config
    assert d.on_availability("garage", avail(True)) == []
    assert Detector(settings()).on_availability("garage", stopped) == []  # retained at start
    assert kinds(d.on_availability("garage", avail(False))) == ["offline"]  # the BMS went silent
    assert d.on_availability("garage", stopped) == []
    assert kinds(d.on_availability("garage", avail(True))) == ["online"]  # its return still is


def test_health_findings_once_each() -> None:
    d = Detector(settings())
    f = HealthFinding(
        kind="weak_cell",
        cell=7,
        since=date(2026, 5, 30),
        last_seen=date(2026, 6, 1),
        value=42.0,
        evidence="cell 7 leads by 42 mV under load on 3 of 7 days",
    )
    r = HealthReport(pack="garage", ts=T0, findings=[f])
    [ev] = d.on_health("garage", r)
    assert ev.body == "garage: weak cell cell 7: cell 7 leads by 42 mV under load on 3 of 7 days"
    assert d.on_health("garage", r) == []
    assert d.on_health("garage", HealthReport(pack="garage", ts=T0)) == []
    assert len(d.on_health("garage", r)) == 1  # came back


def when(seconds: float) -> tuple[datetime, float]:
    """The wall and the monotonic clock ``seconds`` after T0 (monotonic 1000 s at T0)."""
    return T0 + timedelta(seconds=seconds), 1000.0 + seconds


def test_service_down_after_grace_only() -> None:
    d = Detector(settings(service_grace=60))
    will = ServiceStatus(service="reader-0", state="offline")
    online = ServiceStatus(service="reader-0", state="online", ts=T0)
    assert d.on_service("reader-0", will, *when(0)) == []
    assert d.on_service("reader-0", online, *when(5)) == []  # a quick restart
    assert d.tick(*when(120)) == []
    d.on_service("reader-0", will, *when(200))
    assert d.tick(*when(250)) == []
    [down] = d.tick(*when(261))
    assert down.kind == "service_down" and "without a goodbye" in down.body
    assert d.tick(*when(400)) == []
    assert kinds(d.on_service("reader-0", online, *when(500))) == ["service_up"]
    assert d.on_service("notifier", will, *when(0)) == []  # never about itself


def test_a_service_left_out_by_the_configuration_is_not_down() -> None:
    d = Detector(settings(service_grace=60))
    stopped = ServiceStatus(service="tunnel", state="offline", ts=T0)
    left_out = ServiceStatus(
        service="tunnel", state="offline", ts=T0, detail={"left_out": "control.enabled is false"}
    )
    assert d.on_service("tunnel", stopped, *when(0)) == []
    assert d.on_service("tunnel", left_out, *when(1)) == []
    assert d.tick(*when(300)) == []
    online = ServiceStatus(service="tunnel", state="online", ts=T0)
    assert d.on_service("tunnel", online, *when(400)) == []  # no "back" either

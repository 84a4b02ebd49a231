"""A known pack state and every register it must produce, computed by hand (not by the code)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from bmsgate_common.models import DailyStats, PackState

NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)


def known_state(
    pack: str = "garage", ts: datetime = NOW - timedelta(seconds=2), **over: Any
) -> PackState:
    data: dict[str, Any] = {
        "pack": pack,
        "name": pack.title(),
        "protocol": "daly_classic",
        "ts": ts,
        "pack_voltage": 53.25,
        "current": -12.5,
        "power": -665.625,
        "soc": 87.0,
        "cell_voltages": [round(3.300 + n / 1000, 3) for n in range(1, 16)] + [3.320],
        "cell_count": 16,
        "temperatures": [20.0, 23.0],
        "discharge_mos": True,
        "charge_mos": False,
        "remaining_capacity": 123.4,
        "nominal_capacity": 280.0,
        "cycles": 42,
        "alarms": ["cell_overvoltage"],
    }
    data.update(over)
    return PackState.model_validate(data)


def known_daily(pack: str = "garage") -> DailyStats:
    return DailyStats(
        pack=pack,
        day=date(2026, 3, 14),
        ts=NOW,
        max_soc=95.0,
        max_soc_at=datetime(2026, 3, 14, 10, 42, tzinfo=UTC),
    )


# offset -> register, for known_state + known_daily at NOW (UTC), unit 1 of 1, uptime 70000 s,
# free memory 1 GB, default display settings, floats low word first (CDAB)
# fmt: off
EXPECTED: dict[int, int] = {
    0: 87,
    1: 5325,  # 53.25 V in 0.01 V
    2: 0x10000 - 125,  # -12.5 A in 0.1 A
    3: 0x10000 - 666,  # -665.625 W rounds half away from zero
    4: 19,  # 3320 - 3301 mV
    5: 3309,  # 3308.75 mV
    6: 3320,
    7: 3301,
    8: 0x0000, 9: 0x41AC,  # 21.5 °C = 0x41AC0000
    10: 0x0000, 11: 0x4255,  # 53.25 V = 0x42550000
    12: 0x0000, 13: 0xC148,  # -12.5 A = 0xC1480000
    14: 0x6800, 15: 0xC426,  # -665.625 W = 0xC4266800
    16: 1,  # discharge MOS on
    17: 0,  # charge MOS off
    **{17 + n: 3300 + n for n in range(1, 16)},  # cells 1..15 at 18..32: 3301..3315 mV
    33: 3320,  # cell 16
    35: 16,
    40: 95,
    41: 10,
    42: 42,
    44: 1234,  # 123.4 Ah in 0.1 Ah
    45: 0,
    50: 65535,
    51: 70000 - 65536,
    52: 0,
    53: 1,
    54: 0x320A, 55: 0x1264,  # 0x1264320A: 1 dashboard | auto-rolling, 100/50/10
    56: 0xC12C, 57: 0x0A03,  # 0x0A03C12C: 10 s rolling, 60 s at max, 300 s at avg
    58: 1,  # one alarm
    59: 2,  # state 2 s old
}
# fmt: on


def expected_block(size: int) -> list[int]:
    return [EXPECTED.get(offset, 0) for offset in range(size)]

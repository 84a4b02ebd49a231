"""Pure logic: states to blocks, banks, offline semantics, writes, push plans, config checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymodbus.constants import ExcCodes
from services.modbus.tests.known import EXPECTED, NOW, expected_block, known_daily, known_state

from bmsgate_common.bank import Member, combine
from bmsgate_common.models import Availability, CommandResult
from bmsgate_common.settings import BankSettings, ModbusPushTarget, Settings
from bmsgate_modbus.logic import (
    MapOptions,
    RefusalLog,
    RegisterStore,
    client_may_write,
    config_problem,
    default_units,
    display_words,
    pack_quantities,
    push_writes,
    write_commands,
)
from bmsgate_modbus.registers import SIZE, decode


def store_with(*states: Any, units: dict[int, str] | None = None, **opts: Any) -> RegisterStore:
    store = RegisterStore(units or {1: "garage"}, opts.pop("banks", {}), MapOptions(tz=UTC, **opts))
    for state in states:
        store.on_state(state)
    store.set_system(uptime=70000, free_memory=1e9, now=NOW)
    store.refresh(NOW)
    return store


def test_every_register_of_a_known_state() -> None:
    store = RegisterStore({1: "garage"}, {}, MapOptions(tz=UTC))
    store.on_state(known_state())
    store.on_daily(known_daily())
    store.set_system(uptime=70000, free_memory=1e9, now=NOW)
    store.refresh(NOW)
    block = store.block(1)
    assert block is not None
    assert len(block) == SIZE
    for offset, want in enumerate(expected_block(SIZE)):
        assert block[offset] == want, f"offset {offset}: {block[offset]} != {want}"


def test_big_word_order_and_fahrenheit() -> None:
    store = store_with(known_state(), word_order="big", temperature_unit="F")
    block = store.block(1)
    assert block is not None
    assert block[10:12] == [0x4255, 0x0000]
    assert decode(block[8:10], "float32", 1, "big") == pytest.approx(70.7)  # 21.5 °C
    assert block[54:56] == [EXPECTED[55], EXPECTED[54]]


def test_never_seen_is_none_and_offline_raises_the_failure_flag() -> None:
    store = store_with(units={1: "garage", 2: "shed"})
    assert store.block(1) is None and store.block(2) is None
    store.on_state(known_state())
    store.refresh(NOW)
    assert store.block(1) is not None and store.block(1)[45] == 0  # type: ignore[index]
    store.on_availability(Availability(pack="garage", state="offline", ts=NOW, reason="no answer"))
    store.refresh(NOW)
    block = store.block(1)
    assert block is not None
    assert block[45] == 1 and block[0] == 87  # last values stay readable


def test_a_newer_state_brings_a_pack_back_online() -> None:
    store = store_with(known_state())
    store.on_availability(
        Availability(pack="garage", state="offline", ts=NOW - timedelta(seconds=1))
    )
    store.on_state(known_state(ts=NOW))
    store.refresh(NOW)
    assert store.block(1)[45] == 0  # type: ignore[index]


def test_a_stale_state_raises_the_failure_flag() -> None:
    store = store_with(known_state(ts=NOW - timedelta(seconds=61)))
    block = store.block(1)
    assert block is not None
    assert block[45] == 1 and block[59] == 61


def test_yesterdays_daily_figures_are_not_shown() -> None:
    store = RegisterStore({1: "garage"}, {}, MapOptions(tz=UTC))
    store.on_state(known_state())
    store.on_daily(known_daily())
    store.refresh(NOW + timedelta(days=1))
    assert store.block(1)[40:43] == [0, 0, 0]  # type: ignore[index]


def test_local_time_zone_for_daily_time_and_offset() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    store = RegisterStore({1: "garage"}, {}, MapOptions(tz=berlin))
    store.on_state(known_state())
    store.on_daily(known_daily())
    store.set_system(uptime=1, free_memory=100, now=NOW)
    store.refresh(NOW)
    block = store.block(1)
    assert block is not None
    assert block[41:43] == [11, 42]  # 10:42 UTC is 11:42 in Berlin in March
    assert block[52] == 1
    assert block[50] == 100
    store.set_system(uptime=1, free_memory=100, now=datetime(2026, 7, 1, tzinfo=UTC))
    store.refresh(NOW)
    assert store.block(1)[52] == 2  # type: ignore[index]


def test_more_than_sixteen_cells_go_to_the_extension_rows() -> None:
    cells = [3.2 + n / 1000 for n in range(24)]
    store = store_with(known_state(cell_voltages=cells, cell_count=24))
    block = store.block(1)
    assert block is not None
    assert block[35] == 24
    assert block[18:34] == [3200 + n for n in range(16)]
    assert block[64:72] == [3216 + n for n in range(8)]
    assert block[72:80] == [0] * 8


def test_a_confirmed_command_shows_at_once() -> None:
    store = store_with(known_state())
    result = CommandResult(
        transaction="t1", pack="garage", action="set_charge_mos", status="ok", value=True, ts=NOW
    )
    assert store.on_result(result)
    store.refresh(NOW)
    assert store.block(1)[17] == 1  # type: ignore[index]
    failed = result.model_copy(update={"status": "error", "value": False})
    assert not store.on_result(failed)
    assert not store.on_result(result.model_copy(update={"pack": "unknown"}))


def test_a_bank_is_the_one_combined_state_as_registers() -> None:
    a = known_state("a", soc=80.0, nominal_capacity=100.0, current=10.0, power=530.0)
    b = known_state(
        "b",
        soc=40.0,
        nominal_capacity=300.0,
        current=-4.0,
        power=-212.0,
        charge_mos=True,
        cell_voltages=[3.25] * 16,
        temperatures=[30.0],
    )
    store = store_with(a, b, units={1: "a", 2: "bank"}, banks={"bank": ("a", "b")})
    q = store.quantities("bank", NOW)
    bank = BankSettings(id="bank", packs=["a", "b"])
    combined = combine(bank, {"a": Member(a), "b": Member(b)}, NOW, 60, {})
    assert combined is not None  # the publisher's and the web UI's bank, as registers
    assert q == pack_quantities(combined, None, offline=False, now=NOW, opts=store.opts)
    assert q["soc"] == pytest.approx(50.0)  # (80*100 + 40*300) / 400
    assert (q["current"], q["power"]) == (pytest.approx(6.0), pytest.approx(318.0))
    assert q["cell_count"] == 32 and q["cell_17"] == pytest.approx(3.250)  # b's cell 1
    assert q["cell_max"] == pytest.approx(3.320) and q["cell_min"] == pytest.approx(3.250)
    assert q["remaining_capacity"] == pytest.approx(246.8)
    assert "charge_mos" not in q and q["failure"] == 0  # a bank has no switch
    block = store.block(2)
    assert block is not None and block[0] == 50


def test_a_bank_counts_only_live_members_and_keeps_its_last_state_with_the_failure_flag() -> None:
    store = store_with(known_state("a"), units={1: "bank"}, banks={"bank": ("a", "b")})
    assert store.block(1) is None  # b not judged yet: no bank of a alone
    store.arrivals.since -= store.opts.stale_after  # listened that long: b, silent, is out
    store.refresh(NOW)
    assert store.block(1)[45] == 0  # type: ignore[index]  # a counts: the bank is live
    store.on_availability(Availability(pack="a", state="offline", ts=NOW))
    store.refresh(NOW)
    block = store.block(1)
    assert block is not None and block[0] == 87 and block[45] == 1
    never = store_with(units={1: "bank"}, banks={"bank": ("a", "b")})
    assert never.block(1) is None  # no member ever seen: exception 0x0B


def test_display_words() -> None:
    s = Settings().modbus.display
    assert display_words(s, 1) == (0x1264320A, 0x0A03C12C)
    many = s.model_copy(update={"dashboards": 3, "auto_rolling": False, "auto_brightness": True})
    assert display_words(many, 1)[0] >> 24 == 0x31


@pytest.mark.parametrize(
    ("offset", "values", "answer"),
    [
        (16, [0], [("set_discharge_mos", False)]),
        (17, [1], [("set_charge_mos", True)]),
        (16, [1, 0], [("set_discharge_mos", True), ("set_charge_mos", False)]),
        (15, [1, 1], ExcCodes.ILLEGAL_ADDRESS),
        (17, [1, 1], ExcCodes.ILLEGAL_ADDRESS),
        (0, [50], ExcCodes.ILLEGAL_ADDRESS),
        (16, [2], ExcCodes.ILLEGAL_VALUE),
        (16, [0xFFFF], ExcCodes.ILLEGAL_VALUE),
    ],
)
def test_write_commands(offset: int, values: list[int], answer: Any) -> None:
    assert write_commands(offset, values) == answer


def target(*values: dict[str, Any]) -> ModbusPushTarget:
    return ModbusPushTarget.model_validate({"host": "h", "values": list(values)})


def test_push_writes_merge_neighbours_and_skip_unknowns() -> None:
    t = target(
        {"pack": "garage", "value": "soc", "address": 100},
        {"pack": "garage", "value": "pack_voltage", "address": 101, "type": "u16", "scale": 100},
        {
            "pack": "garage",
            "value": "current",
            "address": 102,
            "type": "float32",
            "word_order": "little",
        },
        {"pack": "garage", "value": "power", "address": 200, "type": "s32"},
        {"pack": "garage", "value": "energy_in", "address": 300},  # not reported by this pack
        {"pack": "shed", "value": "soc", "address": 104},  # never seen
    )
    q = {"garage": store_with(known_state()).quantities("garage", NOW), "shed": None}
    assert push_writes(t, q) == [
        (100, [87, 5325, 0x0000, 0xC148]),
        (200, [0xFFFF, 0xFD66]),  # -666 W
    ]


def test_push_writes_split_at_the_function_16_limit() -> None:
    t = target(*({"pack": "garage", "value": "soc", "address": a} for a in range(200)))
    writes = push_writes(t, {"garage": {"soc": 1.0}})
    assert [(a, len(r)) for a, r in writes] == [(0, 123), (123, 77)]


def settings(**data: Any) -> Settings:
    base: dict[str, Any] = {
        "buses": [
            {
                "port": "/dev/null",
                "protocol": "daly_classic",
                "packs": [{"id": "a"}, {"id": "b", "address": 2}],
            },
            {"port": "/dev/null2", "protocol": "jk_pb", "packs": [{"id": "c"}]},
        ],
        "banks": [{"id": "ab", "packs": ["a", "b"]}],
    }
    return Settings.model_validate(base | data)


def test_default_units_are_packs_in_order_then_banks() -> None:
    assert default_units(settings()) == {1: "a", 2: "b", 3: "c", 4: "ab"}
    assert default_units(settings(modbus={"units": {7: "c", 0: "a"}})) == {7: "c", 0: "a"}


@pytest.mark.parametrize(
    ("modbus", "problem"),
    [
        ({}, None),
        ({"units": {1: "nope"}}, "modbus.units.1: no pack or bank 'nope' is configured"),
        (
            {"push": [{"host": "h", "values": [{"pack": "a", "value": "volts", "address": 1}]}]},
            "modbus.push.0.values.0.value: unknown quantity 'volts'",
        ),
        (
            {"push": [{"host": "h", "values": [{"pack": "x", "value": "soc", "address": 1}]}]},
            "modbus.push.0.values.0.pack: no pack or bank 'x'",
        ),
        (
            {
                "push": [
                    {
                        "host": "h",
                        "values": [
                            {"pack": "a", "value": "soc", "address": 1, "type": "float32"},
                            {"pack": "b", "value": "soc", "address": 2},
                        ],
                    }
                ]
            },
            "modbus.push.0.values.1.address: register 2 is also written by value 0",
        ),
        (
            {
                "push": [
                    {
                        "host": "h",
                        "values": [{"pack": "a", "value": "soc", "address": 65535, "type": "u32"}],
                    }
                ]
            },
            "does not fit below 65536",
        ),
    ],
)
def test_config_problems_are_one_line(modbus: dict[str, Any], problem: str | None) -> None:
    found = config_problem(settings(modbus=modbus))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "\n" not in found


@pytest.mark.parametrize(
    ("client", "allowed", "may"),
    [
        ("192.168.1.20", [], False),  # default: nobody, even with control enabled
        ("192.168.1.20", ["192.168.1.20"], True),
        ("192.168.1.21", ["192.168.1.20"], False),
        ("10.0.0.77", ["192.168.1.20", "10.0.0.0/24"], True),
        ("10.0.1.1", ["10.0.0.0/24"], False),
        ("::ffff:10.0.0.5", ["10.0.0.0/24"], True),  # IPv4 peer of an IPv6 listener
        ("fe80::1", ["10.0.0.0/24"], False),
        ("::1", ["::1"], True),
        ("unknown", ["0.0.0.0/0"], False),  # a peer without an address is nobody named
    ],
)
def test_writes_only_from_named_clients(client: str, allowed: list[str], may: bool) -> None:
    networks = Settings.model_validate({"modbus": {"write_clients": allowed}}).modbus.write_clients
    assert client_may_write(client, networks) is may


def test_refused_writes_are_logged_one_by_one_up_to_a_budget_then_counted() -> None:
    refusals = RefusalLog(per_window=3, window=60.0)
    logged = [refusals.note("10.0.0.9", t) for t in (0.0, 0.1, 0.2, 0.3, 0.4)]
    assert logged == [True, True, True, False, False]
    assert refusals.note("10.0.0.8", 1.0)  # each client has its own budget
    assert refusals.summaries(59.9) == []  # the window is still open
    assert refusals.summaries(60.0) == [("10.0.0.9", 2, 60.0)]
    assert refusals.summaries(61.0) == []  # 10.0.0.8 stayed within its budget: no summary
    assert refusals.note("10.0.0.9", 61.0)  # a new window, a new budget

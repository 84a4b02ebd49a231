"""The BMS's own settings: every protocol reads its documented ones from the simulator, writes
the safe few (read back as the result) and refuses anything else before sending a byte."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from bmsgate_bms.registry import NAMES, protocol
from bmsgate_bms.setpoints import Setpoint, SettingError, bounds
from bmsgate_bms.sim import BOARDS, PackModel, SimBus, make_bus
from bmsgate_bms.sim.link import SimLink

OWN = ("daly_classic", "daly_new", "jk_uart", "jk_pb")  # the protocols with documented settings
CASES = [
    (n, v)
    for n in NAMES
    if hasattr(protocol(n), "SETPOINTS")
    for v in (("d2", "81") if n == "daly_new" else (None,))
]


def test_the_four_makes_describe_their_settings() -> None:
    assert {n for n, _ in CASES} >= set(OWN)


def _table(name: str, variant: str | None) -> tuple[Setpoint, ...]:
    table: Any = protocol(name).SETPOINTS  # type: ignore[attr-defined]
    return tuple(table[variant] if variant else table)


def _driver(name: str, variant: str | None) -> tuple[Any, Any]:
    bus = make_bus(name)
    options = {"variant": variant} if variant else {}
    if variant:
        board = importlib.import_module(BOARDS[name]).Board
        bus = SimBus([board(PackModel.create(cells=16), 1, **options)])
    return protocol(name).Driver(SimLink(bus), 1, **options), bus


@pytest.mark.parametrize(("name", "variant"), CASES)
async def test_settings_are_read_by_their_documented_names(name: str, variant: str | None) -> None:
    driver, _ = _driver(name, variant)
    values = await driver.read_settings()
    table = _table(name, variant)
    assert values and set(values) <= {s.key for s in table}
    assert all(isinstance(v, int | float | str) for v in values.values())  # codes may be named
    if name != "daly_classic":  # 0x50 alone there
        assert len(values) >= 20


@pytest.mark.parametrize(("name", "variant"), CASES)
async def test_writable_settings_are_written_and_read_back(name: str, variant: str | None) -> None:
    driver, _ = _driver(name, variant)
    current = await driver.read_settings()
    writable = [s for s in _table(name, variant) if s.writable]
    for point in writable:
        low, high = bounds(point, current)
        target = round((low + high) / 2, 2)
        back = await driver.write_setting(point.key, target, current)
        assert back[point.key] == pytest.approx(target, abs=point.step), point.key
        current = back
    if name == "jk_pb":
        assert {p.key for p in writable} == {
            "balance_trigger_voltage",
            "max_charge_current",
            "max_discharge_current",
            "design_capacity",
            "balance_start_voltage",
        }


@pytest.mark.parametrize(("name", "variant"), CASES)
async def test_bad_writes_are_refused_before_a_byte_is_sent(name: str, variant: str | None) -> None:
    driver, bus = _driver(name, variant)
    current = await driver.read_settings()
    sent = bus.requests
    table = _table(name, variant)
    read_only = next(s for s in table if not s.writable)
    with pytest.raises(SettingError, match="read-only"):
        await driver.write_setting(read_only.key, 1.0, current)
    with pytest.raises(SettingError, match="unknown setting"):
        await driver.write_setting("cell_count_of_doom", 1.0, current)
    for point in (s for s in table if s.writable):
        low, high = bounds(point, current)
        for wrong in (low - 1.0, high + 1.0):
            with pytest.raises(SettingError, match=point.key):
                await driver.write_setting(point.key, wrong, current)
    assert bus.requests == sent  # nothing reached the bus


def test_balance_start_is_bounded_by_the_bms_own_protection_voltages() -> None:
    table = _table("jk_pb", None)
    point = next(s for s in table if s.key == "balance_start_voltage")
    assert bounds(point, {"cell_uvp": 2.9, "cell_ovp": 3.6}) == (2.9, 3.6)
    assert bounds(point, {}) == (2.0, 4.5)


@pytest.mark.parametrize(
    ("name", "variant"),
    [("jk_pb", None), ("jk_uart", None), ("daly_new", "d2"), ("daly_new", "81")],
)
async def test_balancer_switch_is_read_back(name: str, variant: str | None) -> None:
    driver, _ = _driver(name, variant)
    assert await driver.set_balancer(False) is False
    assert await driver.set_balancer(True) is True


async def test_jk_uart_restart_is_sent_and_the_bms_answers_after_it() -> None:
    driver, bus = _driver("jk_uart", None)
    sent = bus.requests
    await driver.reset()
    assert bus.requests == sent + 2  # the password frame, then 0xBB
    assert (await driver.read()).cell_count == 16


@pytest.mark.parametrize(("name", "variant"), [("daly_classic", None), ("daly_new", "d2")])
async def test_keep_awake_is_one_harmless_read(name: str, variant: str | None) -> None:
    driver, bus = _driver(name, variant)
    soc = bus.boards[0].model.soc
    sent = bus.requests
    await driver.wake()
    assert bus.requests == sent + 1
    assert bus.boards[0].model.soc == soc


# FC 0x10 writes of the JK-PB settings block as a JK master sends them on a real bus, quoted in
# txubelaxu/esphome-jk-bms components/jk_rs485_sniffer/jk_rs485_sniffer.cpp (comments of
# handle_bms2sniffer_switch_or_number_uint32_event): balancer off/on at DIP address 2, and
# 3500 mV into 0x1000. bmsgate's requests must be these bytes.
CAPTURED_WRITES = {
    "balancer_off": "02 10 10 78 00 02 04 00 00 00 00 37 a9",
    "balancer_on": "02 10 10 78 00 02 04 00 00 00 01 f6 69",
    "smart_sleep_3500mv": "02 10 10 00 00 02 04 00 00 0d ac 35 c6",
}


class _Recording(SimLink):
    """The simulator's link, keeping what was sent."""

    def __init__(self, bus: SimBus) -> None:
        super().__init__(bus)
        self.sent: list[bytes] = []

    async def exchange(self, request: bytes, *args: Any, **kwargs: Any) -> list[bytes]:
        self.sent.append(request)
        return await super().exchange(request, *args, **kwargs)


async def test_jk_pb_writes_are_the_bytes_a_jk_master_sends() -> None:
    from bmsgate_bms import jk_pb

    link = _Recording(make_bus("jk_pb", boards=2))
    driver = jk_pb.Driver(link, 2)
    assert await driver.set_balancer(False) is False
    assert await driver.set_balancer(True) is True
    writes = [r.hex(" ") for r in link.sent if r[1] == 0x10 and r[2:4] == b"\x10\x78"]
    assert writes == [CAPTURED_WRITES["balancer_off"], CAPTURED_WRITES["balancer_on"]]
    sleep = jk_pb.write_request(0x1000, (3500).to_bytes(4, "big"), 2)  # the same encoder
    assert sleep.hex(" ") == CAPTURED_WRITES["smart_sleep_3500mv"]
    settings = await driver.read_settings()
    sent = len(link.sent)
    await driver.write_setting("balance_trigger_voltage", 0.005, settings)
    write = link.sent[sent]
    assert write.hex(" ").startswith("02 10 10 14 00 02 04 00 00 00 05")  # 5 mV, u32 high first

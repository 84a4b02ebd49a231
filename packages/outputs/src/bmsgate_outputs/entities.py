"""One description per value, Home Assistant style: a key and a function of the pack state.

The same table drives the Home Assistant entities, the JSON state they read, the flat per-value
topics and the names openHASP templates may use. A row whose value is None for a pack (no MOS
temperature, no energy counter yet, the bank-only rows on a plain pack) is left out.

Like Home Assistant's native and suggested units, a row's function gives the value as the pack
state has it, in SI (``native``: V, A, kWh), and ``display`` names the unit shown where it differs
(a cell delta in mV). The conversion between the two comes from ``bmsgate_common.units``; no row
converts by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from bmsgate_common.models import PackState
from bmsgate_common.units import shown

Scalar = float | int | str
Platform = Literal["sensor", "binary_sensor", "switch"]


@dataclass(frozen=True, kw_only=True)
class Description:
    """One entity/value: what Home Assistant needs and how to get the value from a state."""

    key: str  # stable: part of the unique id and of the flat topic
    name: str  # without the device name (HA naming rules since 2023.8)
    value_fn: Callable[[PackState], Scalar | None]  # in ``native``
    platform: Platform = "sensor"
    device_class: str | None = None
    native: str | None = None  # the unit of the value as the pack state has it (SI)
    display: str | None = None  # the unit shown, where it is not ``native``
    state_class: str | None = None
    category: Literal["diagnostic", "config"] | None = None
    precision: int | None = None  # suggested display precision
    topic: str | None = None  # flat topic below <prefix>/<pack>; the key when unset
    icon: str | None = None
    in_ha: bool = True  # False: flat topics and templates only
    options: tuple[str, ...] | None = None  # an enum sensor's values
    enabled: bool = True  # False: HA creates the entity disabled (rarely used diagnostics)

    @property
    def digits(self) -> int:
        """Decimals a value is sent with: one finer than shown, so no float noise is sent."""
        return DEFAULT_DIGITS if self.precision is None else self.precision + 1

    @property
    def unit(self) -> str | None:
        """The unit shown: HA's unit_of_measurement, the flat topics' and openHASP's values."""
        return self.display or self.native

    def shown(self, state: PackState) -> Scalar | None:
        """The row's value of ``state`` in ``unit`` (not rounded)."""
        value = self.value_fn(state)
        if self.native is None or self.display is None or not isinstance(value, int | float):
            return value
        return shown(value, self.native, self.display)

    @property
    def flat_topic(self) -> str:
        """The topic level(s) below ``<prefix>/<pack>``."""
        return self.topic or self.key


def _on(flag: bool | None) -> str | None:
    return None if flag is None else ("ON" if flag else "OFF")


def _cell_extreme(state: PackState, lowest: bool) -> tuple[float, int] | None:
    stats = state.cells
    if stats is None:
        return None
    return (stats.low, stats.low_cell) if lowest else (stats.high, stats.high_cell)


def _extreme_value(lowest: bool) -> Callable[[PackState], float | None]:
    def fn(state: PackState) -> float | None:
        found = _cell_extreme(state, lowest)
        return None if found is None else found[0]

    return fn


def _extreme_index(lowest: bool) -> Callable[[PackState], int | None]:
    def fn(state: PackState) -> int | None:
        # a bank names the cell within its pack (extras), not its place in the joined list
        extra = state.extras.get("cell_min_cell" if lowest else "cell_max_cell")
        if isinstance(extra, int):
            return extra
        found = _cell_extreme(state, lowest)
        return None if found is None else found[1]

    return fn


def _extra_str(name: str) -> Callable[[PackState], str | None]:
    def fn(state: PackState) -> str | None:
        value = state.extras.get(name)
        return None if value is None else str(value)

    return fn


def _average(state: PackState) -> float | None:
    stats = state.cells
    return round(stats.average, 4) if stats else None


def _delta(state: PackState) -> float | None:
    stats = state.cells
    return stats.delta if stats else None


def _extra_flag(name: str) -> Callable[[PackState], bool | None]:
    def fn(state: PackState) -> bool | None:
        value = state.extras.get(name)
        return None if value is None else bool(value)

    return fn


def _extra_number(name: str) -> Callable[[PackState], float | None]:
    def fn(state: PackState) -> float | None:
        value = state.extras.get(name)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    return fn


DIRECTIONS: Final = ("charging", "discharging", "idle")


def _direction(state: PackState) -> str:
    """The BMS's own word where it says it (DALY), else the sign of the current."""
    said = state.extras.get("state")
    if said in DIRECTIONS:
        return str(said)
    return "charging" if state.current > 0 else "discharging" if state.current < 0 else "idle"


def _balancing_cells(state: PackState) -> str | None:
    """The cells being balanced ("3, 7" or "none"); None where the BMS does not say."""
    if state.balancing is None and not state.balancing_cells:
        return None
    return ", ".join(str(c) for c in state.balancing_cells) or "none"


DEFAULT_DIGITS: Final = 3  # a float row without a display precision


def rounded(value: Scalar | None, digits: int) -> Scalar | None:
    """A float without binary noise (0.16149999999999998 -> 0.1615); others unchanged."""
    return round(value, digits) if isinstance(value, float) else value


# alarm classes, each one HA problem sensor: the first class whose words are in the code
ALARM_CLASSES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("current", "Current alarm", ("overcurrent", "short_circuit")),
    ("hardware", "Hardware fault", ("_fault",)),
    ("temperature", "Temperature alarm", ("temp",)),
    ("voltage", "Voltage alarm", ("voltage", "_diff")),
    ("charge_level", "Charge level alarm", ("soc_", "capacity")),
    ("other", "Other alarm", ("",)),
)


def alarm_class(code: str) -> str:
    """The class of an alarm code (docs/publisher.md lists the rule)."""
    return next(key for key, _, words in ALARM_CLASSES if any(w in code for w in words))


def _alarm_of(key: str) -> Callable[[PackState], str]:
    def fn(state: PackState) -> str:
        return "ON" if any(alarm_class(code) == key for code in state.alarms) else "OFF"

    return fn


V, A, W, AH, KWH, MV, C = "V", "A", "W", "Ah", "kWh", "mV", "°C"
M, TI = "measurement", "total_increasing"

# fmt: off
PACK_DESCRIPTIONS: Final[tuple[Description, ...]] = (
    Description(key="voltage", name="Voltage", value_fn=lambda s: s.pack_voltage,
                device_class="voltage", native=V, state_class=M, precision=2),
    Description(key="current", name="Current", value_fn=lambda s: s.current,
                device_class="current", native=A, state_class=M, precision=2),
    Description(key="power", name="Power", value_fn=lambda s: s.power,
                device_class="power", native=W, state_class=M, precision=0),
    Description(key="soc", name="State of charge", value_fn=lambda s: s.soc,
                device_class="battery", native="%", state_class=M, precision=0),
    Description(key="soc_estimate", name="State of charge (bmsgate)",
                value_fn=lambda s: s.soc_estimate, device_class="battery", native="%",
                state_class=M, precision=0),
    Description(key="cell_min", name="Lowest cell voltage", value_fn=_extreme_value(True),
                device_class="voltage", native=V, state_class=M, precision=3),
    Description(key="cell_min_index", name="Lowest cell", value_fn=_extreme_index(True),
                icon="mdi:numeric"),
    Description(key="cell_min_pack", name="Lowest cell pack", value_fn=_extra_str("cell_min_pack")),
    Description(key="cell_max", name="Highest cell voltage", value_fn=_extreme_value(False),
                device_class="voltage", native=V, state_class=M, precision=3),
    Description(key="cell_max_index", name="Highest cell", value_fn=_extreme_index(False),
                icon="mdi:numeric"),
    Description(key="cell_max_pack", name="Highest cell pack",
                value_fn=_extra_str("cell_max_pack")),
    Description(key="cell_delta", name="Cell voltage difference", value_fn=_delta,
                device_class="voltage", native=V, display=MV, state_class=M, precision=0),
    Description(key="cell_average", name="Average cell voltage", value_fn=_average,
                device_class="voltage", native=V, state_class=M, precision=3),
    Description(key="cell_min_mv", name="", value_fn=_extreme_value(True), native=V, display=MV,
                in_ha=False),
    Description(key="cell_max_mv", name="", value_fn=_extreme_value(False), native=V, display=MV,
                in_ha=False),
    Description(key="cell_average_mv", name="", value_fn=_average, native=V, display=MV,
                in_ha=False),
    Description(key="mos_temperature", name="MOSFET temperature",
                value_fn=lambda s: s.mos_temperature, device_class="temperature", native=C,
                state_class=M, category="diagnostic", precision=0),
    Description(key="cycles", name="Charge cycles", value_fn=lambda s: s.cycles,
                state_class=TI, icon="mdi:battery-sync"),
    Description(key="remaining_capacity", name="Remaining capacity",
                value_fn=lambda s: s.remaining_capacity, native=AH, state_class=M, precision=1,
                icon="mdi:battery-50"),
    Description(key="nominal_capacity", name="Capacity", value_fn=lambda s: s.nominal_capacity,
                native=AH, category="diagnostic", precision=0, icon="mdi:battery"),
    Description(key="energy_in", name="Energy charged", value_fn=lambda s: s.energy_in,
                device_class="energy", native=KWH, state_class=TI, precision=2),
    Description(key="energy_out", name="Energy discharged", value_fn=lambda s: s.energy_out,
                device_class="energy", native=KWH, state_class=TI, precision=2),
    Description(key="state_of_health", name="State of health", value_fn=_extra_number("soh"),
                native="%", state_class=M, precision=0, icon="mdi:battery-heart-variant"),
    Description(key="direction", name="Battery state", value_fn=_direction,
                device_class="enum", options=DIRECTIONS, icon="mdi:battery-charging"),
    Description(key="charge_in", name="Charge charged", value_fn=lambda s: s.charge_in,
                native=AH, state_class=TI, precision=2, icon="mdi:battery-plus-variant"),
    Description(key="charge_out", name="Charge discharged", value_fn=lambda s: s.charge_out,
                native=AH, state_class=TI, precision=2, icon="mdi:battery-minus-variant"),
    Description(key="balancing_cells", name="Balancing cells", value_fn=_balancing_cells,
                category="diagnostic", icon="mdi:scale-balance"),
    Description(key="balance_current", name="Balancing current",
                value_fn=_extra_number("balance_current"), device_class="current", native=A,
                state_class=M, category="diagnostic", precision=3),
    Description(key="charger_connected", name="Charger connected",
                value_fn=lambda s: _on(_extra_flag("charger_connected")(s)),
                platform="binary_sensor", device_class="plug"),
    Description(key="load_connected", name="Load connected",
                value_fn=lambda s: _on(_extra_flag("load_connected")(s)),
                platform="binary_sensor", device_class="plug"),
    Description(key="alarm", name="Alarm", value_fn=lambda s: _on(bool(s.alarms)),
                platform="binary_sensor", device_class="problem"),
    Description(key="alarms", name="Active alarms",
                value_fn=lambda s: ", ".join(s.alarms) if s.alarms else "none",
                category="diagnostic", icon="mdi:alert"),
    Description(key="balancing", name="Balancing", value_fn=lambda s: _on(s.balancing),
                platform="binary_sensor", device_class="running", category="diagnostic"),
)
# fmt: on


# every switch: its state in a pack state (None: this pack has no such switch) and its command
SWITCH_STATES: Final[dict[str, Callable[[PackState], bool | None]]] = {
    "charge_mos": lambda s: s.charge_mos,
    "discharge_mos": lambda s: s.discharge_mos,
    "balancer": _extra_flag("balancer_enabled"),  # JK-B, JK-PB (from its settings)
    "keep_awake": _extra_flag("keep_awake"),  # the reader's own, for DALY (bus keep_awake > 0)
}
# read-only states while control is off; switches (same keys) when it is on
# fmt: off
MOS_DESCRIPTIONS: Final[tuple[Description, ...]] = (
    Description(key="charge_mos", name="Charge MOSFET",
                value_fn=lambda s: _on(SWITCH_STATES["charge_mos"](s)),
                platform="binary_sensor", device_class="power", category="diagnostic"),
    Description(key="discharge_mos", name="Discharge MOSFET",
                value_fn=lambda s: _on(SWITCH_STATES["discharge_mos"](s)),
                platform="binary_sensor", device_class="power", category="diagnostic"),
    Description(key="balancer", name="Balancer",
                value_fn=lambda s: _on(SWITCH_STATES["balancer"](s)),
                platform="binary_sensor", category="diagnostic", icon="mdi:scale-balance"),
    Description(key="keep_awake", name="Keep awake",
                value_fn=lambda s: _on(SWITCH_STATES["keep_awake"](s)),
                platform="binary_sensor", category="diagnostic", icon="mdi:sleep-off"),
)
# fmt: on
MAIN_SWITCHES: Final = frozenset({"charge_mos", "discharge_mos"})
MOS_ACTIONS: Final = {
    "charge_mos": "set_charge_mos",
    "discharge_mos": "set_discharge_mos",
    "balancer": "set_balancer",
    "keep_awake": "set_keep_awake",
}


def _cell(i: int) -> Description:
    return Description(
        key=f"cell_{i + 1}",
        name=f"Cell {i + 1} voltage",
        topic=f"cell/{i + 1}",
        value_fn=lambda s: s.cell_voltages[i] if i < len(s.cell_voltages) else None,
        device_class="voltage",
        native=V,
        state_class=M,
        category="diagnostic",
        precision=3,
    )


def _temp(i: int) -> Description:
    return Description(
        key=f"temperature_{i + 1}",
        name=f"Temperature {i + 1}",
        topic=f"temperature/{i + 1}",
        value_fn=lambda s: s.temperatures[i] if i < len(s.temperatures) else None,
        device_class="temperature",
        native=C,
        state_class=M,
        precision=0,
    )


ALARM_DESCRIPTIONS: Final = tuple(
    Description(
        key=f"alarm_{key}",
        name=name,
        value_fn=_alarm_of(key),
        platform="binary_sensor",
        device_class="problem",
    )
    for key, name, _ in ALARM_CLASSES
)


def descriptions(state: PackState, *, control: bool) -> list[Description]:
    """Every row that has a value for this pack; MOS rows become switches when control is on."""
    is_bank = state.extras.get("bank") is True
    cells = (_cell(i) for i in range(state.cell_count))
    rows = [
        *PACK_DESCRIPTIONS,
        *ALARM_DESCRIPTIONS,
        *(_temp(i) for i in range(len(state.temperatures))),
        # a bank's cells are its members' cells again: there if wanted, disabled by default
        *((replace(c, enabled=False) for c in cells) if is_bank else cells),
    ]
    for mos in MOS_DESCRIPTIONS:
        if control and not is_bank:  # a bank has no switch of its own
            # the MOSFETs are the pack's main controls: on the dashboard, not under settings
            category: Literal["config"] | None = None if mos.key in MAIN_SWITCHES else "config"
            rows.append(
                Description(
                    key=mos.key,
                    name=mos.name,
                    value_fn=mos.value_fn,
                    platform="switch",
                    category=category,
                    icon=mos.icon,
                )
            )
        else:
            rows.append(mos)
    return [row for row in rows if row.value_fn(state) is not None]


def values(state: PackState, rows: list[Description]) -> dict[str, Scalar | None]:
    """The value of every row, by key (the JSON state Home Assistant's templates read)."""
    return {row.key: rounded(row.shown(state), row.digits) for row in rows}


def shown_values(state: PackState, rows: list[Description]) -> dict[str, Scalar | None]:
    """The value of every row in its shown unit, not rounded (openHASP formats its own)."""
    return {row.key: row.shown(state) for row in rows}

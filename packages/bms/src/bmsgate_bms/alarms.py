"""One stable list of alarm codes for every protocol, with readable texts.

Each protocol maps its own bits onto these codes (DALY 0x98 / new-protocol fault registers,
JK 0x8B warnings, JK-PB 0x12A0 alarms). A code never changes meaning once published:
dashboards and notification filters key on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, NamedTuple

Level = Literal["warning", "alarm", "fault"]
# which measurement names the culprit: the highest cell, the lowest cell, the hottest sensor...
Subject = Literal["cell_high", "cell_low", "temp_high", "temp_low", "pack", "none"]


class AlarmInfo(NamedTuple):
    """What an alarm code means."""

    text: str
    level: Level
    subject: Subject = "none"


def _pair(code: str, text: str, subject: Subject) -> dict[str, AlarmInfo]:
    """A level-1 warning and a level-2 alarm (protection) of the same condition."""
    return {
        f"{code}_warning": AlarmInfo(text, "warning", subject),
        code: AlarmInfo(text, "alarm", subject),
    }


ALARMS: Final[dict[str, AlarmInfo]] = {
    **_pair("cell_overvoltage", "over-voltage", "cell_high"),
    **_pair("cell_undervoltage", "under-voltage", "cell_low"),
    **_pair("pack_overvoltage", "pack over-voltage", "pack"),
    **_pair("pack_undervoltage", "pack under-voltage", "pack"),
    **_pair("charge_overtemp", "charge over-temperature", "temp_high"),
    **_pair("charge_undertemp", "charge under-temperature", "temp_low"),
    **_pair("discharge_overtemp", "discharge over-temperature", "temp_high"),
    **_pair("discharge_undertemp", "discharge under-temperature", "temp_low"),
    **_pair("charge_overcurrent", "charge over-current", "pack"),
    **_pair("discharge_overcurrent", "discharge over-current", "pack"),
    **_pair("soc_high", "SOC high", "pack"),
    **_pair("soc_low", "SOC low", "pack"),
    **_pair("cell_voltage_diff", "cell voltage difference too high", "pack"),
    **_pair("temp_diff", "temperature difference too high", "none"),
    "battery_overtemp": AlarmInfo("battery over-temperature", "alarm", "temp_high"),
    "battery_undertemp": AlarmInfo("battery under-temperature", "alarm", "temp_low"),
    "box_overtemp": AlarmInfo("battery box over-temperature", "alarm", "none"),
    "mos_overtemp": AlarmInfo("MOSFET over-temperature", "alarm", "none"),
    "charge_mos_overtemp": AlarmInfo("charge MOSFET over-temperature", "alarm", "none"),
    "discharge_mos_overtemp": AlarmInfo("discharge MOSFET over-temperature", "alarm", "none"),
    "charge_short_circuit": AlarmInfo("charge short circuit", "alarm", "pack"),
    "discharge_short_circuit": AlarmInfo("discharge short circuit", "alarm", "pack"),
    "charge_mos_temp_sensor_fault": AlarmInfo("charge MOSFET temperature sensor fault", "fault"),
    "discharge_mos_temp_sensor_fault": AlarmInfo(
        "discharge MOSFET temperature sensor fault", "fault"
    ),
    "charge_mos_stuck": AlarmInfo("charge MOSFET stuck closed", "fault"),
    "discharge_mos_stuck": AlarmInfo("discharge MOSFET stuck closed", "fault"),
    "charge_mos_open": AlarmInfo("charge MOSFET open circuit", "fault"),
    "discharge_mos_open": AlarmInfo("discharge MOSFET open circuit", "fault"),
    "charge_mos_fault": AlarmInfo("charge MOSFET fault", "fault"),
    "discharge_mos_fault": AlarmInfo("discharge MOSFET fault", "fault"),
    "discharge_on_failed": AlarmInfo("discharge could not be switched on", "fault"),
    "afe_fault": AlarmInfo("AFE chip fault", "fault"),
    "cell_sampling_fault": AlarmInfo("cell voltage sampling lost", "fault"),
    "temp_sensor_fault": AlarmInfo("temperature sensor fault", "fault"),
    "eeprom_fault": AlarmInfo("EEPROM fault", "fault"),
    "rtc_fault": AlarmInfo("RTC fault", "fault"),
    "precharge_fault": AlarmInfo("precharge failed", "fault"),
    "vehicle_comm_fault": AlarmInfo("vehicle communication fault", "fault"),
    "internal_comm_fault": AlarmInfo("internal communication fault", "fault"),
    "current_sensor_fault": AlarmInfo("current sensor fault", "fault"),
    "pack_voltage_sensor_fault": AlarmInfo("pack voltage detection fault", "fault"),
    "short_circuit_fault": AlarmInfo("short-circuit protection fault", "fault"),
    "low_voltage_charge_forbidden": AlarmInfo("charging forbidden: voltage too low", "alarm"),
    "wire_resistance": AlarmInfo("balance wire resistance too high", "fault"),
    "cell_count_mismatch": AlarmInfo("cell count does not match the setting", "fault"),
    "gps_disconnected": AlarmInfo("GPS module disconnected", "warning"),
    "password_change_due": AlarmInfo("password must be changed", "warning"),
    "parallel_module_fault": AlarmInfo("parallel module fault", "fault"),
    "protection_309a": AlarmInfo("309_A protection", "alarm"),
    "protection_309b": AlarmInfo("309_B protection", "alarm"),
    "soh_low": AlarmInfo("state of health low", "warning"),
    "thermal_runaway": AlarmInfo("thermal runaway", "alarm", "temp_high"),
    "fault_code": AlarmInfo("BMS fault code set", "fault"),
}


def describe(
    code: str,
    cell_voltages: Sequence[float] = (),
    temperatures: Sequence[float] = (),
) -> str:
    """Readable text for an alarm code, naming the cell or sensor where the data says which.

    >>> describe("cell_overvoltage", [3.40, 3.65])
    'cell 2 over-voltage, 3.65 V'
    """
    info = ALARMS.get(code)
    if info is None:
        return code.replace("_", " ")
    if info.subject in ("cell_high", "cell_low") and cell_voltages:
        pick = max if info.subject == "cell_high" else min
        volts = pick(cell_voltages)
        return f"cell {list(cell_voltages).index(volts) + 1} {info.text}, {volts:.2f} V"
    if info.subject in ("temp_high", "temp_low") and temperatures:
        pick = max if info.subject == "temp_high" else min
        temp = pick(temperatures)
        return f"sensor {list(temperatures).index(temp) + 1} {info.text}, {temp:g} °C"
    return info.text

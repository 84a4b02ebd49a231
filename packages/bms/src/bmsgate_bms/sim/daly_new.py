"""A simulated DALY board speaking the new (Modbus-RTU-like) protocol, D2 or 0x81 variant."""

from __future__ import annotations

from typing import Any

from .. import daly_new as proto
from ..daly_classic import FAILURE_BITS
from .model import CELL_OVP, CELL_OVP_WARN, CELL_UVP, CELL_UVP_WARN, CHARGE_OTP, PackModel

# classic 0x98 failure code -> (byte, bit); D2 fault register 0x3A + byte // 2 holds byte 2k in
# its low half and byte 2k + 1 in its high half
D2_FAULTS = {
    code: (i, j) for i, names in enumerate(FAILURE_BITS) for j, code in enumerate(names) if code
}
TYPE2_LEVEL_BITS = {code: (byte, bit) for byte, bit, code in proto.TYPE2_LEVELS}


def _fault_bit(first: int, byte: int, bit: int) -> tuple[int, int]:
    """Register and value bit of fault code byte ``byte`` bit ``bit`` (byte 2k = low half)."""
    return first + byte // 2, bit + 8 * (byte % 2)


class DalyNewBoard:
    """Answers FC 0x03 reads of any register range of its map and FC 0x06 writes, with CRC.

    ``max_registers`` makes a board that stays silent on longer reads (a D2 firmware that only
    answers the 62-register status read). Unmapped registers read as 0, as on real boards.
    """

    def __init__(
        self,
        model: PackModel,
        address: int = 1,
        variant: proto.Variant = "81",
        max_registers: int = proto.MAX_REGISTERS,
    ) -> None:
        self.model = model
        self.address = address
        self.variant: proto.Variant = variant
        self.max_registers = max_registers
        self.map = proto.MAPS[variant]
        self._request_from = proto.request_address(variant, address)
        self._answer_from = proto.response_address(variant, address)
        self.stored: dict[int, int] = {}  # settings registers written
        self.balancer_switch = 1 if variant == "d2" else 0xFFFF  # what each capture reads for on
        self.writes: list[tuple[int, int]] = []  # (register, value) of every write, in order

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Frame 8-byte requests: address, 0x03 or 0x06, register, count or value, CRC."""
        return proto.request_framer(buf)

    # --- the register image ------------------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        """Every mapped value in physical units, named as the decoder names them."""
        m = self.model
        volts, temps = m.cell_voltages, m.temperatures
        state = 1 if m.current > 0 else 2 if m.current < 0 else 0
        hi_t, lo_t = max(temps, default=0.0), min(temps, default=0.0)
        return {
            "pack_voltage": m.pack_voltage,
            "current": m.current,  # raw < 30000 while discharging, as the captures show
            "soc": m.soc,
            "bms_life": int(m.clock) & 0xFF,
            "cell_count": len(volts),
            "temperature_count": len(temps),
            "max_cell_voltage": max(volts),
            "max_cell": volts.index(max(volts)) + 1,
            "min_cell_voltage": min(volts),
            "min_cell": volts.index(min(volts)) + 1,
            "cell_voltage_diff": round(max(volts) - min(volts), 3),
            "average_cell_voltage": round(sum(volts) / len(volts), 3),
            "max_temperature": round(hi_t),
            "max_temperature_sensor": temps.index(hi_t) + 1 if temps else 0,
            "min_temperature": round(lo_t),
            "min_temperature_sensor": temps.index(lo_t) + 1 if temps else 0,
            "temperature_diff": round(hi_t - lo_t),
            "state": state,
            "charger_connected": m.current > 0,
            "load_connected": m.current < 0,
            "remaining_capacity": m.remaining_capacity,
            "cycles": m.cycles,
            "balancer_state": 1 if m.balancing_cells else 0,
            "balance_current": 0.06 if m.balancing_cells else 0.0,
            "charge_mos": m.charge_mos,
            "discharge_mos": m.discharge_mos,
            "power": abs(m.power),  # unsigned on the wire
            "energy": round(m.remaining_capacity * m.pack_voltage),
            "mos_temperature": round(m.mos_temperature),
            "board_temperature": round(m.mos_temperature),
            "nominal_capacity": m.nominal_capacity,
            "cell_reference_voltage": 3.2,
            "acquisition_boards": 1,
            "board1_cells": len(volts),
            "board1_sensors": len(temps),
            "sleep_time": 3600,
            "cell_overvoltage_l1": CELL_OVP_WARN,
            "cell_overvoltage_l2": CELL_OVP,
            "cell_undervoltage_l1": CELL_UVP_WARN,
            "cell_undervoltage_l2": CELL_UVP,
            "charge_overtemp_l2": CHARGE_OTP,
            "charge_mos_switch": m.charge_mos,
            "discharge_mos_switch": m.discharge_mos,
            "soc_setting": m.soc,
            "balancer_switch": self.balancer_switch,
        }

    def registers(self) -> dict[int, int]:
        """Build the board's whole register map as raw u16 values."""
        regs: dict[int, int] = {}
        values = self._values()
        for field in self.map.fields:
            if field.key in values:
                raw = round(float(values[field.key]) / field.scale) - field.offset
                regs[field.pos // 2] = max(0, min(0xFFFF, raw))
        first, slots = self.map.cells
        for i, volts in enumerate(self.model.cell_voltages[:slots]):
            regs[first + i] = round(volts * 1000)
        first, slots = self.map.temperatures
        for i, temp in enumerate(self.model.temperatures[:slots]):
            regs[first + i] = round(temp) - proto.TEMP_OFFSET
        first, _ = self.map.balancing_bits
        for cell in self.model.balancing_cells:
            register = first + (cell - 1) // 16
            regs[register] = regs.get(register, 0) | 1 << (cell - 1) % 16
        first, _ = self.map.faults
        for register, bit in self._fault_bits(first):
            regs[register] = regs.get(register, 0) | 1 << bit
        for text in self.map.texts:
            chars = (
                self._text(text.key).encode("ascii")[: 2 * text.size].ljust(2 * text.size, b"\0")
            )
            for i in range(text.size):
                regs[text.register + i] = int.from_bytes(chars[2 * i : 2 * i + 2], "big")
        return regs | self.stored

    def _fault_bits(self, first: int) -> list[tuple[int, int]]:
        bits: list[tuple[int, int]] = []
        for code in self.model.alarms:
            if self.variant == "d2":
                if code in D2_FAULTS:
                    bits.append(_fault_bit(first, *D2_FAULTS[code]))
                continue
            base = code.removesuffix("_warning")
            if base in TYPE2_LEVEL_BITS:
                byte, low = TYPE2_LEVEL_BITS[base]
                level = 1 if code.endswith("_warning") else 2
                bits += [_fault_bit(first, byte, low + i) for i in range(3) if level >> i & 1]
        return bits

    def _text(self, key: str) -> str:
        return {
            "software_version": "BMSGATE-SIM-1.0",
            "hardware_version": f"SIM-{self.variant.upper()}",
            "machine_code": "SIMULATED",
            "password": "123456",
        }.get(key, "")

    # --- requests ----------------------------------------------------------------------------
    def _frame(self, body: bytes) -> bytes:
        return proto.with_crc(bytes((self._answer_from,)) + body)

    def answer(self, request: bytes) -> list[bytes] | None:
        """Return the frames this board sends back; None if the request is for another board."""
        if request[0] != self._request_from:
            return None
        register = int.from_bytes(request[2:4], "big")
        value = int.from_bytes(request[4:6], "big")
        if request[1] == proto.READ:
            if not 1 <= value <= self.max_registers or register + value > 0x10000:
                return []  # silence, as a board that does not take the read
            regs = self.registers()
            data = b"".join(
                regs.get(r, 0).to_bytes(2, "big") for r in range(register, register + value)
            )
            return [self._frame(bytes((proto.READ, len(data))) + data)]
        if request[1] == proto.WRITE:
            self._write(register, value)
            return [self._frame(request[1:6])]  # the echo, from the response address
        return None

    def _write(self, register: int, value: int) -> None:
        self.writes.append((register, value))
        charge, discharge = self.map.mos_switch
        if register in (charge, discharge):
            self.model.set_mos(register == charge, bool(value))
        elif register == self.map.soc_setting:
            self.model.set_soc(value / 10)
        elif register == 0xCF:
            self.balancer_switch = value
        elif self.map.settings <= register < self.map.settings + SETTINGS_SPAN:
            self.stored[register] = value  # a setting: read back as written


SETTINGS_SPAN = 0x30  # registers from the map's settings base that a write may set


Board = DalyNewBoard

"""A simulated JK-PB board speaking "001 JK BMS RS485 Modbus V1.0" at DIP address 0..15."""

from __future__ import annotations

from typing import Literal

from .. import jk_pb as proto
from ..fields import decode_field
from . import model as pack
from .bus import SimBus
from .model import PackModel

ALARM_CODES = {code: n for n, code in enumerate(proto.ALARM_BITS) if code}
WIRE_RESISTANCE = 0.05  # [Ω] a plausible balance-lead resistance
SWITCH_REGISTERS = {
    proto.CHARGE_SWITCH: "charge_switch",
    proto.DISCHARGE_SWITCH: "discharge_switch",
}
_SETTINGS = {f.pos: f for f in proto.SETTINGS_FIELDS}


class JkPbBoard:
    """One JK-PB on the bus: triggers, FC 0x03 reads and settings writes.

    Reads cover the 0x1000/0x1200/0x1400 blocks; writes of the charge/discharge switches drive
    the pack model's MOSFETs.
    """

    def __init__(self, model: PackModel, address: int = 1, padding: bool = False) -> None:
        if not proto.MASTER <= address <= proto.MAX_ADDRESS:
            raise ValueError(f"JK-PB address must be 0..{proto.MAX_ADDRESS}, not {address}")
        self.model = model
        self.address = address
        self.padding = padding  # wrap the ACK in 0x00 bytes as some adapters do
        self.refuse: set[int] = set()  # settings registers whose writes get exception 04
        self.counter = 0
        self.power_on_count = 7
        self.settings: dict[str, float] = {
            "smart_sleep_voltage": 3.3,
            "cell_uvp": pack.CELL_UVP,
            "cell_uvp_recovery": pack.CELL_UVP_WARN,
            "cell_ovp": pack.CELL_OVP,
            "cell_ovp_recovery": pack.CELL_OVP_WARN,
            "balance_trigger_voltage": pack.BALANCE_DELTA,
            "soc_100_voltage": 3.45,
            "soc_0_voltage": 2.8,
            "cell_request_charge_voltage": 3.45,
            "cell_request_float_voltage": 3.375,
            "power_off_voltage": 2.5,
            "max_charge_current": model.nominal_capacity,
            "charge_ocp_delay": 30,
            "charge_ocp_recovery": 60,
            "max_discharge_current": model.nominal_capacity,
            "discharge_ocp_delay": 30,
            "discharge_ocp_recovery": 60,
            "scp_recovery": 5,
            "max_balance_current": 2.0,
            "charge_otp": pack.CHARGE_OTP,
            "charge_otp_recovery": pack.CHARGE_OTP - 5,
            "discharge_otp": 60.0,
            "discharge_otp_recovery": 55.0,
            "charge_utp": 0.0,
            "charge_utp_recovery": 5.0,
            "mos_otp": 100.0,
            "mos_otp_recovery": 80.0,
            "cell_count": len(model.cells),
            "charge_switch": 1,
            "discharge_switch": 1,
            "balance_switch": 1,
            "design_capacity": model.nominal_capacity,
            "scp_delay": 1500,
            "balance_start_voltage": pack.BALANCE_START,
            "device_address": address,
        }
        self.info: dict[str, str] = {
            "model": "JK_PB2A16S20P",
            "hardware_version": "19.XA",
            "software_version": "19.20",
            "device_name": f"bmsgate sim {address}",
            "manufacturing_date": "250101",
            "serial_number": f"SIM{address:08d}",
        }

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Find FC 0x03 read and FC 0x10 write requests (see jk_pb.request_framer)."""
        return proto.request_framer(buf)

    # --- block images -------------------------------------------------------------------------
    def live_values(self) -> dict[str, float]:
        """Describe the pack model as the 0x1200 block, in the units of jk_pb.LIVE_FIELDS."""
        m = self.model
        volts = m.cell_voltages[: proto.CELLS]
        temps = m.temperatures[: proto.TEMP_SENSORS]
        values: dict[str, float] = {f"cell_{n + 1}": v for n, v in enumerate(volts)}
        values |= {f"wire_resistance_{n + 1}": WIRE_RESISTANCE for n in range(len(volts))}
        values |= {f"temperature_{n + 1}": t for n, t in enumerate(temps)}
        alarms = sum(1 << ALARM_CODES[code] for code in m.alarms if code in ALARM_CODES)
        balancing = bool(m.balancing_cells)
        values |= {
            "cell_present": (1 << len(volts)) - 1,
            "average_cell_voltage": round(sum(volts) / len(volts), 3),
            "cell_voltage_diff": round(max(volts) - min(volts), 3),
            "max_cell": volts.index(max(volts)) + 1,
            "min_cell": volts.index(min(volts)) + 1,
            "mos_temperature": m.mos_temperature,
            "pack_voltage": m.pack_voltage,
            "power": abs(m.power),  # unsigned on the wire
            "current": m.current,
            "alarm_bits": alarms,
            "balance_current": pack.BALANCE_CURRENT if balancing else 0.0,
            "balance_state": (1 if m.current >= 0 else 2) if balancing else 0,
            "soc": round(m.soc),
            "remaining_capacity": m.remaining_capacity,
            "nominal_capacity": m.nominal_capacity,
            "cycles": m.cycles,
            "cycle_capacity": m.cycles * m.nominal_capacity,
            "soh": 100,
            "runtime": int(m.clock),
            "charge_mos": int(m.charge_mos),
            "discharge_mos": int(m.discharge_mos),
            "temp_sensor_bits": sum(1 << n for n in range(len(temps) + 1)),  # MOS + T1..Tn
        }
        return values

    def _block(self, base: int, byteorder: Literal["big", "little"]) -> bytes:
        if base == proto.LIVE_BASE:
            return proto.encode_block(proto.LIVE_FIELDS, self.live_values(), byteorder=byteorder)
        if base == proto.SETTINGS_BASE:
            return proto.encode_block(proto.SETTINGS_FIELDS, self.settings, byteorder=byteorder)
        numbers = {"uptime": int(self.model.clock), "power_on_count": self.power_on_count}
        return proto.encode_block(
            proto.INFO_FIELDS,
            numbers,
            texts=proto.INFO_TEXTS,
            strings=self.info,
            byteorder=byteorder,
        )

    # --- answers -----------------------------------------------------------------------------
    def _ack(self, register: int, count: int) -> list[bytes]:
        ack = proto.ack_frame(self.address, register, count)
        return [b"\x00", ack, b"\x00"] if self.padding else [ack]

    def _error(self, function: int, code: int) -> list[bytes]:
        return [proto.exception_response(self.address, function, code)]

    def answer(self, request: bytes) -> list[bytes] | None:
        """Return the frames this board sends; None when the request is for another address."""
        if request[0] != self.address or self.address == proto.MASTER:
            return None  # the master asks; it never answers
        function = request[1]
        register = int.from_bytes(request[2:4], "big")
        count = int.from_bytes(request[4:6], "big")
        if function == proto.READ:
            return self._read(register, count)
        if function != proto.WRITE:
            return self._error(function, 3)
        data = request[7:-2]
        if register in proto.TRIGGER_TYPES and count == 1:
            kind = proto.TRIGGER_TYPES[register]
            self.counter = (self.counter + 1) & 0xFF
            block = self._block(proto.FRAME_BLOCKS[kind], "little")
            return [proto.status_frame(kind, self.counter, block), *self._ack(register, count)]
        field = _SETTINGS.get(register - proto.SETTINGS_BASE)
        if field is None or count * 2 != field.size:
            return self._error(function, 2)
        if register in self.refuse:
            return self._error(function, 4)  # "bad data": the BMS will not take this value
        value = decode_field(field._replace(pos=0, byteorder="big"), data)
        self.settings[field.key] = value
        if register in SWITCH_REGISTERS:
            self.model.set_mos(register == proto.CHARGE_SWITCH, bool(value))
        return self._ack(register, count)

    def _read(self, register: int, count: int) -> list[bytes]:
        base = register & 0xFE00
        first = register - base
        if base not in (proto.SETTINGS_BASE, proto.LIVE_BASE, proto.INFO_BASE):
            return self._error(proto.READ, 2)
        if not 1 <= count <= proto.MAX_READ_WORDS or first + 2 * count > proto.BODY_LEN:
            return self._error(proto.READ, 2)
        image = self._block(base, "big")
        return [proto.read_response(self.address, image[first : first + 2 * count])]

    def own_frames(self, kind: int = proto.TYPE_LIVE) -> list[bytes]:
        """What a master (DIP 0) sends unasked: its 55 AA frame, then an ACK-shaped frame from 0.

        PROTOCOLS.md 4.2.2; txubelaxu/esphome-jk-bms jk_rs485_sniffer reads the address there.
        """
        self.counter = (self.counter + 1) & 0xFF
        block = self._block(proto.FRAME_BLOCKS[kind], "little")
        register = next(r for r, t in proto.TRIGGER_TYPES.items() if t == kind)
        return [proto.status_frame(kind, self.counter, block), *self._ack(register, 1)]


class Master:
    """A JK-PB at DIP address 0 on a simulated bus: polls its slaves, then sends its own frame.

    ``round()`` gives one polling cycle as timed writes, what a listener on the bus hears: each
    trigger, the slave's answer through the bus (its faults included), then the master's frames.
    """

    def __init__(self, bus: SimBus, own: JkPbBoard, gap: float = 0.02) -> None:
        if own.address != proto.MASTER:
            raise ValueError("the master sits at DIP address 0")
        self.bus, self.own, self.gap = bus, own, gap
        self.silent: set[int] = set()  # slaves taken off the bus (unplugged)

    def round(self, kind: int = proto.TYPE_LIVE) -> list[tuple[float, bytes]]:
        """One cycle: trigger every slave in address order, then the master's own frames."""
        register = next(r for r, t in proto.TRIGGER_TYPES.items() if t == kind)
        writes: list[tuple[float, bytes]] = []
        for board in sorted(self.bus.boards, key=lambda b: b.address):
            if board.address == proto.MASTER:
                continue
            request = proto.trigger_request(register, board.address)
            writes.append((self.gap, request))
            if board.address not in self.silent:
                writes += self.bus.feed(request)
        writes += [(self.gap, frame) for frame in self.own.own_frames(kind)]
        return writes


Board = JkPbBoard

"""A simulated JBD board: 0x03, 0x04, 0x05, 0xAA, 0xE1 and the EEPROM registers in factory mode."""

from __future__ import annotations

from datetime import date

from .. import jbd as proto
from .model import PackModel

ALARM_BITS = {code: bit for bit, code in enumerate(proto.PROTECTION_BITS) if code}
MODEL_NAME = b"BMSGATE-SIM-JBD-SP04S"
MADE = date(2024, 4, 27)


class JbdBoard:
    """One JBD board on its own line (the protocol has no address: every board answers)."""

    def __init__(self, model: PackModel, address: int = 1, software: int = 0x44) -> None:
        self.model = model
        self.address = address
        self.software = software  # 0x44 = "4.4"
        self.forced = 0  # 0xE1 mask: bit0 charge MOS forced off, bit1 discharge
        self.factory = False

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Requests share the answers' framing."""
        used, frame = proto.framer(buf)
        if frame is not None and not proto.is_request(frame):
            return used, None  # another board's answer on a shared line
        return used, frame

    @staticmethod
    def _frame(register: int, data: bytes = b"", status: int = 0) -> bytes:
        body = bytes((status, len(data))) + data
        return (
            bytes((proto.START, register))
            + body
            + proto.checksum(body).to_bytes(2, "big")
            + b"\x77"
        )

    def _basic(self) -> bytes:
        m = self.model
        cells = len(m.cells)
        balance = sum(1 << (c - 1) for c in m.balancing_cells if c <= 32)
        protection = sum(1 << ALARM_BITS[c] for c in m.alarms if c in ALARM_BITS)
        protection |= (self.forced != 0) << proto.SOFTWARE_LOCK_BIT
        made = (MADE.year - 2000) << 9 | MADE.month << 5 | MADE.day
        fet = m.charge_mos | m.discharge_mos << 1
        data = (
            round(m.pack_voltage * 100).to_bytes(2, "big")
            + round(m.current * 100).to_bytes(2, "big", signed=True)
            + round(m.remaining_capacity * 100).to_bytes(2, "big")
            + round(m.nominal_capacity * 100).to_bytes(2, "big")
            + m.cycles.to_bytes(2, "big")
            + made.to_bytes(2, "big")
            + (balance & 0xFFFF).to_bytes(2, "big")
            + (balance >> 16).to_bytes(2, "big")
            + protection.to_bytes(2, "big")
            + bytes((self.software, round(m.soc), fet, cells, len(m.temperatures)))
            + b"".join(
                (round(t * 10) + proto.TEMP_OFFSET).to_bytes(2, "big") for t in m.temperatures
            )
        )
        return self._frame(proto.BASIC, data)

    def _setting(self, register: int) -> bytes | None:
        m = self.model
        raw = {
            0x10: round(m.nominal_capacity * 100),
            0x11: round(m.nominal_capacity * 80),
            0x17: m.cycles,
            0x18: 3231,  # 50.0 °C
            0x19: 3181,
            0x1A: 2731,  # 0.0 °C
            0x1B: 2781,
            0x1C: 3331,  # 60.0 °C
            0x1D: 3281,
            0x1E: 2531,  # -20.0 °C
            0x1F: 2581,
            0x20: len(m.cells) * 365,  # [10 mV]
            0x21: len(m.cells) * 340,
            0x22: len(m.cells) * 250,
            0x23: len(m.cells) * 290,
            0x24: 3650,
            0x25: 3400,
            0x26: 2500,
            0x27: 2900,
            0x28: 10000,  # 100 A
            0x29: (-15000) & 0xFFFF,  # -150 A
            0x2A: 3400,
            0x2B: 30,
            0x2D: 0x0004,  # balancer on
            0x2F: len(m.cells),
        }.get(register)
        return None if raw is None else raw.to_bytes(2, "big")

    def answer(self, request: bytes) -> list[bytes] | None:
        """The answer to one request; writes are acknowledged with no data."""
        rw, register, data = request[1], request[2], request[4:-3]
        m = self.model
        if rw == proto.WRITE:
            if register == proto.ENTER_FACTORY and data == proto.FACTORY_KEY:
                self.factory = True
            elif register == proto.EXIT_FACTORY:
                self.factory = False
            elif register == proto.MOS_CONTROL and len(data) == 2:
                self.forced = data[1] & 3
                m.set_mos(True, not self.forced & 1)
                m.set_mos(False, not self.forced & 2)
            else:
                return [self._frame(register, status=0x80)]
            return [self._frame(register)]
        if register == proto.BASIC:
            return [self._basic()]
        if register == proto.CELLS:
            volts = b"".join(round(v * 1000).to_bytes(2, "big") for v in m.cell_voltages)
            return [self._frame(register, volts)]
        if register == proto.HARDWARE:
            return [self._frame(register, MODEL_NAME)]
        if register == proto.ERROR_COUNTS:
            return [self._frame(register, bytes(24))]
        setting = self._setting(register) if self.factory else None
        if setting is None:
            return [self._frame(register, status=0x80)]
        return [self._frame(register, setting)]


Board = JbdBoard

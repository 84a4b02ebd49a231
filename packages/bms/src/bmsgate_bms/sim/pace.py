"""A simulated Pace pack: 0x42 analog, 0x44 status, 0x9A/0x9B MOS, 0xC1 version (paceic v2.5)."""

from __future__ import annotations

from .. import pace as proto
from .. import yd1363
from .ascii_board import AsciiBoard, u16
from .model import PackModel

STATE_BITS = {
    code: (offset, bit)
    for _name, table, offset in proto.STATE_BYTES
    for bit, code in enumerate(table)
    if code
}


class PaceBoard(AsciiBoard):
    """One pack on the bus: answers only its own address (and 0x42/0x44 command)."""

    VERSION = proto.VERSION
    CID1 = proto.CID1

    def __init__(self, model: PackModel, address: int = 1, extended: bool = True) -> None:
        super().__init__(model, address)
        self.extended = extended  # P = 9 (SOC, SOH...) as newer firmware; False: P = 3

    def _temperatures(self) -> list[float]:
        """Six sensors: cells 1-4, MOSFET, ambient."""
        m, cells = self.model, self.cell_sensors()
        return [*cells, m.mos_temperature, sum(cells) / 4]

    def _analog(self) -> bytes:
        m = self.model
        out = (
            self.cells_and_sensors(proto.TEMP_OFFSET)
            + u16(m.current * 100)
            + u16(m.pack_voltage * 1000)
            + u16(m.remaining_capacity * 100)
            + bytes((9 if self.extended else 3,))
            + u16(m.nominal_capacity * 100)
            + u16(m.cycles)
            + u16(m.nominal_capacity * 100)
        )
        if self.extended:
            out += bytes((round(m.soc),)) + bytes(8) + bytes((100,)) + u16(m.pack_voltage * 1000)
            out += u16(m.current * 100)
        return out

    def _indicator(self) -> int:
        m = self.model
        return (
            m.charge_mos << 1 | m.discharge_mos << 2 | (m.current < 0) << 3 | (m.current > 0) << 5
        )

    def _status(self) -> bytes:
        m = self.model
        cells, sensors = len(m.cells), len(self._temperatures())
        states = bytearray(12)
        for code in m.alarms:
            if code in STATE_BITS:
                offset, bit = STATE_BITS[code]
                states[offset] |= 1 << bit
        balance = sum(1 << (c - 1) for c in m.balancing_cells if c <= 16)
        states[5] = self._indicator()
        states[8], states[9] = balance & 0xFF, balance >> 8
        return (
            bytes((0, self.address, cells))
            + bytes(cells)
            + bytes((sensors,))
            + bytes(sensors)
            + states
        )

    def answer(self, request: bytes) -> list[bytes] | None:
        """The answer to a request for this pack; None when it is for another."""
        frame = yd1363.parse(request)
        if frame.version != proto.VERSION or frame.address != self.address:
            return None
        if frame.cid2 in (proto.ANALOG, proto.STATUS):
            if frame.info[:1] != bytes((self.address,)):
                return None  # RS485: the command must be the pack's own address
            return self.reply(self._analog() if frame.cid2 == proto.ANALOG else self._status())
        if frame.cid2 in (proto.CHARGE_MOS, proto.DISCHARGE_MOS) and len(frame.info) == 1:
            self.model.set_mos(frame.cid2 == proto.CHARGE_MOS, frame.info[0] == 0)
            return self.reply(bytes((self._indicator(),)))
        if frame.cid2 == proto.VERSION_INFO:
            return self.reply(b"P16S100A-SIM-1.00   ")
        return self.reply(rtn=0x04)  # CID2 invalid


Board = PaceBoard

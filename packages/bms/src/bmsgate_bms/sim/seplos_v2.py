"""A simulated Seplos v2 pack: 0x42 telemetry, 0x44 alarms, 0x51 vendor information, 0x4F."""

from __future__ import annotations

from .. import seplos_v2 as proto
from .. import yd1363
from .ascii_board import AsciiBoard, u16
from .model import PackModel

EVENTS = {
    code: (event, bit)
    for event, names in proto.EVENT_BITS.items()
    for bit, code in enumerate(names)
    if code
}


class SeplosBoard(AsciiBoard):
    """One pack on the bus: answers only its own address (and command group)."""

    VERSION = proto.VERSION
    CID1 = proto.CID1

    def __init__(self, model: PackModel, address: int = 1, version: bytes = b"\x02\x07") -> None:
        super().__init__(model, address)
        self.version = version  # 2.7

    def _temperatures(self) -> list[float]:
        """Always six sensors, as the boards send: cells 1-4, ambient, power (MOSFET)."""
        m, cells = self.model, self.cell_sensors()
        return [*cells, sum(cells) / 4, m.mos_temperature]

    def _telemetry(self) -> bytes:
        m = self.model
        return (
            self.cells_and_sensors(proto.TEMP_OFFSET)
            + u16(m.current * 100)
            + u16(m.pack_voltage * 100)
            + u16(m.remaining_capacity * 100)
            + bytes((10,))
            + u16(m.nominal_capacity * 100)
            + u16(m.soc * 10)
            + u16(m.nominal_capacity * 100)
            + u16(m.cycles)
            + u16(1000)
            + u16(m.pack_voltage * 100)
            + bytes(8)
        )

    def _alarms(self) -> bytes:
        m = self.model
        cells, sensors = len(m.cells), len(self._temperatures())
        events = bytearray(8)
        for code in m.alarms:
            if code in EVENTS:
                event, bit = EVENTS[code]
                events[event - 1] |= 1 << bit
        balance = sum(1 << (c - 1) for c in m.balancing_cells if c <= 16)
        system = 2 if m.current > 0 else 1 if m.current < 0 else 16
        return (
            bytes((0, self.address, cells))
            + bytes(cells)
            + bytes((sensors,))
            + bytes(sensors)
            + bytes((0, 0, 20))
            + bytes(events[:6])
            + bytes((m.discharge_mos | m.charge_mos << 1, balance & 0xFF, balance >> 8, system))
            + bytes(2)
            + bytes(events[6:])
            + bytes(6)
        )

    def answer(self, request: bytes) -> list[bytes] | None:
        """The answer to a request for this pack; None when it is for another."""
        frame = yd1363.parse(request)
        if frame.version != proto.VERSION or frame.address != self.address:
            return None
        if frame.cid2 in (proto.TELEMETRY, proto.ALARMS):
            if frame.info[:1] != bytes((self.address,)):
                return None  # RS485: the command group must be the pack's own address
            body = self._telemetry() if frame.cid2 == proto.TELEMETRY else self._alarms()
            return self.reply(body)
        if frame.cid2 == proto.VENDOR_INFO:
            return self.reply(b"1101-SP16 " + self.version + b"bmsgate simulator   ")
        if frame.cid2 == proto.PROTOCOL_VERSION:
            return self.reply()
        return self.reply(rtn=0x04)  # CID2 invalid


Board = SeplosBoard

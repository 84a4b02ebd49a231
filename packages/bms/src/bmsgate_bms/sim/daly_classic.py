"""A simulated DALY board speaking the classic 0xA5 protocol."""

from __future__ import annotations

import math

from .. import daly_classic as proto
from ..checksum import sum8
from .model import PackModel

FAILURE_CODES = {
    code: (i, j)
    for i, names in enumerate(proto.FAILURE_BITS)
    for j, code in enumerate(names)
    if code
}


class DalyClassicBoard:
    """Answers 0x90..0x98, 0xD9/0xDA, 0x21 and 0x00 for one board address."""

    def __init__(self, model: PackModel, address: int = 1, all_frames: bool = False) -> None:
        self.model = model
        self.address = address
        self.all_frames = all_frames  # some boards always send 16 cell frames and 3 temp frames

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """DALY requests are 13-byte frames like the answers."""
        return proto.framer(buf)

    def _frame(self, cmd: int, data: bytes) -> bytes:
        body = bytes((proto.START, self.address, cmd, 8)) + data
        return body + bytes((sum8(body),))

    def answer(self, request: bytes) -> list[bytes] | None:
        """The frames board ``address`` sends back; None if addressed to another board."""
        if request[1] != proto.host_address(self.address):
            return None
        cmd, data, m = request[2], request[4:12], self.model
        if cmd == proto.SOC:
            # raw < 30000 while charging: the sign most DALY tools assume (see to_reading)
            raw = 30000 - round(m.current * 10)
            out = (
                round(m.pack_voltage * 10).to_bytes(2, "big")
                + bytes(2)
                + raw.to_bytes(2, "big")
                + round(m.soc * 10).to_bytes(2, "big")
            )
            return [self._frame(cmd, out)]
        if cmd == proto.RATED:
            mah = round(m.nominal_capacity * 1000).to_bytes(4, "big")
            return [self._frame(cmd, mah + (3200).to_bytes(4, "big"))]  # LiFePO4: 3.2 V
        if cmd == proto.CELL_RANGE:
            volts = m.cell_voltages
            hi, lo = max(volts), min(volts)
            out = (
                round(hi * 1000).to_bytes(2, "big")
                + bytes((volts.index(hi) + 1,))
                + round(lo * 1000).to_bytes(2, "big")
                + bytes((volts.index(lo) + 1,))
                + bytes(2)
            )
            return [self._frame(cmd, out)]
        if cmd == proto.TEMP_RANGE:
            temps = m.temperatures
            hi, lo = max(temps), min(temps)
            out = bytes((round(hi) + 40, temps.index(hi) + 1, round(lo) + 40, temps.index(lo) + 1))
            return [self._frame(cmd, out + bytes(4))]
        if cmd == proto.MOS:
            state = 1 if m.current > 0 else 2 if m.current < 0 else 0
            life = int(m.clock) & 0xFF
            mah = round(m.remaining_capacity * 1000).to_bytes(4, "big")
            return [self._frame(cmd, bytes((state, m.charge_mos, m.discharge_mos, life)) + mah)]
        if cmd == proto.STATUS:
            out = bytes((len(m.cells), len(m.temperatures), m.current > 0, m.current < 0, 0))
            return [self._frame(cmd, out + m.cycles.to_bytes(2, "big") + b"\x40")]
        if cmd == proto.CELLS:
            millivolts = [round(v * 1000) for v in m.cell_voltages]
            n = proto.MAX_CELL_FRAMES if self.all_frames else math.ceil(len(millivolts) / 3)
            millivolts += [0] * (3 * n - len(millivolts))
            return [
                self._frame(
                    cmd,
                    bytes((k + 1,))
                    + b"".join(v.to_bytes(2, "big") for v in millivolts[3 * k : 3 * k + 3])
                    + b"\xd3",
                )
                for k in range(n)
            ]
        if cmd == proto.TEMPS:
            offset_temps = [round(t) + 40 for t in m.temperatures]  # u8, offset 40
            n = (
                proto.MAX_TEMP_FRAMES
                if self.all_frames
                else max(1, math.ceil(len(offset_temps) / 7))
            )
            offset_temps += [0] * (7 * n - len(offset_temps))
            return [
                self._frame(cmd, bytes((k + 1, *offset_temps[7 * k : 7 * k + 7]))) for k in range(n)
            ]
        if cmd == proto.BALANCE:
            bits = bytearray(8)
            for cell in m.balancing_cells:
                bits[(cell - 1) // 8] |= 1 << ((cell - 1) % 8)
            return [self._frame(cmd, bytes(bits))]
        if cmd == proto.FAILURES:
            bits = bytearray(8)
            for code in m.alarms:
                if code in FAILURE_CODES:
                    i, j = FAILURE_CODES[code]
                    bits[i] |= 1 << j
            return [self._frame(cmd, bytes(bits))]
        if cmd in (proto.CHARGE_MOS, proto.DISCHARGE_MOS):
            m.set_mos(cmd == proto.CHARGE_MOS, bool(data[0]))
            return [self._frame(cmd, bytes((data[0],)) + bytes(7))]
        if cmd == proto.SET_SOC:
            m.set_soc(int.from_bytes(data[6:8], "big") / 10)
            return [self._frame(cmd, b"\x01" + bytes(7))]
        if cmd == proto.RESET:
            return [self._frame(cmd, bytes(8))]
        return None  # unknown commands go unanswered, as on a real board


Board = DalyClassicBoard

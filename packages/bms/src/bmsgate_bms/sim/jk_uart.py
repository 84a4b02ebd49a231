"""A simulated JK-B board speaking the 0x4E57 UART protocol (GPS / UART1 port)."""

from __future__ import annotations

from .. import jk_uart as proto
from .model import PackModel

WARNING_CODES = {code: n for n, code in enumerate(proto.WARNING_BITS) if code}
# What the pack model's alarm codes become on a JK board (cell limits are what it reports)
MODEL_ALARMS = {"charge_overtemp": "battery_overtemp"}


def encode_temperature(celsius: float) -> int:
    """0x80-0x82 encoding: 0..100 as is, below zero 100 + |t| (-1 °C = 101), clamped to -40."""
    value = round(celsius)
    return min(100, value) if value >= 0 else 100 + min(40, -value)


def encode_current(amps: float, protocol_version: int) -> int:
    """0x84 [A, + = charging] in the sign-magnitude (version 1) or the 10000-offset encoding."""
    centi = round(amps * 100)
    if protocol_version == 1:
        return min(0x7FFF, abs(centi)) | (0x8000 if centi > 0 else 0)
    return max(0, min(0xFFFF, 10000 - centi))


def _text(value: str, size: int) -> bytes:
    return value.encode("ascii")[:size].ljust(size, b"\x00")


class JkUartBoard:
    """Answers read-all, read-one, password, activation and 0xAB/0xAC writes.

    ``protocol_version`` 1 sends every record of 2021+ firmware (0x79..0xC0) with the
    sign-magnitude current; 0 behaves like the 2020 vendor example (ends at 0xB7, offset current).
    ``asleep`` boards ignore everything until an activation frame (command 0x01) arrives.
    """

    def __init__(self, model: PackModel, address: int = 1, protocol_version: int = 1) -> None:
        self.model = model
        self.address = address  # no addressing on the wire: one board per line
        self.protocol_version = protocol_version
        self.asleep = False
        self.balancer_enabled = True
        self.written: dict[int, bytes] = {}  # settings records written, by identifier

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Find a request: they are 0x4E57 frames like the answers."""
        return proto.framer(buf)

    def _answer(self, command: int, info: bytes) -> list[bytes]:
        return [proto.build_frame(command, info, source=proto.SOURCE_BMS, transport=proto.RESPONSE)]

    def records(self) -> dict[int, bytes]:
        """Every record this board sends, in the order of 2021+ firmware."""
        m = self.model
        volts = [round(v * 1000) for v in m.cell_voltages]
        temps = (m.temperatures + [m.mos_temperature] * 2)[:2]
        warnings = 0
        for model_code in m.alarms:
            code = MODEL_ALARMS.get(model_code, model_code)
            if code in WARNING_CODES:
                warnings |= 1 << WARNING_CODES[code]
        # bit 3 ("battery online") stays 0 as on every real capture
        status = int(m.charge_mos) | int(m.discharge_mos) << 1 | int(bool(m.balancing_cells)) << 2
        capacity = round(m.nominal_capacity)

        def u(value: float, size: int) -> bytes:
            return round(value).to_bytes(size, "big")

        def s16(value: int) -> bytes:
            return value.to_bytes(2, "big", signed=True)

        # fmt: off
        out: dict[int, bytes] = {
            proto.CELLS: bytes((3 * len(volts),))
            + b"".join(bytes((n + 1,)) + v.to_bytes(2, "big") for n, v in enumerate(volts)),
            0x80: u(encode_temperature(m.mos_temperature), 2),
            0x81: u(encode_temperature(temps[0]), 2),
            0x82: u(encode_temperature(temps[1]), 2),
            0x83: u(m.pack_voltage * 100, 2),
            0x84: u(encode_current(m.current, self.protocol_version), 2),
            0x85: u(m.soc, 1),
            0x86: u(len(m.temperatures), 1),
            0x87: u(m.cycles, 2),
            0x89: u(m.cycles * capacity, 4),
            0x8A: u(len(volts), 2),
            0x8B: u(warnings, 2),
            0x8C: u(status, 2),
            0x8E: u(len(volts) * 365, 2),  # [10 mV] 3.65 V a cell
            0x8F: u(len(volts) * 260, 2),
            0x90: u(3650, 2), 0x91: u(3550, 2), 0x92: u(5, 2),  # [mV] [mV] [s]
            0x93: u(2600, 2), 0x94: u(2900, 2), 0x95: u(5, 2),
            0x96: u(300, 2),
            0x97: u(capacity, 2), 0x98: u(300, 2),  # [A] [s]
            0x99: u(capacity // 2, 2), 0x9A: u(30, 2),
            0x9B: u(3400, 2), 0x9C: u(10, 2),
            0x9D: u(self.balancer_enabled, 1),
            0x9E: u(80, 2), 0x9F: u(70, 2),
            0xA0: u(70, 2), 0xA1: u(60, 2),
            0xA2: u(20, 2),
            0xA3: u(55, 2), 0xA4: u(60, 2),
            0xA5: s16(0), 0xA6: s16(5), 0xA7: s16(-20), 0xA8: s16(-10),
            0xA9: u(len(volts), 1),
            0xAA: u(capacity, 4),
            0xAB: u(m.charge_mos, 1),
            0xAC: u(m.discharge_mos, 1),
            0xAD: u(1000, 2),
            0xAE: u(self.address, 1),
            0xAF: u(0, 1),  # LiFePO4
            0xB0: u(10, 2),
            0xB1: u(20, 1),
            0xB2: _text("123456", 10),
            0xB3: u(0, 1),
            0xB4: _text("BMSGSIM1", 8),
            0xB5: _text("2601", 4),
            0xB6: u(m.clock / 60, 4),
            0xB7: _text("11.XW_S11.26SIM", 15),
        }
        # fmt: on
        out |= {k: v for k, v in self.written.items() if k in out}
        if self.protocol_version >= 1:
            out |= {
                0xB8: u(0, 1),
                0xB9: u(capacity, 4),
                0xBA: _text("bmsgate", 12) + _text("JK_B2A16SSIM", 12),
                0xC0: u(self.protocol_version, 1),
            }
        return out

    def answer(self, request: bytes) -> list[bytes] | None:
        """Return the frames the board sends back; None when it stays silent (asleep, unknown).

        Silence is None rather than [] because the bus's checksum fault cannot handle an empty
        answer, and for the bus both mean "nothing on the wire".
        """
        if request[10] != proto.REQUEST:
            return None  # our own answers, or another board's
        command = request[8]
        info = request[proto.HEADER_LEN : -proto.TRAILER_LEN]
        ident = info[0] if info else 0
        if self.asleep:
            if command == proto.ACTIVATE:
                self.asleep = False
            return None  # a sleeping board says nothing, not even to the activation
        if command in (proto.READ_ALL, proto.READ_ONE):
            records = self.records()
            if command == proto.READ_ONE and ident:
                if ident not in records:
                    return None
                records = {ident: records[ident]}
            return self._answer(command, b"".join(bytes((k,)) + v for k, v in records.items()))
        if command == proto.WRITE:
            if ident in (proto.CHARGE_SWITCH, proto.DISCHARGE_SWITCH) and len(info) >= 2:
                self.model.set_mos(ident == proto.CHARGE_SWITCH, bool(info[1]))
            elif ident in proto.RECORDS and len(info) == 1 + proto.RECORDS[ident].size:
                self.written[ident] = bytes(info[1:])  # a setting, stored as sent
            # acknowledged with the identifier first (PROTOCOLS.md 3.4); other writes are ignored
            return self._answer(command, info[:2])
        if command == proto.PASSWORD:
            return self._answer(command, b"\x00")
        return None  # activation of an awake board, or an unknown command


Board = JkUartBoard

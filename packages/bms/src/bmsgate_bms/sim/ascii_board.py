"""What the simulated Seplos v2 and Pace boards share: the YD/T 1363 framing and six sensors."""

from __future__ import annotations

from .. import yd1363
from .model import PackModel


def u16(value: float) -> bytes:
    """A rounded 16-bit big-endian value, two's complement when negative."""
    return round(value).to_bytes(2, "big", signed=value < 0)


class AsciiBoard:
    """One pack on an RS485 bus speaking ``~VER ADR CID1 ...``; a make sets VERSION and CID1."""

    VERSION: int
    CID1: int

    def __init__(self, model: PackModel, address: int = 1) -> None:
        self.model = model
        self.address = address

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Requests share the answers' framing; answers of other packs are not requests."""
        used, frame = yd1363.framer(buf)
        if frame is not None and yd1363.parse(frame).is_answer:
            return used, None
        return used, frame

    def reply(self, info: bytes = b"", rtn: int = 0) -> list[bytes]:
        """An answer from this pack."""
        return [yd1363.build(self.VERSION, self.address, self.CID1, rtn, info)]

    def cell_sensors(self) -> list[float]:
        """Four cell sensors, as the boards send them, from the model's (the last repeated)."""
        cells = (self.model.temperatures or [25.0])[:4]
        return cells + [cells[-1]] * (4 - len(cells))

    def _temperatures(self) -> list[float]:
        """The six sensors in the make's order [°C]."""
        raise NotImplementedError

    def cells_and_sensors(self, temp_offset: int) -> bytes:
        """0x42 up to the current: data flag, address, cell voltages [mV], the sensors [0.1 K]."""
        m, temps = self.model, self._temperatures()
        return (
            bytes((0, self.address, len(m.cells)))
            + b"".join(u16(v * 1000) for v in m.cell_voltages)
            + bytes((len(temps),))
            + b"".join(u16(t * 10 + temp_offset) for t in temps)
        )

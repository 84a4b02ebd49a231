"""bmsgate's BMS protocol layer: pure decoders and encoders, a Link contract, a simulator."""

from .errors import ChecksumError, FrameError, LengthError, LinkTimeout, ModbusExceptionError
from .reading import BmsReading

__all__ = [
    "BmsReading",
    "ChecksumError",
    "FrameError",
    "LengthError",
    "LinkTimeout",
    "ModbusExceptionError",
]

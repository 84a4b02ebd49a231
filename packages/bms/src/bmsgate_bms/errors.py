"""Errors raised by the protocol layer; every decoder raises only FrameError subclasses."""


class FrameError(ValueError):
    """A frame is malformed, truncated, for another command, or fails its checksum."""


class ChecksumError(FrameError):
    """The frame's checksum or CRC does not match its content."""


class LengthError(FrameError):
    """The frame is shorter or longer than its header or protocol says."""


class ModbusExceptionError(FrameError):
    """A Modbus RTU board refused a request: its answer is function | 0x80 and an exception code."""

    def __init__(self, make: str, function: int, code: int, meaning: str | None = None) -> None:
        self.function, self.code = function, code
        text = f" ({meaning})" if meaning else ""
        super().__init__(f"{make} refused function {function:02X}: exception {code:02X}{text}")


class LinkTimeout(TimeoutError):
    """The BMS did not answer (completely) within the allowed time."""

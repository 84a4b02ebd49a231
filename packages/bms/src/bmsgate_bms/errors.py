"""Errors raised by the protocol layer; every decoder raises only FrameError subclasses."""


class FrameError(ValueError):
    """A frame is malformed, truncated, for another command, or fails its checksum."""


class ChecksumError(FrameError):
    """The frame's checksum or CRC does not match its content."""


class LengthError(FrameError):
    """The frame is shorter or longer than its header or protocol says."""


class LinkTimeout(TimeoutError):
    """The BMS did not answer (completely) within the allowed time."""

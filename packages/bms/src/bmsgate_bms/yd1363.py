"""The ASCII framing Seplos v2 and Pace share (YD/T 1363.3 style).

A frame is ``~ VER ADR CID1 CID2 LENGTH INFO CHKSUM CR``.

Everything between ``~`` and CR is upper-case hex, two characters a byte. LENGTH is a 4-bit
LCHKSUM and a 12-bit LENID, the INFO length in characters; CHKSUM is the two's complement of the
sum of the characters after ``~``, 16 bits. In an answer CID2 holds the return code RTN. Facts:
NEW_MAKES.md sections 2.2-2.3 and 3.2 (Seplos "Communication Protocol V2.0" PDF, PACE RS485 PDF,
syssi/esphome-seplos-bms:components/seplos_modbus). No I/O here; the protocol modules
(seplos_v2, pace) build their requests and decode their INFO on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from .errors import ChecksumError, FrameError, LengthError
from .fields import read_int
from .link import Framer

SOI: Final = 0x7E  # "~"
EOI: Final = 0x0D  # CR
HEADER_CHARS: Final = 12  # VER ADR CID1 CID2 LENGTH after the "~"
MIN_FRAME_LEN: Final = 1 + HEADER_CHARS + 4 + 1  # an empty INFO
HEX: Final = frozenset(b"0123456789ABCDEFabcdef")
MAX_ADDRESS: Final = 15  # packs 0-15 by DIP switch, in both dialects
GROUPED: Final = (0x42, 0x44)  # requests whose INFO repeats the pack's address
# return codes (RTN, in an answer's CID2 place): Seplos V2.0 PDF table 5, PACE RS485 PDF
RETURN_CODES: Final = {
    0x00: "normal",
    0x01: "VER error",
    0x02: "CHKSUM error",
    0x03: "LCHKSUM error",
    0x04: "CID2 invalid",
    0x05: "command format error",
    0x06: "invalid data",
    0x07: "no data",
    0x09: "operation refused",
    0xE1: "CID1 invalid",
    0xE2: "execution failure",
    0xE3: "device fault",
    0xE4: "no permission",
}


class Frame(NamedTuple):
    """One checked frame: header bytes and the INFO bytes."""

    version: int
    address: int
    cid1: int
    cid2: int  # the command in a request, the return code in an answer
    info: bytes

    @property
    def is_answer(self) -> bool:
        """Answers carry a return code (00-09, E1-E4) where requests carry a command (40-DF)."""
        return self.cid2 < 0x40 or self.cid2 >= 0xE0


def lchksum(lenid: int) -> int:
    """4-bit check of the 12-bit LENID: the nibbles' sum, negated, mod 16."""
    return -((lenid >> 8) + (lenid >> 4 & 0xF) + (lenid & 0xF)) & 0xF


def chksum(chars: bytes) -> int:
    """16-bit two's complement of the sum of the characters after ``~``."""
    return -sum(chars) & 0xFFFF


def build(version: int, address: int, cid1: int, cid2: int, info: bytes = b"") -> bytes:
    """A whole frame with INFO given as bytes (sent as hex characters)."""
    lenid = 2 * len(info)
    body = (
        f"{version:02X}{address:02X}{cid1:02X}{cid2:02X}{lchksum(lenid):X}{lenid:03X}".encode()
        + info.hex().upper().encode()
    )
    return b"~" + body + f"{chksum(body):04X}".encode() + b"\r"


def _bad(buf: bytes, upto: int) -> int:
    """Position of the first character that cannot be inside a frame, else 0."""
    return next((i for i in range(1, upto) if buf[i] not in HEX), 0)


def framer(buf: bytes) -> tuple[int, bytes | None]:
    """Find the next checked frame, request or answer (see link.Framer)."""
    start = buf.find(bytes((SOI,)))
    if start < 0:
        return len(buf), None
    if start > 0:
        return start, None
    if len(buf) < 1 + HEADER_CHARS:
        return (1, None) if _bad(buf, len(buf)) else (0, None)
    if _bad(buf, 1 + HEADER_CHARS):
        return 1, None  # binary junk on a shared bus (a collision): not a frame
    length = int(buf[9:13], 16)
    lenid = length & 0xFFF
    if length >> 12 != lchksum(lenid):
        return 1, None
    total = MIN_FRAME_LEN + lenid
    if len(buf) < total:
        return (1, None) if _bad(buf, len(buf)) else (0, None)
    frame = bytes(buf[:total])
    if _bad(frame, total - 1) or frame[-1] != EOI:
        return 1, None
    if chksum(frame[1:-5]) != int(frame[-5:-1], 16):
        return 1, None
    return total, frame


def parse(frame: bytes) -> Frame:
    """The fields of one frame; FrameError if it is not exactly one checked frame."""
    if len(frame) < MIN_FRAME_LEN or frame[0] != SOI:
        raise LengthError(f"not a whole frame: {frame[:40]!r}")
    if frame[-1] != EOI or _bad(frame, len(frame) - 1):
        raise FrameError(f"not a frame (CR, hex characters): {frame[:40]!r}")
    length = int(frame[9:13], 16)
    lenid = length & 0xFFF
    if length >> 12 != lchksum(lenid):
        raise ChecksumError(f"LCHKSUM {length >> 12:X} does not fit LENID {lenid}")
    if len(frame) != MIN_FRAME_LEN + lenid or lenid % 2:
        raise LengthError(f"LENID {lenid} does not fit a {len(frame)}-character frame")
    if chksum(frame[1:-5]) != int(frame[-5:-1], 16):
        raise ChecksumError(f"CHKSUM {frame[-5:-1].decode()} does not fit the characters")
    head = bytes.fromhex(frame[1:9].decode())
    return Frame(head[0], head[1], head[2], head[3], bytes.fromhex(frame[13:-5].decode()))


def split(data: bytes) -> list[Frame]:
    """Every frame in pasted text (``bmsgate decode``); FrameError for anything else."""
    frames: list[Frame] = []
    rest = data.strip(b" \n")
    while rest:
        used, frame = framer(rest)
        if frame is None:
            if used == 0:
                raise LengthError(f"incomplete frame: {rest[:40]!r}")
            parse(rest[: rest.find(b"\r") + 1] if b"\r" in rest else rest)  # says what is wrong
            raise FrameError(f"not a frame: {rest[:used]!r}")
        frames.append(parse(frame))
        rest = rest[used:].lstrip(b" \n")
    if not frames:
        raise LengthError("no bytes")
    return frames


def answer_framer(version: int, address: int) -> Framer:
    """A framer for the answers of one pack: other packs' and masters' frames are dropped."""

    def find(buf: bytes) -> tuple[int, bytes | None]:
        used, frame = framer(buf)
        if frame is None:
            return used, None
        head = bytes.fromhex(frame[1:9].decode())
        answer = Frame(head[0], head[1], head[2], head[3], b"").is_answer
        if head[0] != version or head[1] != address or not answer:
            return used, None
        return used, frame

    return find


def answer_info(frame: Frame, what: str) -> bytes:
    """The INFO of an answer with RTN 0; FrameError naming the return code otherwise."""
    if not frame.is_answer:
        raise FrameError(f"a request (CID2 0x{frame.cid2:02X}), not an answer")
    if frame.cid2 != 0:
        reason = RETURN_CODES.get(frame.cid2, "unknown")
        raise FrameError(f"the BMS refused {what}: RTN 0x{frame.cid2:02X} ({reason})")
    return frame.info


# --- what both dialects build and decode alike ---------------------------------------------------
def check_address(make: str, address: int) -> None:
    """ValueError unless ``address`` is a DIP-switch address 0-15."""
    if not 0 <= address <= MAX_ADDRESS:
        raise ValueError(f"{make} address must be 0..{MAX_ADDRESS}, not {address}")


def request(
    make: str, version: int, cid1: int, cid2: int, address: int, info: bytes | None = None
) -> bytes:
    """A request to pack ``address``; 0x42/0x44 carry the address again in their INFO."""
    check_address(make, address)
    if info is None:
        info = bytes((address,)) if cid2 in GROUPED else b""
    return build(version, address, cid1, cid2, info)


def bits(byte: int, count: int = 8) -> list[int]:
    """The numbers of the bits set in ``byte``, bit 0 first."""
    return [n for n in range(count) if byte >> n & 1]


def cells_and_sensors(block: bytes) -> tuple[list[float], list[int], int]:
    """0x42 from the cell count on: cell voltages [V], raw sensor words, where the rest begins."""
    cells = read_int(block, 0, 1)
    volts = [read_int(block, 1 + 2 * i, 2) / 1000 for i in range(cells)]
    at = 1 + 2 * cells
    count = read_int(block, at, 1)
    raws = [read_int(block, at + 1 + 2 * i, 2) for i in range(count)]
    return volts, raws, at + 1 + 2 * count


def status_head(info: bytes) -> tuple[int, int, list[int]]:
    """0x44: the cell count, where the bytes after the temperature alarms begin, cells in alarm."""
    cells = read_int(info, 2, 1)
    at = 3 + cells
    sensors = read_int(info, at, 1)
    return cells, at + 1 + sensors, [n + 1 for n in range(cells) if info[3 + n]]


def answer_head(frame: Frame, names: Mapping[int, str]) -> dict[str, Any]:
    """Who answered with which return code (and its reason); FrameError for a request."""
    if not frame.is_answer:
        what = names.get(frame.cid2, f"0x{frame.cid2:02X}")
        raise FrameError(f"a request ({what} to pack {frame.address}), not an answer")
    out: dict[str, Any] = {"address": frame.address, "rtn": frame.cid2}
    if frame.cid2 != 0:
        out |= {"refused": True, "reason": RETURN_CODES.get(frame.cid2, "unknown")}
    return out


def unsaid(make: str, commands: str) -> FrameError:
    """An answer decoded without its command: the frame does not say which it answers."""
    return FrameError(
        f"a {make} answer does not say which command it answers: give it ({commands})"
    )


def request_fields(frame: Frame, names: Mapping[int, str]) -> dict[str, Any]:
    """Which pack a request asks what."""
    return {
        "request": names.get(frame.cid2, f"0x{frame.cid2:02X}"),
        "address": frame.address,
        "cid2": frame.cid2,
    }

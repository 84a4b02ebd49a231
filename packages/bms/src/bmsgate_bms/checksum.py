"""Checksums used by DALY and JK frames."""


def sum8(data: bytes) -> int:
    """Low byte of the arithmetic sum (DALY classic, JK 55 AA frames)."""
    return sum(data) & 0xFF


def sum16(data: bytes) -> int:
    """Low 16 bits of the arithmetic sum (JK 0x4E57 frames)."""
    return sum(data) & 0xFFFF


def crc16_modbus(data: bytes) -> int:
    """CRC-16/Modbus: reflected poly 0xA001, init 0xFFFF; sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc

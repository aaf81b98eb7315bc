"""Plain-Python reference CRC32C (bitwise, one bit at a time) and TFRecord masking.

Slow and obviously correct: the numba kernels in gntkit.kernels.crc32c are compared
against it on random and edge-case inputs.
"""

POLY = 0x82F63B78  # Castagnoli, reflected


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of `data`, continuing from `crc`."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """TFRecord mask: rotate right by 15 bits, add 0xA282EAD8, modulo 2**32."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

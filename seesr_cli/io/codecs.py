"""The 16-bit PNG encoder: Pillow cannot write 16-bit colour PNG, so this uses zlib and struct.

No kept library fits better: pypng is pure Python (slow on large images), OpenCV and imageio's
backends cannot write iTXt chunks, and imagecodecs would be a large binary dependency for one codec.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np


def write_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    """One PNG chunk: length, type, data, CRC."""
    f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))


def write_png16(f: BinaryIO, a: np.ndarray, *, icc: bytes | None, text: dict[str, str],
                exif: bytes | None) -> None:
    """16-bit PNG (gray, gray+alpha, RGB, RGBA), which Pillow cannot write for colour."""
    h, w, c = a.shape
    f.write(b"\x89PNG\r\n\x1a\n")
    write_chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0))
    if icc:
        write_chunk(f, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        write_chunk(f, b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    for key, value in text.items():  # keyword, no compression, empty language and translated keyword
        write_chunk(f, b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))
    rows = a.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    squeeze = zlib.compressobj(6)
    previous = np.zeros(rows.shape[1], np.uint8)
    for start in range(0, h, 64):
        block = rows[start:start + 64]
        data = squeeze.compress(_png_filter(block, previous, c * 2).tobytes())
        previous = block[-1]
        if data:
            write_chunk(f, b"IDAT", data)
    write_chunk(f, b"IDAT", squeeze.flush())
    write_chunk(f, b"IEND", b"")


def _png_filter(rows: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    """Filter each row with the PNG filter of least sum of |signed residuals| (libpng's heuristic)."""
    x = rows.astype(np.int16)
    up = np.vstack([previous[None].astype(np.int16), x[:-1]])
    left, upleft = np.zeros_like(x), np.zeros_like(x)
    left[:, bpp:], upleft[:, bpp:] = x[:, :-bpp], up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = (np.stack([x, x - left, x - up, x - ((left + up) >> 1), x - paeth]) & 0xFF).astype(np.uint8)
    best = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=-1).argmin(axis=0)
    chosen = candidates[best, np.arange(len(x))]
    return np.hstack([best[:, None].astype(np.uint8), chosen])

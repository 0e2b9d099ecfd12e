"""16-bit PNG and TIFF encoders: Pillow cannot write 16-bit colour, so these use zlib and struct."""

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


def write_tiff16(f: BinaryIO, a: np.ndarray, *, icc: bytes | None, description: str, software: str) -> None:
    """16-bit little-endian TIFF, deflate with horizontal predictor, strips of about 1 MiB."""
    h, w, c = a.shape
    rows_per_strip = max(1, (1 << 20) // (w * c * 2))
    strips = []
    for start in range(0, h, rows_per_strip):
        block = a[start:start + rows_per_strip].astype("<u2")
        delta = block.copy()
        delta[:, 1:] -= block[:, :-1]  # predictor 2 works per sample, modulo 2**16
        strips.append(zlib.compress(delta.tobytes(), 6))
    offsets, cursor = [], 8
    for strip in strips:
        offsets.append(cursor)
        cursor += len(strip)
    padding = b"\x00" * (cursor % 2)  # the IFD must start on a word boundary
    cursor += len(padding)
    short, long_, ascii_, undefined = 3, 4, 2, 7
    tags = [(256, long_, [w]), (257, long_, [h]), (258, short, [16] * c), (259, short, [8]),
            (262, short, [2 if c >= 3 else 1]), (270, ascii_, description), (273, long_, offsets),
            (277, short, [c]), (278, long_, [rows_per_strip]), (279, long_, [len(s) for s in strips]),
            (284, short, [1]), (305, ascii_, software), (317, short, [2]), (339, short, [1] * c)]
    if c in (2, 4):
        tags.append((338, short, [2]))  # unassociated alpha
    if icc:
        tags.append((34675, undefined, icc))
    extra, entries, values_start = b"", b"", cursor  # values that do not fit a field, then the IFD
    for tag, kind, value in sorted(tags):
        if kind == ascii_:
            payload, count = value.encode("ascii", "replace") + b"\x00", len(value) + 1
        elif kind == undefined:
            payload, count = value, len(value)
        else:
            payload, count = struct.pack(f"<{len(value)}{'H' if kind == short else 'I'}", *value), len(value)
        if len(payload) <= 4:
            field = payload.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", values_start + len(extra))
            extra += payload + b"\x00" * (len(payload) % 2)
        entries += struct.pack("<HHI", tag, kind, count) + field
    ifd_start = values_start + len(extra)
    f.write(b"II*\x00" + struct.pack("<I", ifd_start))
    for strip in strips:
        f.write(strip)
    f.write(padding + extra)
    f.write(struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0))

"""Sample images for the io tests: 8-bit and 16-bit sources in every mode, written independently of seesr."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: mode name -> (channels, bits): L, LA, RGB, RGBA at 8 and 16 bits
MODES = {"L": (1, 8), "LA": (2, 8), "RGB": (3, 8), "RGBA": (4, 8),
         "L16": (1, 16), "LA16": (2, 16), "RGB16": (3, 16), "RGBA16": (4, 16)}


def rgb8(w: int = 40, h: int = 30, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a little noise, so lossy codecs stay close."""
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(0, 16, (h, w, 3))
    planes = np.stack([x * 200 / w, y * 200 / h, (x + y) * 100 / (w + h) + 60], -1) + noise
    return planes.astype(np.uint8)


def smooth(w: int, h: int, channels: int, bits: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a little noise (so lossy codecs stay close), alpha from 20% to 100%."""
    peak = (1 << bits) - 1
    y, x = np.mgrid[0:h, 0:w] / np.array([max(h - 1, 1), max(w - 1, 1)])[:, None, None]
    planes = [0.1 + 0.7 * x, 0.1 + 0.7 * y, 0.2 + 0.3 * (x + y), 0.2 + 0.8 * x * y][:channels]
    if channels == 2:
        planes = [planes[0], 0.2 + 0.8 * x * y]
    noise = np.random.default_rng(seed).uniform(-0.02, 0.02, (h, w, channels))
    values = np.clip(np.stack(planes, -1) + noise, 0, 1)
    return np.round(values * peak).astype(np.uint16 if bits == 16 else np.uint8)


def png16_bytes(values: np.ndarray) -> bytes:
    """An independent 16-bit PNG writer (filter 0 only) to make inputs Pillow cannot write."""
    h, w, c = values.shape
    rows = values.astype(">u2").view(np.uint8).reshape(h, -1)
    data = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


def write_source(path: Path, values: np.ndarray) -> Path:
    """A PNG of these H x W x C samples: Pillow for 8 bits, our independent writer for 16 bits."""
    if values.dtype == np.uint16:
        path.write_bytes(png16_bytes(values))
    else:
        Image.fromarray(values if values.shape[-1] > 1 else values[..., 0]).save(path)
    return path


def lanczos(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float [0, 1] plane resized as save_image resizes alpha: Lanczos in float, clipped."""
    big = Image.fromarray(plane.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(big), 0.0, 1.0)

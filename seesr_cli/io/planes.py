"""Decoded pixel planes, whichever library read them: samples normalised to uint8, uint16 or float [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seesr_cli.errors import InputImageError


@dataclass(frozen=True)
class Decoded:
    """One decoded image before orientation: what `read.load_image` assembles into a `LoadedImage`."""

    color: np.ndarray  # H x W x 1|3: uint8, uint16 or float32 in [0, 1]
    alpha: np.ndarray | None  # H x W, same dtype as color
    icc: bytes | None
    exif: bytes | None  # orientation already reset to 1
    orientation: int  # EXIF/TIFF orientation 1..8, applied by `orient`
    source_format: str  # Pillow's name: "PNG", "TIFF", ...
    frames: int
    notes: tuple[str, ...]


def check_size(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Our own decompression-bomb guard, before any pixel is decoded."""
    if max_pixels is not None and width * height > max_pixels:
        raise InputImageError(
            path, f"too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                  f"{max_pixels:,} (possible decompression bomb)")


def split_alpha(planes: np.ndarray, transparency=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate a trailing alpha channel (H x W x 2|4); turn a tRNS colour key into an alpha plane."""
    if planes.shape[-1] in (2, 4):
        return planes[..., :-1], planes[..., -1]
    if isinstance(transparency, (int, tuple)) and not isinstance(transparency, bool):
        key = np.array(transparency if isinstance(transparency, tuple) else (transparency,))
        if key.size == planes.shape[-1]:
            opaque = np.iinfo(planes.dtype).max
            return planes, np.where(np.all(planes == key, axis=-1), 0, opaque).astype(planes.dtype)
    return planes, None


def integer_samples(path: Path, values: np.ndarray, what: str) -> np.ndarray:
    """Signed or 32-bit integer samples as uint16 when they fit 0..65535 (read as 16-bit code values)."""
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputImageError(path, f"unsupported {what}: 32-bit or signed integer samples outside 0..65535")
    return values.astype(np.uint16)


def float_samples(path: Path, values: np.ndarray, notes: list[str]) -> np.ndarray:
    """Float samples: [0, 1] kept; larger values read as 8- or 16-bit code values; NaN/inf refused."""
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputImageError(path, "float image contains NaN or infinite values")
    peak = float(values.max()) if values.size else 0.0
    scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else 65535.0)
    if scale != 1.0:
        notes.append(f"float samples scaled by 1/{scale:g}")
    return np.clip(values / scale, 0.0, 1.0)


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (same result as PIL.ImageOps.exif_transpose) to an H x W [x C] array."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1),
           7: lambda x: np.rot90(x, 2).swapaxes(0, 1), 8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a

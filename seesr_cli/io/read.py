"""Reading inputs: every mode, bit depth, alpha, orientation and colour profile, and clear causes.

TIFF is read with tifffile (`tiff.py`), everything else with Pillow (`pillow_read.py`); both give
the same planes (`planes.Decoded`), assembled here into a `LoadedImage`. 16-bit sources keep their
full precision in `float_rgb()` beside the 8-bit RGB view, and their alpha as a 16-bit plane, so a
16-bit grayscale PNG with transparency comes out as a 16-bit grayscale PNG with transparency.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from seesr_cli.io import pillow_read, tiff
from seesr_cli.io.planes import Decoded, orient
from seesr_cli.io.source import check_file, decode_errors, is_tiff, open_input

__all__ = ["DEFAULT_MAX_PIXELS", "LoadedImage", "check_file", "load_image"]

DEFAULT_MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own default


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded input: the 8-bit RGB view, full-precision samples, and what `save_image` must restore."""

    path: Path
    rgb: Image.Image  # mode RGB, 8-bit, EXIF orientation applied
    alpha: Image.Image | None  # mode L, or I;16 for 16-bit sources
    grayscale: bool
    bit_depth: int  # 8 or 16
    icc_profile: bytes | None
    exif: bytes | None  # orientation reset to 1, since it has been applied to the pixels
    source_format: str  # Pillow's name: "PNG", "JPEG", "TIFF", ...
    rgb_float: np.ndarray | None = None  # H x W x 3 float32 in [0, 1], only for 16-bit/float sources
    frames: int = 1  # frames (pages) in the file; only the first is used
    notes: tuple[str, ...] = ()  # what was done to the source, for the CLI to show

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after orientation."""
        return self.rgb.size

    def float_rgb(self) -> np.ndarray:
        """H x W x 3 float32 in [0, 1] at the source's full precision (read-only for 16-bit sources)."""
        if self.rgb_float is not None:
            return self.rgb_float
        return np.asarray(self.rgb, dtype=np.float32) / 255.0

    def float_alpha(self) -> np.ndarray | None:
        """H x W float32 in [0, 1] at the source's full precision, or None without alpha."""
        if self.alpha is None:
            return None
        peak = 255.0 if self.alpha.mode == "L" else 65535.0
        return np.asarray(self.alpha, dtype=np.float32) / peak


def load_image(path: os.PathLike | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode `path` fully; raise `InputImageError` with a one-line cause if it cannot be used.

    Multi-frame files (GIF, APNG, MPO, multi-page TIFF) use their first frame and say so in `notes`.
    `max_pixels` (None: no limit of ours) guards against decompression bombs; the model's output is
    16x as many pixels. Pillow's own hard limit, 2 x `PIL.Image.MAX_IMAGE_PIXELS`, applies regardless.
    FIFOs, devices and sockets are refused without being read.
    """
    path = Path(path)
    with open_input(path) as f, decode_errors(path, "truncated or corrupt image data"):
        decoded = tiff.decode(path, f, max_pixels) if is_tiff(f) else None
        if decoded is None:
            f.seek(0)
            decoded = pillow_read.decode(path, f, max_pixels)
    return _assemble(path, decoded)


def _assemble(path: Path, d: Decoded) -> LoadedImage:
    """Orient the planes and build the 8-bit RGB view beside the full-precision data."""
    color = orient(d.color, d.orientation)
    alpha = None if d.alpha is None else orient(d.alpha, d.orientation)
    notes = d.notes + ((f"EXIF orientation {d.orientation} applied",) if d.orientation != 1 else ())
    grayscale = color.shape[-1] == 1
    rgb3 = np.repeat(color, 3, axis=-1) if grayscale else color
    bit_depth, rgb_float = 8, None
    if rgb3.dtype != np.uint8:
        bit_depth = 16
        rgb_float = rgb3.astype(np.float32) / (65535.0 if rgb3.dtype == np.uint16 else 1.0)
        rgb_float.flags.writeable = False
        rgb3 = np.round(rgb_float * 255.0).astype(np.uint8)
    if alpha is not None and alpha.dtype.kind == "f":
        alpha = np.round(np.clip(alpha, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return LoadedImage(path=path, rgb=Image.fromarray(rgb3), alpha=None if alpha is None else Image.fromarray(alpha),
                       grayscale=grayscale, bit_depth=bit_depth, icc_profile=d.icc, exif=d.exif,
                       source_format=d.source_format, rgb_float=rgb_float, frames=d.frames, notes=notes)

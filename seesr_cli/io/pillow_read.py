"""Decoding with Pillow: every format but the TIFFs that tifffile reads (see `tiff.py`).

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and gray+alpha PNG (and TIFF that only Pillow
decodes, e.g. LZW) are decoded from Pillow's own decoder in two passes: high bytes, then low bytes.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms

from seesr_cli.errors import InputImageError, one_line
from seesr_cli.io.planes import Decoded, check_size, float_samples, integer_samples, split_alpha
from seesr_cli.io.source import DAMAGED_DATA

_ORIENTATION = 0x0112


def decode(path: Path, f: BinaryIO, max_pixels: int | None) -> Decoded:
    """Everything that needs Pillow and the open file; errors here are the file's fault."""
    with warnings.catch_warnings():
        # Our own max_pixels check replaces Pillow's warning; its hard error (2x its limit) still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(f) as im:
            check_size(path, *im.size, max_pixels)
            frames = int(getattr(im, "n_frames", 1) or 1)
            notes = [f"multi-frame file: used the first of {frames} frames"] if frames > 1 else []
            icc = im.info.get("icc_profile") or None
            color, alpha = _decode_planes(path, f, im, notes)  # forces the full decode
            if im.mode in ("CMYK", "LAB"):
                color, icc = _to_srgb(im, icc, notes)
            return Decoded(color, alpha, icc, exif_upright(im.info.get("exif")), _orientation(im),
                           im.format or "unknown", frames, tuple(notes))


def _decode_planes(path: Path, f: BinaryIO, im: Image.Image, notes: list[str]):
    """Pixels as (color H x W x 1|3, alpha H x W | None): uint8, uint16 or float32 in [0, 1]."""
    rawmode = _tile_rawmode(im) or ""
    if rawmode == "LA;16B" or (rawmode.startswith(("RGB;16", "RGBA;16", "RGBX;16")) and rawmode[-1] in "BLN"):
        return _decode_colour16(f, im, rawmode, notes)
    im.load()
    mode = im.mode
    if mode in ("1", "L", "LA", "La"):
        planes = np.asarray(im.convert("LA" if mode == "La" else ("L" if mode == "1" else mode)))
        return split_alpha(planes if planes.ndim == 3 else planes[..., None], im.info.get("transparency"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or im.has_transparency_data
        return split_alpha(np.asarray(im.convert("RGBA" if has_alpha else "RGB")))
    if mode in ("RGB", "RGBA", "RGBX", "RGBa", "YCbCr", "HSV"):
        target = "RGBA" if mode in ("RGBA", "RGBa") else "RGB"
        return split_alpha(np.asarray(im.convert(target)), im.info.get("transparency"))
    if mode in ("CMYK", "LAB"):
        return np.empty((0, 0, 3), np.uint8), None  # colour-managed by _to_srgb
    if mode.startswith("I;16"):
        return split_alpha(np.asarray(im).astype(np.uint16)[..., None], im.info.get("transparency"))
    if mode == "I":
        values = integer_samples(path, np.asarray(im), "pixel mode 'I'")
        return split_alpha(values[..., None], im.info.get("transparency"))
    if mode == "F":
        return float_samples(path, np.asarray(im, dtype=np.float32), notes)[..., None], None
    raise InputImageError(path, f"unsupported pixel mode {mode!r}")


def _tile_rawmode(im: Image.Image) -> str | None:
    tile = getattr(im, "tile", None)
    if not tile:
        return None
    args = tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def _with_rawmode(im: Image.Image, rawmode: str) -> None:
    """Point every tile of a not-yet-loaded image at another unpacker (same bits per pixel)."""
    tiles = []
    for tile in im.tile:
        args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
        tiles.append(tile._replace(args=args))
    im.tile = tiles


def _decode_colour16(f: BinaryIO, im: Image.Image, rawmode: str, notes: list[str]):
    """Full 16-bit samples from Pillow's decoder, which otherwise keeps only the high byte.

    Decoding again with the opposite byte order's unpacker yields the low bytes. Gray+alpha
    (4 bytes a pixel) is read through the plain 8-bit RGBA unpacker: bytes G_hi G_lo A_hi A_lo.
    """
    if rawmode == "LA;16B":
        _with_rawmode(im, "RGBA")
        im.load()
        b = np.asarray(im).astype(np.uint16)
        return split_alpha(np.stack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]], -1))
    order = rawmode[-1] if rawmode[-1] != "N" else ("L" if sys.byteorder == "little" else "B")
    swapped = rawmode[:-1] + ("B" if order == "L" else "L")
    im.load()
    high = np.asarray(im).astype(np.uint16)
    try:
        f.seek(0)
        with Image.open(f) as second:
            _with_rawmode(second, swapped)
            second.load()
            low = np.asarray(second).astype(np.uint16)
    except DAMAGED_DATA as exc:  # the first decode worked, so keep 8 bits rather than fail
        notes.append(f"16-bit colour read at 8 bits ({one_line(exc)})")
        return split_alpha(np.asarray(im), im.info.get("transparency"))
    return split_alpha(high << 8 | low, im.info.get("transparency"))  # a tRNS key holds 16-bit values here


def _to_srgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    """CMYK and L*a*b* become sRGB, through the embedded profile where there is one."""
    srgb = ImageCms.createProfile("sRGB")
    source = ImageCms.createProfile("LAB") if im.mode == "LAB" else None
    try:
        if icc is not None and im.mode == "CMYK":  # a profile on L*a*b* data describes nothing useful
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source is not None:
            rgb = ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
            how = "its embedded" if icc and im.mode == "CMYK" else "a standard"
            notes.append(f"{im.mode} converted to sRGB with {how} profile")
            return np.asarray(rgb), ImageCms.ImageCmsProfile(srgb).tobytes()
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        notes.append(f"{im.mode} profile unusable ({one_line(exc)}); converted without it")
    notes.append(f"{im.mode} converted to RGB without colour management")
    return np.asarray(im.convert("RGB")), None


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION, 1))
    except (*DAMAGED_DATA, TypeError):  # a damaged EXIF block must not cost the image
        return 1
    return value if 1 <= value <= 8 else 1


def exif_upright(raw: bytes | None) -> bytes | None:
    """An EXIF block with its orientation reset to 1 (it is applied to the pixels); None if damaged."""
    if not raw:  # TIFF tags are not EXIF: only an explicit EXIF block is carried
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        exif[_ORIENTATION] = 1
        return exif.tobytes()
    except (*DAMAGED_DATA, TypeError):  # a damaged EXIF block is dropped, not the image
        return None

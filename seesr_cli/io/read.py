"""Reading inputs: every mode, bit depth, alpha, orientation and colour profile, and clear causes.

The model sees 8-bit RGB (`rgb`). Everything else about the source (alpha, grayscale, 16-bit
depth, ICC profile, EXIF) is kept beside it in `LoadedImage` and put back by `write.save_image`,
so a 16-bit grayscale PNG with transparency comes out as a 16-bit grayscale PNG with
transparency. Pillow cannot hold 16-bit colour, so 16-bit RGB(A) PNG/TIFF is decoded from
Pillow's own decoder in two passes (high bytes, then low bytes).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from seesr_cli.errors import InputImageError, one_line

DEFAULT_MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own default
_ORIENTATION = 0x0112
# What Pillow's decoders raise on damaged or truncated data (SyntaxError: "broken PNG file",
# "not a TIFF file"; KeyError/IndexError: missing tags, bad palettes). Anything else is a bug
# of ours or Pillow's and is not blamed on the file.
DAMAGED_DATA = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, KeyError, IndexError)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded input: what the model sees (`rgb`) plus what `save_image` must restore."""

    path: Path
    rgb: Image.Image  # mode RGB, 8-bit, EXIF orientation applied
    alpha: Image.Image | None  # mode L, or I;16 for 16-bit sources
    grayscale: bool
    bit_depth: int  # 8 or 16
    icc_profile: bytes | None
    exif: bytes | None  # orientation reset to 1, since it has been applied to the pixels
    source_format: str  # Pillow's name: "PNG", "JPEG", ...
    rgb_float: np.ndarray | None = None  # H x W x 3 float32 in [0, 1], only for 16-bit/float sources
    frames: int = 1  # frames in the file; only the first is used
    notes: tuple[str, ...] = ()  # what was done to the source, for the CLI to show

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after orientation."""
        return self.rgb.size

    def float_rgb(self) -> np.ndarray:
        """H x W x 3 float32 in [0, 1] at the source's full precision."""
        if self.rgb_float is not None:
            return self.rgb_float
        return np.asarray(self.rgb, dtype=np.float32) / 255.0


def load_image(path: os.PathLike | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode `path` fully; raise `InputImageError` with a one-line cause if it cannot be used.

    Multi-frame files (GIF, APNG, MPO, multi-page TIFF) use their first frame and say so in `notes`.
    `max_pixels` (None: no limit of ours) guards against decompression bombs; the model's output is
    16x as many pixels. Pillow's own hard limit, 2 x `PIL.Image.MAX_IMAGE_PIXELS`, applies regardless.
    """
    path = Path(path)
    check_file(path)
    with pillow_errors(path, "truncated or corrupt image data"), warnings.catch_warnings():
        # Our own max_pixels check replaces Pillow's warning; its hard error (2x its limit) still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            decoded = _decode(path, im, max_pixels)
    return _assemble(path, decoded)


@contextmanager
def pillow_errors(path: Path, what: str) -> Iterator[None]:
    """Turn whatever Pillow raises on a bad file into one `InputImageError` with a human cause."""
    try:
        yield
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        hard_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputImageError(path, f"too large: over Pillow's hard limit of {hard_limit:,} pixels "
                                    "(possible decompression bomb)") from exc
    except UnidentifiedImageError as exc:
        raise InputImageError(path, "not a recognised image format (or its header is damaged)") from exc
    except PermissionError as exc:
        raise InputImageError(path, "permission denied") from exc
    except MemoryError as exc:
        raise InputImageError(path, "not enough memory to decode it") from exc
    except DAMAGED_DATA as exc:
        raise InputImageError(path, f"{what} ({one_line(exc)})") from exc


def check_file(path: Path) -> None:
    """Filesystem causes first: they are clearer than whatever Pillow would say."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputImageError(path, "file not found") from None
    except PermissionError:
        raise InputImageError(path, "permission denied") from None
    except OSError as exc:
        raise InputImageError(path, f"cannot access file ({one_line(exc)})") from None
    if path.is_dir():
        raise InputImageError(path, "is a directory, not an image file")
    if st.st_size == 0:
        raise InputImageError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputImageError(path, "permission denied")


@dataclass(frozen=True)
class _Decoded:
    color: np.ndarray  # H x W x 1|3: uint8, uint16 or float32 in [0, 1]; not yet oriented
    alpha: np.ndarray | None
    icc: bytes | None
    exif: bytes | None
    orientation: int
    source_format: str
    frames: int
    notes: tuple[str, ...]


def _decode(path: Path, im: Image.Image, max_pixels: int | None) -> _Decoded:
    """Everything that needs Pillow and the open file; errors here are the file's fault."""
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise InputImageError(
            path, f"too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                  f"{max_pixels:,} (possible decompression bomb)")
    frames = int(getattr(im, "n_frames", 1) or 1)
    notes = [f"multi-frame file: used the first of {frames} frames"] if frames > 1 else []
    icc = im.info.get("icc_profile") or None
    color, alpha = _decode_planes(path, im, notes)  # forces the full decode
    if im.mode in ("CMYK", "LAB"):
        color, icc = _to_srgb(im, icc, notes)
    return _Decoded(color, alpha, icc, _exif_upright(im), _orientation(im), im.format or "unknown",
                    frames, tuple(notes))


def _decode_planes(path: Path, im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels as (color H x W x 1|3, alpha H x W | None): uint8, uint16 or float32 in [0, 1]."""
    rawmode = _tile_rawmode(im) or ""
    if rawmode == "LA;16B" or (rawmode.startswith(("RGB;16", "RGBA;16", "RGBX;16")) and rawmode[-1] in "BLN"):
        return _decode_colour16(path, im, rawmode, notes)
    im.load()
    mode = im.mode
    if mode in ("1", "L", "LA", "La"):
        planes = np.asarray(im.convert("LA" if mode == "La" else ("L" if mode == "1" else mode)))
        return _split(planes if planes.ndim == 3 else planes[..., None], im.info.get("transparency"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or im.has_transparency_data
        return _split(np.asarray(im.convert("RGBA" if has_alpha else "RGB")), None)
    if mode in ("RGB", "RGBA", "RGBX", "RGBa", "YCbCr", "HSV"):
        target = "RGBA" if mode in ("RGBA", "RGBa") else "RGB"
        return _split(np.asarray(im.convert(target)), im.info.get("transparency"))
    if mode in ("CMYK", "LAB"):
        return np.empty((0, 0, 3), np.uint8), None  # colour-managed by _to_srgb
    if mode.startswith("I;16"):
        return _split(np.asarray(im).astype(np.uint16)[..., None], im.info.get("transparency"))
    if mode == "I":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputImageError(path, "unsupported pixel mode 'I': 32-bit or signed integer samples "
                                        "outside 0..65535")
        return _split(values.astype(np.uint16)[..., None], im.info.get("transparency"))
    if mode == "F":
        return _float_gray(path, np.asarray(im, dtype=np.float32), notes)[..., None], None
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


def _decode_colour16(path: Path, im: Image.Image, rawmode: str, notes: list[str]):
    """Full 16-bit samples from Pillow's decoder, which otherwise keeps only the high byte.

    Decoding again with the opposite byte order's unpacker yields the low bytes. Gray+alpha
    (4 bytes a pixel) is read through the plain 8-bit RGBA unpacker: bytes G_hi G_lo A_hi A_lo.
    """
    if rawmode == "LA;16B":
        _with_rawmode(im, "RGBA")
        im.load()
        b = np.asarray(im).astype(np.uint16)
        return _split(np.stack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]], -1), None)
    order = rawmode[-1] if rawmode[-1] != "N" else ("L" if sys.byteorder == "little" else "B")
    swapped = rawmode[:-1] + ("B" if order == "L" else "L")
    im.load()
    high = np.asarray(im).astype(np.uint16)
    try:
        with Image.open(path) as second:
            _with_rawmode(second, swapped)
            second.load()
            low = np.asarray(second).astype(np.uint16)
    except DAMAGED_DATA as exc:  # the first decode worked, so keep 8 bits rather than fail
        notes.append(f"16-bit colour read at 8 bits ({one_line(exc)})")
        return _split(np.asarray(im), im.info.get("transparency"))
    return _split(high << 8 | low, im.info.get("transparency"))  # a tRNS key holds 16-bit values here


def _split(planes: np.ndarray, transparency) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate a trailing alpha channel; turn a tRNS colour key into an alpha plane."""
    if planes.shape[-1] in (2, 4):
        return planes[..., :-1], planes[..., -1]
    if isinstance(transparency, (int, tuple)) and not isinstance(transparency, bool):
        key = np.array(transparency if isinstance(transparency, tuple) else (transparency,))
        if key.size == planes.shape[-1]:
            opaque = np.iinfo(planes.dtype).max
            return planes, np.where(np.all(planes == key, axis=-1), 0, opaque).astype(planes.dtype)
    return planes, None


def _float_gray(path: Path, values: np.ndarray, notes: list[str]) -> np.ndarray:
    """Mode F: [0, 1] kept; larger values read as 8- or 16-bit code values."""
    if not np.isfinite(values).all():
        raise InputImageError(path, "float image contains NaN or infinite values")
    peak = float(values.max()) if values.size else 0.0
    scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else 65535.0)
    if scale != 1.0:
        notes.append(f"float samples scaled by 1/{scale:g}")
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32)


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


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (same result as PIL.ImageOps.exif_transpose) to an H x W [x C] array."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1),
           7: lambda x: np.rot90(x, 2).swapaxes(0, 1), 8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _assemble(path: Path, d: _Decoded) -> LoadedImage:
    """Orient the planes and build the model's 8-bit RGB view beside the full-precision data."""
    color = _orient(d.color, d.orientation)
    alpha = None if d.alpha is None else _orient(d.alpha, d.orientation)
    notes = d.notes + ((f"EXIF orientation {d.orientation} applied",) if d.orientation != 1 else ())
    grayscale = color.shape[-1] == 1
    rgb3 = np.repeat(color, 3, axis=-1) if grayscale else color
    bit_depth, rgb_float = 8, None
    if rgb3.dtype != np.uint8:
        bit_depth = 16
        rgb_float = rgb3.astype(np.float32) / (65535.0 if rgb3.dtype == np.uint16 else 1.0)
        rgb_float.flags.writeable = False
        rgb3 = np.round(rgb_float * 255.0).astype(np.uint8)
    return LoadedImage(path=path, rgb=Image.fromarray(rgb3), alpha=None if alpha is None else Image.fromarray(alpha),
                       grayscale=grayscale, bit_depth=bit_depth, icc_profile=d.icc, exif=d.exif,
                       source_format=d.source_format, rgb_float=rgb_float, frames=d.frames, notes=notes)


def _exif_upright(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")  # TIFF tags are not EXIF: only an explicit EXIF block is carried
    if not raw:
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        exif[_ORIENTATION] = 1
        return exif.tobytes()
    except (*DAMAGED_DATA, TypeError):  # a damaged EXIF block is dropped, not the image
        return None

"""Reading inputs and writing results: modes, bit depth, alpha, orientation, colour profiles, metadata.

The model sees 8-bit RGB. Everything else about the source (alpha, grayscale, 16-bit depth, ICC
profile, EXIF) is kept beside it in `LoadedImage` and put back by `save_image`, so a 16-bit
grayscale PNG with transparency comes out as a 16-bit grayscale PNG with transparency.
Pillow cannot hold 16-bit colour, so 16-bit RGB(A) PNG/TIFF is decoded from Pillow's own
decoder in two passes (high bytes, then low bytes); `imagefile` encodes 16-bit PNG/TIFF and
writes every file atomically.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from . import __version__
from .errors import InputImageError, OutputExistsError, OutputWriteError, UsageError
from .imagefile import atomic_write, one_line, write_png16, write_tiff16
from .imagefile import write_chunk as _chunk  # looked up at write time: tests patch `imageio._chunk`

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "OUTPUT_EXTENSIONS", "OUTPUT_FORMATS", "SOFTWARE",
           "LoadedImage", "OutputExistsError", "OutputWriteError", "load_image", "output_format_for", "read_metadata",
           "save_image"]

DEFAULT_MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own default
SOFTWARE = f"seesr-cli {__version__}"
OUTPUT_FORMATS = ("png", "jpg", "webp", "tiff")
_FORMAT_ALIASES = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "tif": "tiff", "tiff": "tiff"}
_SAME_AS_SOURCE = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "TIFF": "tiff"}
OUTPUT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
_CANDIDATE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff",
                         ".bmp", ".dib", ".gif", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".qoi",
                         ".avif", ".jp2", ".j2k", ".jpx", ".mpo")
#: Lower-case suffixes that folder discovery treats as images (only those this Pillow can read).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(_CANDIDATE_EXTENSIONS) & frozenset(Image.registered_extensions())

_ORIENTATION, _DESCRIPTION, _SOFTWARE_TAG = 0x0112, 0x010E, 0x0131
_EXIF_IFD, _USER_COMMENT, _PIXEL_X, _PIXEL_Y = 0x8769, 0x9286, 0xA002, 0xA003
_EXIF_ASCII = b"ASCII\x00\x00\x00"  # UserComment character-code prefix (EXIF 2.3, 4.6.5)


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


# ----------------------------------------------------------------------------- loading


def load_image(path: os.PathLike | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode `path` fully; raise `InputImageError` with a one-line cause if it cannot be used.

    Multi-frame files (GIF, APNG, MPO, multi-page TIFF) use their first frame and say so in `notes`.
    `max_pixels` (None: no limit of ours) guards against decompression bombs; the model's output is
    16x as many pixels. Pillow's own hard limit, 2 x `PIL.Image.MAX_IMAGE_PIXELS`, applies regardless.
    """
    path = Path(path)
    _check_file(path)
    with _pillow_errors(path, "truncated or corrupt image data"), warnings.catch_warnings():
        # Our own max_pixels check replaces Pillow's warning; its hard error (2x its limit) still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            decoded = _decode(path, im, max_pixels)
    return _assemble(path, decoded)


@contextmanager
def _pillow_errors(path: Path, what: str) -> Iterator[None]:
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
    except Exception as exc:  # Pillow plugins raise many types on damaged data; one bad file must not stop a batch
        raise InputImageError(path, f"{what} ({one_line(exc)})") from exc


def _check_file(path: Path) -> None:
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
    except Exception as exc:  # the first decode worked, so keep 8 bits rather than fail
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
    except Exception:  # a damaged EXIF block must not cost the image
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
    except Exception:
        return None


# ----------------------------------------------------------------------------- formats


def output_format_for(path_or_fmt: os.PathLike | str, source_format: str | None = None) -> str:
    """Canonical output format ("png", "jpg", "webp", "tiff") from a format name, "same" or a path.

    "same" keeps the source's format where we can write it; other sources (GIF, BMP, ...) give PNG.
    """
    text = os.fspath(path_or_fmt)
    key = text.lower().lstrip(".")
    if key == "same":
        return _SAME_AS_SOURCE.get((source_format or "").upper(), "png")
    fmt = _FORMAT_ALIASES.get(key) or _FORMAT_ALIASES.get(Path(text).suffix.lower().lstrip("."))
    if fmt is None:
        raise UsageError(f"cannot write images as {text!r}: choose png, jpg, webp, tiff or same")
    return fmt


def read_metadata(path: os.PathLike | str) -> dict[str, str]:
    """The metadata `save_image` stored (PNG text chunks, or the JSON in EXIF/TIFF ImageDescription)."""
    path = Path(path)
    _check_file(path)
    with _pillow_errors(path, "cannot read metadata"), Image.open(path) as im:
        if im.format == "PNG":
            im.load()  # text chunks after IDAT are only seen once the image is read
            return {str(k): str(v) for k, v in im.text.items()}
        exif = im.getexif()
        found: dict[str, str] = {}
        for raw in (exif.get(_DESCRIPTION), exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)):
            found = _parse_json_object(raw)
            if found:
                break
        if _SOFTWARE_TAG in exif:
            found.setdefault("Software", str(exif[_SOFTWARE_TAG]).rstrip("\x00"))
        return found


def _parse_json_object(raw) -> dict[str, str]:
    if isinstance(raw, bytes):
        raw = raw[len(_EXIF_ASCII):] if raw.startswith(_EXIF_ASCII) else raw
        raw = raw.decode("utf-8", "replace")
    try:
        value = json.loads(str(raw).rstrip("\x00")) if raw else None
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


# ----------------------------------------------------------------------------- saving


def save_image(result: Image.Image | np.ndarray, loaded: LoadedImage, path: os.PathLike | str, *,
               fmt: str | None = None, quality: int = 95, metadata: Mapping[str, str] | None = None,
               overwrite: bool = False) -> Path:
    """Write the model's RGB `result` with what `loaded` had: alpha, grayscale, bit depth, ICC, EXIF.

    `fmt` is a format name or "same" (default: from the suffix of `path`).
    `result` is a PIL image or an H x W x 3 array (uint8, or float in [0, 1] for full 16-bit
    precision). Alpha is upscaled with Lanczos to the result's size. 16-bit sources give 16-bit
    PNG/TIFF; JPEG and WebP are 8-bit. JPEG has no alpha: transparent areas are flattened onto
    white. WebP at quality 100 is lossless. `metadata` goes into PNG iTXt chunks, or as JSON into
    EXIF ImageDescription and UserComment (JPEG, WebP) or the TIFF ImageDescription. The file
    appears atomically or not at all.
    """
    path = Path(path)
    fmt = output_format_for(fmt if fmt is not None else path, loaded.source_format)
    if not 1 <= int(quality) <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    depth = 16 if loaded.bit_depth == 16 and fmt in ("png", "tiff") else 8
    pixels = _compose(result, loaded, depth, flatten=fmt == "jpg")
    text = _metadata_items(metadata or {})
    atomic_write(path, _encoder(fmt, pixels, loaded, text, int(quality)), overwrite)
    return path


def _compose(result, loaded: LoadedImage, depth: int, *, flatten: bool) -> np.ndarray:
    """H x W x (1|2|3|4) uint8/uint16: the result in the source's channel layout and depth."""
    if isinstance(result, Image.Image):
        color = np.asarray(result.convert("RGB"))
    else:
        color = np.asarray(result)
        if color.ndim != 3 or color.shape[-1] != 3:
            raise ValueError(f"result must be H x W x 3, got shape {color.shape}")
    peak = 65535.0 if depth == 16 else 255.0
    need_float = depth == 16 or color.dtype != np.uint8 or (flatten and loaded.alpha is not None)
    if need_float:
        color = color.astype(np.float32) / 255.0 if color.dtype == np.uint8 else np.clip(color, 0, 1)
        if loaded.grayscale:  # ITU-R 601-2 luma, the weights of Pillow's convert("L")
            color = (color @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif loaded.grayscale:
        color = np.asarray(Image.fromarray(color).convert("L"))[..., None]
    alpha = _resized_alpha(loaded.alpha, (color.shape[1], color.shape[0]))
    if alpha is not None and flatten:
        color = color * alpha[..., None] + (1.0 - alpha[..., None])  # onto white
        alpha = None
    if need_float:
        color = np.round(color * peak)
    planes = [color] if alpha is None else [color, np.round(alpha * peak)[..., None]]
    return np.concatenate(planes, axis=-1).astype(np.uint16 if depth == 16 else np.uint8)


def _resized_alpha(alpha: Image.Image | None, size: tuple[int, int]) -> np.ndarray | None:
    """Alpha as float32 [0, 1] at `size`; Lanczos in float so 16-bit alpha keeps its precision."""
    if alpha is None:
        return None
    peak = 65535.0 if alpha.mode.startswith("I") else 255.0
    plane = Image.fromarray(np.asarray(alpha, dtype=np.float32) / peak)  # mode F
    if plane.size != size:
        plane = plane.resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)


def _metadata_items(metadata: Mapping[str, str]) -> dict[str, str]:
    items = {"Software": SOFTWARE}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values must be str, got {key!r}: {type(value).__name__}")
        if not 1 <= len(key) <= 79 or key != key.strip() or not key.isprintable() or not key.isascii():
            raise ValueError(f"metadata key {key!r} must be 1-79 printable ASCII characters (a PNG keyword)")
        items[key] = value
    return items


def _describe(text: dict[str, str]) -> str:
    """Our metadata as ASCII JSON (EXIF ASCII fields cannot hold UTF-8)."""
    return json.dumps({k: v for k, v in text.items() if k != "Software"}, ensure_ascii=True)


def _exif_for_output(loaded: LoadedImage, size: tuple[int, int], text: dict[str, str]) -> bytes:
    """The source's EXIF (upright) with our metadata as JSON and the new pixel dimensions."""
    exif = Image.Exif()
    if loaded.exif:
        exif.load(loaded.exif)
    described = _describe(text)
    exif[_ORIENTATION], exif[_DESCRIPTION], exif[_SOFTWARE_TAG] = 1, described, text["Software"]
    sub = exif.get_ifd(_EXIF_IFD)
    sub[_USER_COMMENT] = _EXIF_ASCII + described.encode("ascii")
    sub[_PIXEL_X], sub[_PIXEL_Y] = size
    exif[_EXIF_IFD] = sub
    return exif.tobytes()


def _encoder(fmt: str, pixels: np.ndarray, loaded: LoadedImage, text: dict[str, str],
             quality: int) -> Callable[[BinaryIO], None]:
    """A function that encodes `pixels` into an open binary file."""
    size, icc, described = (pixels.shape[1], pixels.shape[0]), loaded.icc_profile, _describe(text)
    if pixels.dtype == np.uint16:
        if fmt == "png":
            exif = _exif_for_output(loaded, size, text) if loaded.exif else None
            return lambda f: write_png16(f, pixels, icc=icc, text=text, exif=exif, chunk=_chunk)
        return lambda f: write_tiff16(f, pixels, icc=icc, description=described, software=text["Software"])
    image = Image.fromarray(pixels if pixels.shape[-1] > 1 else pixels[..., 0])  # L, LA, RGB or RGBA
    options: dict = {"icc_profile": icc} if icc else {}
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        options.update(pnginfo=info, compress_level=6)
        if loaded.exif:
            options["exif"] = _exif_for_output(loaded, size, text)
        return lambda f: image.save(f, "PNG", **options)
    if fmt == "tiff":
        options.update(compression="tiff_deflate", description=described, software=text["Software"])
        return lambda f: image.save(f, "TIFF", **options)
    options["exif"] = _exif_for_output(loaded, size, text)
    if fmt == "jpg":  # 4:4:4 chroma at high quality: super-resolved detail is the point
        if len(options["exif"]) > 65533:  # one APP1 segment
            raise UsageError(f"metadata too large for JPEG EXIF ({len(options['exif']):,} bytes): use png or tiff")
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
        return lambda f: image.save(f, "JPEG", **options)
    if image.mode in ("L", "LA"):  # WebP stores colour only
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    options.update(quality=quality, lossless=quality >= 100, exact=quality >= 100, method=4)
    return lambda f: image.save(f, "WEBP", **options)

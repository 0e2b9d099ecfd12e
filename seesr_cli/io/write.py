"""Writing results: the model's RGB output in the source's layout, depth, profile and metadata."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from seesr_cli.errors import UsageError
from seesr_cli.io import tiff
from seesr_cli.io.atomic import atomic_write
from seesr_cli.io.codecs import write_png16
from seesr_cli.io.formats import output_format_for
from seesr_cli.io.metadata import describe, exif_for_output, metadata_items
from seesr_cli.io.read import LoadedImage


def save_image(result: Image.Image | np.ndarray, loaded: LoadedImage, path: os.PathLike | str, *,
               fmt: str | None = None, quality: int = 95, metadata: Mapping[str, str] | None = None,
               overwrite: bool = False) -> Path:
    """Write the model's RGB `result` with what `loaded` had: alpha, grayscale, bit depth, ICC, EXIF.

    `fmt` is a format name or "same" (default: from the suffix of `path`).
    `result` is a PIL image or an H x W x 3 array (uint8, or float in [0, 1] for full 16-bit
    precision): a float result is quantised once, to the output's depth, after grayscale conversion
    (ITU-R 601 luma, in float) and flattening. Alpha is upscaled in float with Lanczos to the result's
    size. 16-bit sources give 16-bit PNG/TIFF; JPEG and WebP are 8-bit. JPEG has no alpha:
    transparent areas are flattened onto white. WebP at quality 100 is lossless. `metadata` goes
    into PNG iTXt chunks, or as JSON into EXIF ImageDescription and UserComment (JPEG, WebP) or the
    TIFF ImageDescription. The file appears atomically or not at all.
    """
    path = Path(path)
    fmt = output_format_for(fmt if fmt is not None else path, loaded.source_format)
    if not 1 <= int(quality) <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")
    depth = 16 if loaded.bit_depth == 16 and fmt in ("png", "tiff") else 8
    pixels = _compose(result, loaded, depth, flatten=fmt == "jpg")
    text = metadata_items(metadata or {})
    atomic_write(path, _encoder(fmt, pixels, loaded, text, int(quality)), overwrite=overwrite)
    return path


def _compose(result, loaded: LoadedImage, depth: int, *, flatten: bool) -> np.ndarray:
    """H x W x (1|2|3|4) uint8/uint16: the result in the source's channel layout and depth."""
    if isinstance(result, Image.Image):
        color = np.asarray(result.convert("RGB"))
    else:
        color = np.asarray(result)
        if color.ndim != 3 or color.shape[-1] != 3:
            raise ValueError(f"result must be H x W x 3, got shape {color.shape}")
        if color.dtype != np.uint8 and color.dtype.kind != "f":
            raise ValueError(f"result must be uint8 or float in [0, 1], got {color.dtype}")
        if color.dtype.kind == "f" and not np.isfinite(color).all():
            raise ValueError("result contains NaN or infinite values")
    peak = 65535.0 if depth == 16 else 255.0
    need_float = depth == 16 or color.dtype != np.uint8 or (flatten and loaded.alpha is not None)
    if need_float:
        color = color.astype(np.float32) / 255.0 if color.dtype == np.uint8 else np.clip(color, 0, 1)
        if loaded.grayscale:  # ITU-R 601-2 luma, the weights of Pillow's convert("L")
            color = (color @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif loaded.grayscale:
        color = np.asarray(Image.fromarray(color).convert("L"))[..., None]
    alpha = _resized_alpha(loaded, (color.shape[1], color.shape[0]))
    if alpha is not None and flatten:
        color = color * alpha[..., None] + (1.0 - alpha[..., None])  # onto white
        alpha = None
    if need_float:
        color = np.round(color * peak)
    planes = [color] if alpha is None else [color, np.round(alpha * peak)[..., None]]
    return np.concatenate(planes, axis=-1).astype(np.uint16 if depth == 16 else np.uint8)


def _resized_alpha(loaded: LoadedImage, size: tuple[int, int]) -> np.ndarray | None:
    """Alpha as float32 [0, 1] at `size`; Lanczos in float so 16-bit alpha keeps its precision."""
    alpha = loaded.float_alpha()
    if alpha is None:
        return None
    plane = Image.fromarray(alpha)  # mode F
    if plane.size != size:
        plane = plane.resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)


def _encoder(fmt: str, pixels: np.ndarray, loaded: LoadedImage, text: dict[str, str],
             quality: int) -> Callable[[BinaryIO], None]:
    """A function that encodes `pixels` into an open binary file."""
    size, icc, described = (pixels.shape[1], pixels.shape[0]), loaded.icc_profile, describe(text)
    if fmt == "tiff":
        return lambda f: tiff.write(f, pixels, icc=icc, description=described, software=text["Software"])
    if pixels.dtype == np.uint16:  # Pillow cannot write 16-bit colour PNG
        exif = exif_for_output(loaded, size, text) if loaded.exif else None
        return lambda f: write_png16(f, pixels, icc=icc, text=text, exif=exif)
    image = Image.fromarray(pixels if pixels.shape[-1] > 1 else pixels[..., 0])  # L, LA, RGB or RGBA
    options: dict = {"icc_profile": icc} if icc else {}
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        options.update(pnginfo=info, compress_level=6)
        if loaded.exif:
            options["exif"] = exif_for_output(loaded, size, text)
        return lambda f: image.save(f, "PNG", **options)
    options["exif"] = exif_for_output(loaded, size, text)
    if fmt == "jpg":  # 4:4:4 chroma at high quality: super-resolved detail is the point
        if len(options["exif"]) > 65533:  # one APP1 segment
            raise UsageError(f"metadata too large for JPEG EXIF ({len(options['exif']):,} bytes): use png or tiff")
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
        return lambda f: image.save(f, "JPEG", **options)
    if image.mode in ("L", "LA"):  # WebP stores colour only
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    options.update(quality=quality, lossless=quality >= 100, exact=quality >= 100, method=4)
    return lambda f: image.save(f, "WEBP", **options)

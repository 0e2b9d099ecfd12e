"""TIFF through tifffile: read (gray, gray+alpha, RGB, RGBA at 1/8/16-bit, integer or float), write, tags.

tifffile decodes uncompressed, deflate, packbits, LZMA and zstd strips and tiles by itself; TIFFs it
cannot decode without extra codecs (LZW, JPEG), and palette, CMYK, YCbCr or L*a*b* TIFFs, are left to
Pillow (`decode` returns None). tifffile's log warnings on odd files become notes instead of stderr.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile
from tifffile import EXTRASAMPLE, PHOTOMETRIC, SAMPLEFORMAT, TIFF

from seesr_cli.errors import InputImageError
from seesr_cli.io.planes import Decoded, check_size, float_samples, integer_samples

_PHOTOMETRICS = (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.RGB)
_ALPHA = (EXTRASAMPLE.ASSOCALPHA, EXTRASAMPLE.UNASSALPHA)
_ORIENTATION, _FILLORDER = 274, 266


def decode(path: Path, f: BinaryIO, max_pixels: int | None) -> Decoded | None:
    """The first page of a TIFF as planes, or None when Pillow should read it (see the module doc)."""
    notes: list[str] = []
    with _log_as_notes(notes), tifffile.TiffFile(f, name=path.name) as tif:
        page = _first_page(path, tif, notes)
        if not _decodable(page):
            return None
        check_size(path, page.imagewidth, page.imagelength, max_pixels)
        pages = len(tif.pages)
        if pages > 1:
            notes.append(f"multi-page TIFF: used the first of {pages} pages")
        values = page.asarray(squeeze=False)  # (separate samples, depth, height, width, contiguous samples)
        values = np.moveaxis(values[:, 0], 0, 2).reshape(page.imagelength, page.imagewidth, -1)
        color, alpha = _planes(path, page, values, notes)
        orientation = int(page.tags.valueof(_ORIENTATION, 1) or 1)
        return Decoded(color, alpha, page.iccprofile or None, None, orientation if 1 <= orientation <= 8 else 1,
                       "TIFF", pages, tuple(notes))


def _first_page(path: Path, tif: tifffile.TiffFile, notes: list[str]):
    if not len(tif.pages):  # tifffile has logged why (e.g. a bad first offset): give that as the cause
        why = next((": " + n.removeprefix("TIFF: ") for n in notes if "contains no pages" not in n), "")
        raise InputImageError(path, f"truncated or corrupt image data (no readable page{why})")
    return tif.pages[0]


def _decodable(page) -> bool:
    bits = page.bitspersample
    return (page.photometric in _PHOTOMETRICS and page.compression in TIFF.DECOMPRESSORS
            and page.predictor in TIFF.UNPREDICTORS and page.tags.valueof(_FILLORDER, 1) == 1
            and page.imagedepth == 1 and page.dtype is not None
            and (bits in (8, 16, 32, 64) or (bits == 1 and page.sampleformat == SAMPLEFORMAT.UINT))
            and page.samplesperpixel - len(page.extrasamples) == (3 if page.photometric == PHOTOMETRIC.RGB else 1))


def _planes(path: Path, page, values: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(color H x W x 1|3, alpha H x W | None) as uint8, uint16 or float32 in [0, 1]."""
    channels = 3 if page.photometric == PHOTOMETRIC.RGB else 1
    extras = tuple(page.extrasamples)
    keep = channels + 1 if extras and extras[0] in _ALPHA else channels  # other extra samples are dropped
    values = values[..., :keep]
    if values.dtype == np.bool_:
        values = values.astype(np.uint8) * 255
    elif values.dtype.kind == "f":
        values = float_samples(path, values, notes)
    elif values.dtype not in (np.uint8, np.uint16):
        values = integer_samples(path, values, f"pixel mode ({values.dtype.name} samples)")
    color, alpha = values[..., :channels], (values[..., channels] if keep > channels else None)
    if page.photometric == PHOTOMETRIC.MINISWHITE:
        color = (1.0 - color) if color.dtype.kind == "f" else np.iinfo(color.dtype).max - color
    if alpha is not None and extras[0] == EXTRASAMPLE.ASSOCALPHA:
        color = _unpremultiply(color, alpha)
    return color, alpha


def _unpremultiply(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Associated (premultiplied) alpha to straight alpha, in the samples' own type."""
    peak = 1.0 if color.dtype.kind == "f" else float(np.iinfo(color.dtype).max)
    a = alpha.astype(np.float64)[..., None]
    straight = np.where(a > 0, color * (peak / np.maximum(a, 1e-12)), 0.0)
    straight = np.clip(straight, 0.0, peak)
    return straight.astype(np.float32) if color.dtype.kind == "f" else np.round(straight).astype(color.dtype)


def write(f: BinaryIO, pixels: np.ndarray, *, icc: bytes | None, description: str, software: str) -> None:
    """H x W x (1|2|3|4) uint8 or uint16 as one deflate TIFF page with a horizontal predictor.

    Unassociated alpha; ICC profile; `description` (our JSON) in ImageDescription; no tifffile
    metadata of its own and no date, so the same pixels always give the same bytes.
    """
    channels = pixels.shape[-1]
    named = tifffile.FileHandle(f, "wb", name="output.tif", size=0)  # os.fdopen files are named by number
    tifffile.imwrite(named, pixels if channels > 1 else pixels[..., 0],
                     photometric="rgb" if channels >= 3 else "minisblack", planarconfig="contig",
                     extrasamples=("unassalpha",) if channels in (2, 4) else None,
                     compression="adobe_deflate", compressionargs={"level": 6}, predictor=True,
                     description=description, software=software, iccprofile=icc, metadata=None)


def read_tags(path: Path, f: BinaryIO) -> tuple[str | None, str | None]:
    """The first page's ImageDescription and Software."""
    notes: list[str] = []
    with _log_as_notes(notes), tifffile.TiffFile(f, name=path.name) as tif:
        page = _first_page(path, tif, notes)
        return page.description or None, page.software or None


@contextmanager
def _log_as_notes(notes: list[str]) -> Iterator[None]:
    """tifffile logs what it finds odd; library code does not print, so this thread's records become notes."""
    logger, thread = logging.getLogger("tifffile"), threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread and record.levelno >= logging.WARNING:
                text = re.sub(r"^<[^>]*>\s*", "", " ".join(record.getMessage().split()))  # "<tifffile.X 'a'> "
                notes.append(f"TIFF: {text[:157] + '...' if len(text) > 160 else text}")

    handler = Collect()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)

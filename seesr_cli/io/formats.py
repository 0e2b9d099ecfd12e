"""Image formats: what discovery reads (by extension) and what results can be written as."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from seesr_cli.errors import UsageError

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

"""Our metadata in results: PNG iTXt chunks, or JSON in EXIF (JPEG, WebP) and the TIFF description."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from seesr_cli import __version__
from seesr_cli.io import tiff
from seesr_cli.io.read import LoadedImage
from seesr_cli.io.source import decode_errors, is_tiff, open_input

SOFTWARE = f"seesr-cli {__version__}"
_ORIENTATION, _DESCRIPTION, _SOFTWARE_TAG = 0x0112, 0x010E, 0x0131
_EXIF_IFD, _USER_COMMENT, _PIXEL_X, _PIXEL_Y = 0x8769, 0x9286, 0xA002, 0xA003
_EXIF_ASCII = b"ASCII\x00\x00\x00"  # UserComment character-code prefix (EXIF 2.3, 4.6.5)


def read_metadata(path: os.PathLike | str) -> dict[str, str]:
    """The metadata `save_image` stored (PNG text chunks, or the JSON in EXIF/TIFF ImageDescription)."""
    path = Path(path)
    with open_input(path) as f, decode_errors(path, "cannot read metadata"):
        if is_tiff(f):
            description, software = tiff.read_tags(path, f)
            found = _parse_json_object(description)
            if software:
                found.setdefault("Software", software.rstrip("\x00"))
            return found
        with Image.open(f) as im:
            return _pillow_metadata(im)


def _pillow_metadata(im: Image.Image) -> dict[str, str]:
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
        raw = raw.removeprefix(_EXIF_ASCII)
        raw = raw.decode("utf-8", "replace")
    try:
        value = json.loads(str(raw).rstrip("\x00")) if raw else None
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def metadata_items(metadata: Mapping[str, str]) -> dict[str, str]:
    items = {"Software": SOFTWARE}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values must be str, got {key!r}: {type(value).__name__}")
        if not 1 <= len(key) <= 79 or key != key.strip() or not key.isprintable() or not key.isascii():
            raise ValueError(f"metadata key {key!r} must be 1-79 printable ASCII characters (a PNG keyword)")
        items[key] = value
    return items


def describe(text: dict[str, str]) -> str:
    """Our metadata as ASCII JSON (EXIF ASCII fields cannot hold UTF-8)."""
    return json.dumps({k: v for k, v in text.items() if k != "Software"}, ensure_ascii=True)


def exif_for_output(loaded: LoadedImage, size: tuple[int, int], text: dict[str, str]) -> bytes:
    """The source's EXIF (upright) with our metadata as JSON and the new pixel dimensions."""
    exif = Image.Exif()
    if loaded.exif:
        exif.load(loaded.exif)
    described = describe(text)
    exif[_ORIENTATION], exif[_DESCRIPTION], exif[_SOFTWARE_TAG] = 1, described, text["Software"]
    sub = exif.get_ifd(_EXIF_IFD)
    sub[_USER_COMMENT] = _EXIF_ASCII + described.encode("ascii")
    sub[_PIXEL_X], sub[_PIXEL_Y] = size
    exif[_EXIF_IFD] = sub
    return exif.tobytes()

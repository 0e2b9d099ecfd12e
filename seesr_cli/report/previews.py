"""Preview JPEGs in OUT/.seesr-report/previews/, made once per output version and reused.

Per output (key: hash of its path below OUT, mtime and size, so a rewritten output gets new ones):
    KEY-after-s.jpg    the result, longest side at most THUMB px (the grid)
    KEY-before-s.jpg   the input upscaled with bicubic to the same thumbnail size
    KEY-before.jpg     the input upscaled with PIL BICUBIC to the output's size (the 1:1 zoom)
    KEY-after.jpg      the result at full size, only when a browser cannot show the output itself (TIFF)
The "before" pair needs the input; without it the card shows the result alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import _io, store
from .entries import Entry

THUMB = 480  # longest side of a grid thumbnail: sharp on a 2x screen at the card's ~240-340 CSS px
THUMB_QUALITY, FULL_QUALITY = 82, 88
BROWSER_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})  # shown as they are (16-bit PNG included)
_KINDS = ("after-s", "before-s", "before", "after")
PRUNE_GRACE_SECONDS = 600.0  # see prune()


@dataclass(frozen=True)
class Previews:
    """Files to show for one entry (None: not available); `problem` says why one could not be made."""

    after_thumb: Path | None
    before_thumb: Path | None
    after_full: Path | None
    before_full: Path | None
    problem: str = ""


def preview_key(entry: Entry) -> str:
    return hashlib.sha1(f"{entry.rel}\0{entry.mtime_ns}\0{entry.bytes}".encode()).hexdigest()[:20]


def folder(out_dir: os.PathLike | str) -> Path:
    return store.hidden_dir(out_dir) / store.PREVIEWS


def paths(out_dir: os.PathLike | str, entry: Entry) -> dict[str, Path]:
    key, base = preview_key(entry), folder(out_dir)
    return {kind: base / f"{key}-{kind}.jpg" for kind in _KINDS}


def needs_after_full(entry: Entry) -> bool:
    return entry.fmt.upper() not in BROWSER_FORMATS


def ensure(out_dir: os.PathLike | str, entry: Entry, input_path: Path | None = None) -> Previews:
    """Make whatever previews of `entry` are missing and possible; return what exists.

    `input_path` overrides the entry's own (results of older versions do not record it).
    """
    files = paths(out_dir, entry)
    source = input_path or entry.input
    problem = ""
    try:
        _make_after(entry, files)
    except Exception as exc:  # noqa: BLE001 - a preview must never cost the report
        problem = f"no preview of the result ({_one_line(exc)})"
    if source is not None and source.is_file() and entry.size:
        try:
            _make_before(source, entry.size, files)
        except Exception as exc:  # noqa: BLE001
            problem = problem or f"no bicubic preview of the input ({_one_line(exc)})"
    return _existing(entry, files, problem)


def _existing(entry: Entry, files: dict[str, Path], problem: str) -> Previews:
    def have(kind: str) -> Path | None:
        return files[kind] if _made(files[kind]) else None

    after_full = have("after") if needs_after_full(entry) else entry.output
    return Previews(have("after-s"), have("before-s"), after_full, have("before"), problem)


def _make_after(entry: Entry, files: dict[str, Path]) -> None:
    wanted = [k for k in ("after-s", "after") if not _made(files[k])]
    if not needs_after_full(entry) and "after" in wanted:
        wanted.remove("after")
    if not wanted or entry.output is None:
        return
    loaded = _io.load_image(entry.output, max_pixels=None)
    image = _flatten(loaded.rgb, loaded.alpha)
    if "after" in wanted:
        _save_jpeg(image, files["after"], FULL_QUALITY)
    if "after-s" in wanted:
        _save_jpeg(image.resize(thumb_size(image.size), Image.Resampling.BICUBIC), files["after-s"], THUMB_QUALITY)


def _make_before(source: Path, size: tuple[int, int], files: dict[str, Path]) -> None:
    if _made(files["before"]) and _made(files["before-s"]):
        return
    rgb = _io.load_image(source, max_pixels=None).rgb
    if not _made(files["before"]):
        _save_jpeg(rgb.resize(size, Image.Resampling.BICUBIC), files["before"], FULL_QUALITY)
    if not _made(files["before-s"]):
        _save_jpeg(rgb.resize(thumb_size(size), Image.Resampling.BICUBIC), files["before-s"], THUMB_QUALITY)


def thumb_size(size: tuple[int, int], limit: int = THUMB) -> tuple[int, int]:
    """`size` scaled so its longest side is at most `limit` (never enlarged)."""
    w, h = size
    scale = min(1.0, limit / max(w, h, 1))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _flatten(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """JPEG has no alpha: transparent areas onto white, as `save_image` flattens JPEG results."""
    if alpha is None:
        return rgb
    if alpha.mode != "L":  # 16-bit alpha: its high byte is plenty for a preview
        alpha = Image.fromarray((np.asarray(alpha).astype(np.uint32) >> 8).astype(np.uint8))
    white = Image.new("RGB", rgb.size, (255, 255, 255))
    return Image.composite(rgb, white, alpha)


def _save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True)
    store.atomic_write_bytes(path, buffer.getvalue(), durable=False)


def _made(path: Path) -> bool:
    """A preview exists and is not empty (a crash right after a rename without fsync can leave it so)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def prune(out_dir: os.PathLike | str, keep: set[str], grace: float | None = None) -> int:
    """Delete previews whose key is not in `keep` (outputs rewritten or gone) and stale temp files.

    Only files older than `grace` seconds go: another process may have just made previews of an
    output this scan did not see yet, for the report it is about to write.
    """
    base, removed, now = folder(out_dir), 0, time.time()
    grace = PRUNE_GRACE_SECONDS if grace is None else grace
    if not base.is_dir():
        return 0
    for path in base.iterdir():
        name = path.name
        if now - _mtime(path) <= grace:
            continue
        unused = name.endswith(".jpg") and not name.startswith(".") and name.split("-", 1)[0] not in keep
        if unused or (name.startswith(".") and ".tmp-" in name):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"

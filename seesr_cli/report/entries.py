"""What the report shows: one `Entry` per result seesr wrote into OUT, plus the recorded failures.

A result is any image below OUT whose metadata has `seesr:seed`. Files from older versions carry
only seed, base seed, source, prompts and settings, so every later key is optional here. Reading
a PNG's metadata decodes the whole image, so what was read is cached in the hidden folder by
(mtime, size): rebuilding the report of a 1000-image folder reads only what changed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import _io, store

OUTPUT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"})
OK, FAILED = "ok", "failed"


@dataclass(frozen=True, eq=False)
class Entry:
    """One card of the report: a result (status "ok") or a recorded failure (status "failed")."""

    status: str
    source: str  # the input's path relative to the folder the user named
    rel: str = ""  # the output's path relative to OUT (POSIX); "" for a failure without output
    output: Path | None = None  # absolute
    input: Path | None = None  # the input at run time; None for results of older versions
    error: str = ""  # failures: the one-line cause
    when: str = ""  # failures: when it failed (ISO 8601)
    seed: int | None = None
    base_seed: int | None = None
    prompts: tuple[str, ...] = ()
    settings: Mapping = field(default_factory=dict)
    run: Mapping = field(default_factory=dict)  # `seesr:run`: versions, device, timings, notes ...
    tiles: tuple[Mapping, ...] = ()  # {"box": [l, t, w, h] in output pixels, "tags": [...], "prompt": str}
    size: tuple[int, int] | None = None  # the output's (width, height)
    fmt: str = ""  # Pillow's format name of the output: PNG, JPEG, WEBP, TIFF
    mtime_ns: int = 0
    bytes: int = 0

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def input_exists(self) -> bool:
        return self.input is not None and self.input.is_file()


def collect(out_dir: os.PathLike | str) -> list[Entry]:
    """Every result seesr wrote below `out_dir` (sorted by path) and every failure still standing."""
    cache = store.read_json(store.hidden_dir(out_dir) / store.INDEX, {})
    results, _ = scan(out_dir, cache)
    return results + standing_failures(out_dir, results)


# ----------------------------------------------------------------------------- results


def scan(out_dir: os.PathLike | str, cache: Mapping[str, dict]) -> tuple[list[Entry], dict[str, dict]]:
    """Results below `out_dir` and the updated metadata cache (unchanged files are not reopened)."""
    out = Path(out_dir)
    entries, fresh, timings = [], {}, store.load_timings(out)
    for path in _candidates(out):
        rel = path.relative_to(out).as_posix()
        try:
            st = path.stat()
        except OSError:
            continue
        record = cache.get(rel)
        if not (isinstance(record, dict) and record.get("mtime_ns") == st.st_mtime_ns
                and record.get("bytes") == st.st_size):
            record = _read(path, st)
        fresh[rel] = record
        if record.get("meta") and "seesr:seed" in record["meta"]:
            entries.append(_result(out, rel, record, _stamped(timings.get(rel), record)))
    entries.sort(key=lambda e: natural_key(e.rel))
    return entries, fresh


def _candidates(out: Path):
    """Image files below `out`, minus the hidden folder, the report and half-written temp files."""
    for folder, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if d != store.HIDDEN_DIR)
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in OUTPUT_SUFFIXES:
                continue
            yield Path(folder) / name


def _read(path: Path, st: os.stat_result) -> dict:
    """What the cache keeps of one file; "meta" None when it is unreadable or not ours."""
    record = {"mtime_ns": st.st_mtime_ns, "bytes": st.st_size, "meta": None, "size": None, "format": ""}
    try:
        with Image.open(path) as im:
            record["size"], record["format"] = list(im.size), im.format or ""
        meta = _io.read_metadata(path)
    except Exception:  # noqa: BLE001 - a damaged file in OUT is simply not one of our results
        return record
    if "seesr:seed" in meta:
        record["meta"] = {k: v for k, v in meta.items() if k.startswith("seesr:")}
    return record


def _stamped(saved, record: dict) -> dict:
    """The saved seconds per stage, if they belong to this very file (same mtime and size)."""
    if isinstance(saved, dict) and saved.get("mtime_ns") == record.get("mtime_ns") \
            and saved.get("bytes") == record.get("bytes") and isinstance(saved.get("timings"), dict):
        return saved["timings"]
    return {}


def _result(out: Path, rel: str, record: dict, timings: Mapping | None = None) -> Entry:
    meta = record["meta"]
    size = record.get("size")
    run = _json(meta.get("seesr:run"), dict)
    if timings and not run.get("timings"):  # recorded beside the report by the run that wrote it
        run = {**run, "timings": dict(timings)}
    return Entry(
        status=OK, source=meta.get("seesr:source", rel), rel=rel, output=(out / rel).absolute(),
        input=Path(meta["seesr:input"]) if meta.get("seesr:input") else None,
        seed=_int(meta.get("seesr:seed")), base_seed=_int(meta.get("seesr:base-seed")),
        prompts=tuple(str(p) for p in _json(meta.get("seesr:prompts"), list)),
        settings=_json(meta.get("seesr:settings"), dict), run=run,
        tiles=tuple(t for t in (_tile(t) for t in _json(meta.get("seesr:tiles"), list)) if t),
        size=tuple(size) if isinstance(size, list) and len(size) == 2 else None,
        fmt=record.get("format", ""), mtime_ns=record["mtime_ns"], bytes=record["bytes"])


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _json(text, kind: type):
    """Parsed JSON of the expected kind, or an empty one: one odd key must not cost the card."""
    try:
        value = json.loads(text) if text else kind()
    except ValueError:
        return kind()
    return value if isinstance(value, kind) else kind()


def _tile(raw) -> dict | None:
    if not isinstance(raw, dict):
        return None
    box = raw.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        return None
    tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
    return {"box": box, "tags": [str(t) for t in tags], "prompt": str(raw.get("prompt") or "")}


def natural_key(text: str) -> list:
    """img2 before img10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", text) if part]


# ----------------------------------------------------------------------------- failures


def standing_failures(out_dir: os.PathLike | str, results: list[Entry]) -> list[Entry]:
    """Recorded failures, minus those whose input has since succeeded (even in another process)."""
    done = {store.input_key(e.input) for e in results if e.input is not None}
    outputs = {store.input_key(e.output) for e in results if e.output is not None}
    failures = []
    for key, rec in store.load_failures(out_dir).items():
        if not isinstance(rec, dict) or key in done:
            continue
        output = rec.get("output")
        if output and store.input_key(output) in outputs:
            continue
        failures.append(Entry(status=FAILED, source=str(rec.get("source") or Path(key).name),
                              output=Path(output) if output else None, input=Path(rec.get("input") or key),
                              error=str(rec.get("error") or "failed"), when=str(rec.get("when") or "")))
    failures.sort(key=lambda e: natural_key(e.source))
    return failures

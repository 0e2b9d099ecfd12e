"""The hidden folder beside the report: failures of earlier runs, a log of runs, the metadata cache.

Layout of OUT/.seesr-report/:
    failures.json   {input path: {"input", "source", "output", "error", "when"}}
    runs.json       [{"finished", "ok", "skipped", "failed", "seconds", "interrupted"}], newest last
    index.json      {output path relative to OUT: {"mtime_ns", "bytes", "meta", "size"}}
    timings.json    {output path relative to OUT: {"mtime_ns", "bytes", "timings"}}: seconds per stage
                    of the run that wrote it (not in the image: its bytes never depend on timing)
    previews/       small JPEGs (see previews.py)
Every file is replaced atomically (temp file + os.replace); read-modify-write of the run state
holds a lock file where the platform has `fcntl`, since several processes may end a run at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._io import atomic_write

REPORT_NAME = "seesr-report.html"
HIDDEN_DIR = ".seesr-report"
PREVIEWS = "previews"
FAILURES, RUNS, INDEX, LOCK, TIMINGS = "failures.json", "runs.json", "index.json", "lock", "timings.json"
MAX_RUNS = 50  # runs kept in the log


def hidden_dir(out_dir: os.PathLike | str) -> Path:
    return Path(out_dir) / HIDDEN_DIR


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """`data` into `path` through the one atomic write (io.atomic); `durable` False for caches."""
    atomic_write(path, lambda f: f.write(data), overwrite=True, durable=durable)


def read_json(path: Path, default):
    """The JSON in `path`, or `default` when it is missing or damaged (state is a cache, never fatal)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def write_json(path: Path, value, *, compact: bool = False) -> None:
    """`compact` for the metadata cache (machine-read, large); the rest is indented for people."""
    options = {"separators": (",", ":")} if compact else {"indent": 1}
    atomic_write_bytes(path, json.dumps(value, ensure_ascii=False, sort_keys=True, **options).encode("utf-8"))


@contextmanager
def locked(out_dir: os.PathLike | str) -> Iterator[None]:
    """Exclusive lock on OUT/.seesr-report/lock (a no-op where `fcntl` is missing)."""
    folder = hidden_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: concurrent ends of a run are rare there; last writer wins
        yield
        return
    with open(folder / LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def input_key(path: os.PathLike | str) -> str:
    """How a failure is filed: the input's absolute, normalised path."""
    return os.path.normcase(os.path.abspath(os.fspath(path)))


def load_failures(out_dir: os.PathLike | str) -> dict[str, dict]:
    return read_json(hidden_dir(out_dir) / FAILURES, {})


def load_runs(out_dir: os.PathLike | str) -> list[dict]:
    return read_json(hidden_dir(out_dir) / RUNS, [])


def update_failures(out_dir: os.PathLike | str, failed: dict[str, dict], succeeded: set[str]) -> None:
    """File this run's failures; forget earlier failures of inputs that have now succeeded."""
    path = hidden_dir(out_dir) / FAILURES
    failures = read_json(path, {})
    for key in succeeded:
        failures.pop(key, None)
    failures.update(failed)
    write_json(path, failures)


def append_run(out_dir: os.PathLike | str, run: dict) -> None:
    path = hidden_dir(out_dir) / RUNS
    runs = read_json(path, [])
    runs.append(run)
    write_json(path, runs[-MAX_RUNS:])


def load_timings(out_dir: os.PathLike | str) -> dict[str, dict]:
    return read_json(hidden_dir(out_dir) / TIMINGS, {})


def update_timings(out_dir: os.PathLike | str, written: dict[str, dict]) -> None:
    """Remember the seconds per stage of the results this run wrote, keyed by their path below OUT."""
    if not written:
        return
    path = hidden_dir(out_dir) / TIMINGS
    timings = read_json(path, {})
    timings.update(written)
    write_json(path, timings, compact=True)

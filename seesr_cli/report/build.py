"""Writing the report: record a run's outcomes, make missing previews, rewrite the page atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import _io, store
from . import entries as _entries
from . import previews as _previews
from ._io import SeesrError
from .page import page_data, render

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
Progress = Callable[[int, int], None]  # (previews checked, of how many)


class ReportError(SeesrError):
    """The report cannot be written (no such folder, not writable)."""


@dataclass(frozen=True)
class Outcome:
    """What one image of a run came to; `source` is the input's path below the folder the user named."""

    input: Path
    output: Path | None
    status: str  # ok | skipped | failed
    error: str = ""
    source: str = ""
    timings: Mapping = field(default_factory=dict)  # seconds per stage, for an ok result


def outcome_of(result) -> Outcome:
    """An `Outcome` from itself, a batch `JobResult` (`.job`, `.status`, `.error`) or its `to_dict()`."""
    if isinstance(result, Outcome):
        return result
    job = getattr(result, "job", None)
    if job is not None:
        output = None if job.output is None else Path(job.output)
        return Outcome(Path(job.input), output, result.status, result.error or "", getattr(job, "rel", ""),
                       dict(getattr(result, "timings", None) or {}))
    if isinstance(result, Mapping):
        output = result.get("output")
        return Outcome(Path(result["input"]), Path(output) if output else None, str(result["status"]),
                       str(result.get("error") or ""), str(result.get("source") or ""),
                       dict(result.get("timings") or {}))
    raise TypeError(f"cannot read a run outcome from {type(result).__name__}")


def record_run(out_dir: os.PathLike | str, results: Iterable, *, seconds: float | None = None,
               interrupted: bool = False, previews: bool = True, on_progress: Progress | None = None) -> None:
    """File a run's failures in OUT's hidden folder (forgetting those of inputs that now succeeded),
    log the run, and make the previews of the results it wrote (their inputs are at hand now)."""
    out = _folder(out_dir)
    outcomes = [outcome_of(r) for r in results]
    now = _now()
    failed = {store.input_key(o.input): _failure(o, now) for o in outcomes if o.status == FAILED}
    succeeded = {store.input_key(o.input) for o in outcomes if o.status != FAILED}
    counts = {s: sum(o.status == s for o in outcomes) for s in (OK, SKIPPED, FAILED)}
    run = {"finished": now, **counts, "seconds": None if seconds is None else round(float(seconds), 3),
           "interrupted": bool(interrupted)}
    try:
        with store.locked(out):
            store.update_failures(out, failed, succeeded)
            store.append_run(out, run)
            store.update_timings(out, _timings(out, outcomes))
    except (OSError, _io.OutputWriteError) as exc:
        raise ReportError(f"{store.hidden_dir(out)}: cannot record the run: {_cause(exc)}") from exc
    if previews:
        hints = {store.input_key(o.output): o.input for o in outcomes if o.status == OK and o.output is not None}
        _refresh(out, hints, set(hints), on_progress)


def _timings(out: Path, outcomes: list[Outcome]) -> dict[str, dict]:
    """The seconds per stage of the results written into `out`, with the file stamp they belong to."""
    written = {}
    for o in outcomes:
        if o.status != OK or o.output is None or not o.timings:
            continue
        try:
            st, rel = o.output.stat(), o.output.absolute().relative_to(out.absolute()).as_posix()
        except (OSError, ValueError):  # gone meanwhile, or not below OUT
            continue
        written[rel] = {"mtime_ns": st.st_mtime_ns, "bytes": st.st_size,
                        "timings": {k: round(float(v), 4) for k, v in o.timings.items()}}
    return written


def _failure(o: Outcome, when: str) -> dict:
    return {"input": os.path.abspath(o.input), "source": o.source or o.input.name,
            "output": None if o.output is None else os.path.abspath(o.output),
            "error": " ".join(o.error.split()) or "failed", "when": when}


def write_report(out_dir: os.PathLike | str, *, on_progress: Progress | None = None) -> Path:
    """Rewrite OUT/seesr-report.html from every result below OUT and the failures still standing.

    Missing previews are made where the input (path from the metadata) still exists; previews
    of outputs that are gone or rewritten are deleted. Returns the report's path.
    """
    out = _folder(out_dir)
    try:
        results, pairs = _refresh(out, {}, None, on_progress)
        page = render(out, page_data(out, pairs), _entries.standing_failures(out, results),
                      store.load_runs(out), _now())
        path = out / store.REPORT_NAME
        store.atomic_write_bytes(path, page.encode("utf-8"))
        _previews.prune(out, {_previews.preview_key(e) for e in results})
    except (OSError, _io.OutputWriteError) as exc:
        raise ReportError(f"{out}: cannot write the report: {_cause(exc)}") from exc
    return path


def _refresh(out: Path, hints: Mapping[str, Path], only: set[str] | None, on_progress: Progress | None):
    """Scan OUT (through the metadata cache), save the cache, make missing previews.

    Returns every result and (entry, previews) for those in `only` (None: all). `hints` gives
    inputs for results whose metadata does not name theirs (older versions).
    """
    index = store.hidden_dir(out) / store.INDEX
    cache = store.read_json(index, {})
    results, fresh = _entries.scan(out, cache)
    if fresh != cache:
        store.write_json(index, fresh, compact=True)
    chosen = [e for e in results if only is None or store.input_key(e.output) in only]
    pairs = []
    for done, entry in enumerate(chosen, 1):
        hint = hints.get(store.input_key(entry.output)) if entry.input is None else None
        pairs.append((entry, _previews.ensure(out, entry, hint)))
        if on_progress is not None:
            on_progress(done, len(chosen))
    return results, pairs


def _folder(out_dir: os.PathLike | str) -> Path:
    out = Path(out_dir)
    if not out.is_dir():
        raise ReportError(f"{out}: not a folder" if out.exists() else f"{out}: no such folder")
    return out


def _now() -> str:
    return datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")


def _cause(exc: Exception) -> str:
    if isinstance(exc, _io.OutputWriteError):
        return exc.cause
    return getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__

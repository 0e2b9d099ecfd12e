"""Running a batch: each job in turn, a bad image failing alone, Ctrl-C stopping between steps.

Errors that would fail every image alike (missing weights, models that do not load, bad
settings) stop the batch; anything else fails only its image, with a one-line cause and,
for our own bugs, the traceback kept for `--debug`.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from seesr_cli.batch.claim import LOCK_SUFFIX, Claim, Holder, claim, dead_temps
from seesr_cli.batch.plan import FAIL, SKIP, Job
from seesr_cli.errors import (
    Cancelled,
    InputImageError,
    InternalError,
    ModelLoadError,
    OutputExistsError,
    SeesrError,
    UsageError,
    WeightsError,
)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"  # outcomes


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # ok | skipped | failed
    error: str = ""
    seconds: float = 0.0
    prompts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    trace: str = ""  # the traceback of an unexpected failure (a bug of ours), for --debug
    timings: dict[str, float] = field(default_factory=dict)  # seconds per pipeline stage (ok results)

    def to_dict(self) -> dict:
        job = self.job
        return {"input": str(job.input), "output": None if job.output is None else str(job.output),
                "status": self.status, "error": self.error or None, "seconds": round(self.seconds, 3),
                "seed": job.seed if job.output is not None else None, "prompts": list(self.prompts),
                "notes": list(self.notes), "timings": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclass
class BatchReport:
    results: list[JobResult] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    setup_seconds: float = 0.0  # model loading, counted apart from every image

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 1 if any input failed, else 0 (skipped counts as done)."""
        return 130 if self.interrupted else (1 if self.count(FAILED) else 0)


@dataclass(frozen=True)
class WorkDone:
    """What the per-image work hands back to the runner."""

    prompts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    setup_seconds: float = 0.0  # loading the models on first use: not this image's time
    timings: dict[str, float] = field(default_factory=dict)  # seconds per pipeline stage


class BatchObserver(Protocol):
    def job_started(self, job: Job, index: int, total: int) -> None: ...

    def job_finished(self, result: JobResult, index: int, total: int) -> None: ...


# Raised by the work for one image: reported, and the batch goes on. Anything that would fail
# every image alike (missing weights, models that do not load, bad settings) stops the batch.
_FATAL = (WeightsError, ModelLoadError, UsageError, Cancelled)


def run_jobs(jobs: Sequence[Job], work: Callable[[Job], WorkDone], *, observer: BatchObserver | None = None,
             should_cancel: Callable[[], bool] | None = None) -> BatchReport:
    """Run (or report) each job in order. A bad image fails alone; Ctrl-C stops between jobs or steps.
    An image another run (sharing the folder) is making is skipped, never computed twice."""
    report, start, total, temps = BatchReport(), time.perf_counter(), len(jobs), _Temps()
    for index, job in enumerate(jobs):
        if should_cancel is not None and should_cancel():
            report.interrupted = True
            break
        if observer is not None:
            observer.job_started(job, index, total)
        try:
            result, setup = run_one(job, work, temps)
        except (Cancelled, KeyboardInterrupt):  # nothing of this image was written
            report.interrupted = True
            break
        report.results.append(result)
        report.setup_seconds += setup
        if observer is not None:
            observer.job_finished(result, index, total)
    report.seconds = time.perf_counter() - start
    return report


def run_one(job: Job, work: Callable[[Job], WorkDone], temps: _Temps | None = None) -> tuple[JobResult, float]:
    """The job's result and the seconds spent loading models on its way. The image is claimed
    first (batch/claim.py), so a run sharing the folder (or another worker) never computes it a
    second time. `temps`: the run's memory of temp files already looked at (a fresh one if None)."""
    temps = temps if temps is not None else _Temps()
    if job.action == FAIL:
        return JobResult(job, FAILED, job.reason), 0.0
    if job.action == SKIP or (not job.overwrite and os.path.lexists(job.output)):  # or done meanwhile
        if os.path.lexists(job.output):
            temps.clear(job.output)  # a stale temp beside a finished output goes too
        return JobResult(job, SKIPPED, job.reason if job.action == SKIP else "output exists"), 0.0
    held = claim(job.output)
    if isinstance(held, Holder):
        return JobResult(job, SKIPPED, held.describe()), 0.0
    try:
        if not job.overwrite and os.path.lexists(job.output):  # finished by another run as we claimed it
            return JobResult(job, SKIPPED, "output exists"), 0.0
        temps.clear(job.output, held=held is not None)
        return _work(job, work)
    finally:
        if held is not None:
            held.release()


def _work(job: Job, work: Callable[[Job], WorkDone]) -> tuple[JobResult, float]:
    start = time.perf_counter()
    try:
        done = work(job)
    except _FATAL:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; a bug of ours must not end a long batch
        seconds = time.perf_counter() - start
        if isinstance(exc, OutputExistsError):
            return JobResult(job, SKIPPED, "output exists", seconds), 0.0
        if isinstance(exc, InputImageError):
            return JobResult(job, FAILED, exc.cause, seconds), 0.0
        if isinstance(exc, SeesrError):
            trace = traceback.format_exc() if isinstance(exc, InternalError) else ""
            return JobResult(job, FAILED, str(exc), seconds, trace=trace), 0.0
        cause = f"internal error: {type(exc).__name__}: {exc}"  # reported with its trace for --debug
        return JobResult(job, FAILED, cause, seconds, trace=traceback.format_exc()), 0.0
    seconds = time.perf_counter() - start - done.setup_seconds
    return JobResult(job, OK, "", seconds, done.prompts, done.notes, timings=dict(done.timings)), done.setup_seconds


class _Temps:
    """Temporary files (`.NAME.tmp-...`) and claims beside the outputs, listed once per folder per
    run: a killed writer's leftovers are removed, a live writer's never (batch/claim.dead_temps);
    a dead run's claim is taken over and released."""

    def __init__(self):
        self._listed: dict[Path, dict[str, list[str]]] = {}

    def _beside(self, output: Path) -> list[str]:
        folder = output.parent
        if folder not in self._listed:
            by_target: dict[str, list[str]] = {}
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            for name in names:
                if name.startswith(".") and ".tmp-" in name:
                    by_target.setdefault(name[1:name.rindex(".tmp-")], []).append(name)
                elif name.startswith(".") and name.endswith(LOCK_SUFFIX):  # a dead run's claim: taken over below
                    by_target.setdefault(name[1:-len(LOCK_SUFFIX)], []).append(name)
            self._listed[folder] = by_target
        return self._listed[folder].pop(output.name, [])

    def clear(self, output: Path, *, held: bool = False) -> None:
        """Remove the dead writers' temps of `output`; claim it first unless this run holds it."""
        names = self._beside(output)
        if not names:
            return
        mine = None if held else claim(output)
        if not held and not isinstance(mine, Claim):
            return  # another run is on it (or no claim can be made here): leave its files alone
        try:
            for stale in dead_temps(output, names):
                with contextlib.suppress(OSError):
                    stale.unlink()
        finally:
            if mine is not None:
                mine.release()

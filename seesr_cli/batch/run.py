"""Running a batch: each job in turn, a bad image failing alone, Ctrl-C stopping between steps.

Errors that would fail every image alike (missing weights, models that do not load, bad
settings) stop the batch; anything else fails only its image, with a one-line cause and,
for our own bugs, the traceback kept for `--debug`.
"""

from __future__ import annotations

import glob
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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

    def to_dict(self) -> dict:
        job = self.job
        return {"input": str(job.input), "output": None if job.output is None else str(job.output),
                "status": self.status, "error": self.error or None, "seconds": round(self.seconds, 3),
                "seed": job.seed if job.output is not None else None, "prompts": list(self.prompts),
                "notes": list(self.notes)}


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


class BatchObserver(Protocol):
    def job_started(self, job: Job, index: int, total: int) -> None: ...

    def job_finished(self, result: JobResult, index: int, total: int) -> None: ...


# Raised by the work for one image: reported, and the batch goes on. Anything that would fail
# every image alike (missing weights, models that do not load, bad settings) stops the batch.
_FATAL = (WeightsError, ModelLoadError, UsageError, Cancelled)


def run_jobs(jobs: Sequence[Job], work: Callable[[Job], WorkDone], *, observer: BatchObserver | None = None,
             should_cancel: Callable[[], bool] | None = None) -> BatchReport:
    """Run (or report) each job in order. A bad image fails alone; Ctrl-C stops between jobs or steps."""
    report, start, total = BatchReport(), time.perf_counter(), len(jobs)
    for index, job in enumerate(jobs):
        if should_cancel is not None and should_cancel():
            report.interrupted = True
            break
        if observer is not None:
            observer.job_started(job, index, total)
        try:
            result, setup = run_one(job, work)
        except (Cancelled, KeyboardInterrupt):  # nothing of this image was written
            report.interrupted = True
            break
        report.results.append(result)
        report.setup_seconds += setup
        if observer is not None:
            observer.job_finished(result, index, total)
    report.seconds = time.perf_counter() - start
    return report


def run_one(job: Job, work: Callable[[Job], WorkDone]) -> tuple[JobResult, float]:
    """The job's result and the seconds spent loading models on its way."""
    if job.action == FAIL:
        return JobResult(job, FAILED, job.reason), 0.0
    if job.action == SKIP:
        return JobResult(job, SKIPPED, job.reason), 0.0
    if not job.overwrite and os.path.lexists(job.output):  # done meanwhile by another process
        return JobResult(job, SKIPPED, "output exists"), 0.0
    _remove_stale_temps(job.output)
    start = time.perf_counter()
    try:
        done = work(job)
    except OutputExistsError:
        return JobResult(job, SKIPPED, "output exists", time.perf_counter() - start), 0.0
    except InputImageError as exc:
        return JobResult(job, FAILED, exc.cause, time.perf_counter() - start), 0.0
    except _FATAL:
        raise
    except SeesrError as exc:
        trace = traceback.format_exc() if isinstance(exc, InternalError) else ""
        return JobResult(job, FAILED, str(exc), time.perf_counter() - start, trace=trace), 0.0
    except Exception as exc:  # noqa: BLE001 - a bug of ours must not end a long batch: reported, trace kept
        cause = f"internal error: {type(exc).__name__}: {exc}"
        return JobResult(job, FAILED, cause, time.perf_counter() - start, trace=traceback.format_exc()), 0.0
    seconds = time.perf_counter() - start - done.setup_seconds
    return JobResult(job, OK, "", seconds, done.prompts, done.notes), done.setup_seconds


def _remove_stale_temps(output: Path) -> None:
    """A process killed mid-write leaves `.name.tmp-XXXX` (io.atomic's write); only this job
    ever writes this name, so its leftovers can go."""
    for stale in output.parent.glob(f".{glob.escape(output.name)}.tmp-*"):
        try:
            stale.unlink()
        except OSError:
            pass

"""Running a batch: each job in turn (or a group of them through the pipeline together), a bad
image failing alone, Ctrl-C stopping between steps.

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
from seesr_cli.batch.plan import FAIL, RUN, SKIP, Job
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
    """Told of each job as it starts and finishes. An observer may also have
    `group_started(jobs)`, called after the `job_started` of the jobs of a group (`run_jobs(group=...)`)."""

    def job_started(self, job: Job, index: int, total: int) -> None: ...

    def job_finished(self, result: JobResult, index: int, total: int) -> None: ...


# Raised by the work for one image: reported, and the batch goes on. Anything that would fail
# every image alike (missing weights, models that do not load, bad settings) stops the batch.
_FATAL = (WeightsError, ModelLoadError, UsageError, Cancelled)


GroupWork = Callable[[Sequence[Job]], Sequence["WorkDone | BaseException"]]


def run_jobs(jobs: Sequence[Job], work: Callable[[Job], WorkDone], *, observer: BatchObserver | None = None,
             should_cancel: Callable[[], bool] | None = None, group: int = 1,
             work_many: GroupWork | None = None) -> BatchReport:
    """Run (or report) each job in order. A bad image fails alone; Ctrl-C stops between jobs or steps.
    An image another run (sharing the folder) is making is skipped, never computed twice.

    `group` > 1 with `work_many`: up to `group` images that run go through the work together (their
    tiles sharing forwards), each still claimed, written and reported on its own; a group whose work
    fails as a whole is redone image by image with `work`."""
    report, start, total, temps = BatchReport(), time.perf_counter(), len(jobs), _Temps()
    size = group if work_many is not None and group > 1 else 1
    for chunk in _chunks(list(enumerate(jobs)), size):
        if should_cancel is not None and should_cancel():
            report.interrupted = True
            break
        if observer is not None:
            for index, job in chunk:
                observer.job_started(job, index, total)
            if len(chunk) > 1 and hasattr(observer, "group_started"):
                observer.group_started([job for _, job in chunk])
        try:
            if len(chunk) == 1:
                outcomes = [run_one(chunk[0][1], work, temps)]
            else:
                outcomes = run_group([job for _, job in chunk], work, work_many, temps)
        except (Cancelled, KeyboardInterrupt):  # nothing of these images was written
            report.interrupted = True
            break
        for (index, _), (result, setup) in zip(chunk, outcomes):
            report.results.append(result)
            report.setup_seconds += setup
            if observer is not None:
                observer.job_finished(result, index, total)
    report.seconds = time.perf_counter() - start
    return report


def _chunks(jobs: list[tuple[int, Job]], size: int) -> list[list[tuple[int, Job]]]:
    """Consecutive jobs, each chunk with at most `size` that run (skips and refusals ride along)."""
    chunks: list[list[tuple[int, Job]]] = [[]]
    for item in jobs:
        if sum(job.action == RUN for _, job in chunks[-1]) == size and item[1].action == RUN:
            chunks.append([])
        chunks[-1].append(item)
    return [chunk for chunk in chunks if chunk]


def run_one(job: Job, work: Callable[[Job], WorkDone], temps: _Temps | None = None) -> tuple[JobResult, float]:
    """The job's result and the seconds spent loading models on its way. The image is claimed
    first (batch/claim.py), so a run sharing the folder (or another worker) never computes it a
    second time. `temps`: the run's memory of temp files already looked at (a fresh one if None)."""
    ready = _claim(job, temps if temps is not None else _Temps())
    if isinstance(ready, JobResult):
        return ready, 0.0
    try:
        return _work(job, work)
    finally:
        ready()


def run_group(jobs: Sequence[Job], work: Callable[[Job], WorkDone], work_many: GroupWork,
              temps: _Temps | None = None) -> list[tuple[JobResult, float]]:
    """`run_one` for each job, those that run handed to `work_many` together (`work` alone if one)."""
    temps = temps if temps is not None else _Temps()
    out: list[tuple[JobResult, float] | None] = [None] * len(jobs)
    ready: list[tuple[int, Callable[[], None]]] = []
    try:
        for i, job in enumerate(jobs):
            got = _claim(job, temps)
            if isinstance(got, JobResult):
                out[i] = (got, 0.0)
            else:
                ready.append((i, got))
        if len(ready) == 1:
            out[ready[0][0]] = _work(jobs[ready[0][0]], work)
        elif ready:
            for (i, _), outcome in zip(ready, _work_many([jobs[i] for i, _ in ready], work, work_many)):
                out[i] = outcome
    finally:
        for _, release in ready:
            release()
    return [outcome for outcome in out if outcome is not None]


def _claim(job: Job, temps: _Temps) -> JobResult | Callable[[], None]:
    """The job's result if it does not run (refused, skipped, another run's), else the release of its claim."""
    if job.action == FAIL:
        return JobResult(job, FAILED, job.reason)
    if job.action == SKIP or (not job.overwrite and os.path.lexists(job.output)):  # or done meanwhile
        if os.path.lexists(job.output):
            temps.clear(job.output)  # a stale temp beside a finished output goes too
        return JobResult(job, SKIPPED, job.reason if job.action == SKIP else "output exists")
    held = claim(job.output)
    if isinstance(held, Holder):
        return JobResult(job, SKIPPED, held.describe())
    release = held.release if held is not None else (lambda: None)
    try:
        if not job.overwrite and os.path.lexists(job.output):  # finished by another run as we claimed it
            release()
            return JobResult(job, SKIPPED, "output exists")
        temps.clear(job.output, held=held is not None)
    except BaseException:
        release()
        raise
    return release


def _work(job: Job, work: Callable[[Job], WorkDone]) -> tuple[JobResult, float]:
    start = time.perf_counter()
    try:
        done = work(job)
    except _FATAL:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; a bug of ours must not end a long batch
        return _failed(job, exc, time.perf_counter() - start), 0.0
    seconds = time.perf_counter() - start - done.setup_seconds
    return JobResult(job, OK, "", seconds, done.prompts, done.notes, timings=dict(done.timings)), done.setup_seconds


def _work_many(jobs: Sequence[Job], work: Callable[[Job], WorkDone],
               work_many: GroupWork) -> list[tuple[JobResult, float]]:
    """The group's results; each image's seconds are its share (by its stage timings) of the group's."""
    start = time.perf_counter()
    try:
        done = list(work_many(jobs))
    except _FATAL:
        raise
    except Exception:  # noqa: BLE001 - the group broke as a whole: image by image, each failure its own
        return [_work(job, work) for job in jobs]
    for outcome in done:
        if isinstance(outcome, _FATAL):  # as fatal as it is for one image
            raise outcome
    setup = sum(d.setup_seconds for d in done if isinstance(d, WorkDone))
    seconds = max(time.perf_counter() - start - setup, 0.0)
    shares = [sum(d.timings.values()) if isinstance(d, WorkDone) else 0.0 for d in done]
    if not sum(shares):
        shares = [1.0] * len(done)
    out, first = [], True
    for job, outcome, share in zip(jobs, done, shares):
        mine = seconds * share / sum(shares)
        if isinstance(outcome, BaseException):
            out.append((_failed(job, outcome, mine), 0.0))
            continue
        out.append((JobResult(job, OK, "", mine, outcome.prompts, outcome.notes, timings=dict(outcome.timings)),
                    setup if first else 0.0))
        first = False
    return out


def _failed(job: Job, exc: BaseException, seconds: float) -> JobResult:
    """A failed (or, for an output made meanwhile, skipped) image's result; a bug of ours keeps its trace."""
    if isinstance(exc, OutputExistsError):
        return JobResult(job, SKIPPED, "output exists", seconds)
    if isinstance(exc, InputImageError):
        return JobResult(job, FAILED, exc.cause, seconds)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, SeesrError):
        return JobResult(job, FAILED, str(exc), seconds, trace=trace if isinstance(exc, InternalError) else "")
    cause = f"internal error: {type(exc).__name__}: {exc}"  # reported with its trace for --debug
    return JobResult(job, FAILED, cause, seconds, trace=trace)


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

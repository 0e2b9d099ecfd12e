"""The driver's loop: the next job to the next free worker; the job of a worker that died to another.

Ray places the workers, restarts one whose process or node died (`max_restarts=-1`) and tracks
the nodes. This loop only keeps one job in flight per worker (a free worker never waits behind a
busy one's queue), puts the job of a dead worker back at the head of the queue (at most
`max_attempts` tries: an image that kills its worker every time is then reported failed), gives
a restarted worker work again once it answers a ping, forwards the workers' progress to the
observer, and on Ctrl-C raises the mailbox's stop flag (the running jobs stop at their next step).
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import ray
from ray.exceptions import RayError, RayTaskError

from seesr_cli.batch import FAILED, RUN, BatchReport, Job, JobResult, run_one
from seesr_cli.errors import InternalError, one_line
from seesr_cli.scaleout.mailbox import unwrap

MAX_ATTEMPTS = 3
POLL_S = 0.2
ALONE_S = 600.0  # no worker alive and none coming back for this long: the jobs left are not done
TELL_S = 60.0  # ... for this long: say so once


class ClusterObserver(Protocol):
    """`batch.BatchObserver` plus what several images at once and lost workers need."""

    def job_started(self, job: Job, index: int, total: int) -> None: ...

    def job_finished(self, result: JobResult, index: int, total: int) -> None: ...

    def image_event(self, job: Job, event) -> None: ...  # pipeline.ProgressEvent of one running image

    def image_status(self, job: Job, text: str) -> None: ...  # "loading models"

    def weights_event(self, event) -> None: ...

    def notice(self, text: str) -> None: ...  # something recovered from (a worker died; its image is redone)

    def problem(self, subject: str, cause: str) -> None: ...


@dataclass
class _Worker:
    handle: Any
    name: str
    where: str = ""


def absolute(job: Job) -> Job:
    """The job as a worker on any node needs it: a worker's working folder is not the driver's."""
    return replace(job, input=Path(job.input).absolute(), output=Path(job.output).absolute())


def _nowhere(job: Job):
    raise InternalError(f"{job.input}: only jobs to run go to a worker")


def _cause(exc: BaseException) -> str:
    """The original error inside Ray's message (a worker's failed start ends with its traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit)\b", line)]
    return one_line(errors[-1] if errors else lines[0] if lines else type(exc).__name__)


def _death(exc: BaseException) -> str:
    """Why a worker died, in a few words (Ray's own message runs to a dozen lines)."""
    return f"killed, crashed, out of memory or its node left; Ray: {type(exc).__name__}"


class Dispatcher:
    def __init__(self, jobs: Sequence[Job], handles: Sequence[Any], *, mailbox: Any, observer: ClusterObserver,
                 should_cancel: Callable[[], bool], max_attempts: int = MAX_ATTEMPTS, alone_s: float = ALONE_S):
        self.jobs, self.mailbox, self.observer = list(jobs), mailbox, observer
        self.should_cancel, self.max_attempts, self.alone_s = should_cancel, max_attempts, alone_s
        self.workers = [_Worker(h, f"worker {n + 1}") for n, h in enumerate(handles)]
        self.results: dict[int, JobResult] = {}
        self.attempts: collections.Counter[int] = collections.Counter()
        self.queue: collections.deque[int] = collections.deque()
        self.idle: list[_Worker] = []
        self.running: dict[Any, tuple[_Worker, int]] = {}  # ObjectRef -> (worker, job index)
        self.probes: dict[Any, _Worker] = {}  # ping of a new or restarted worker -> it
        self.setups: list[float] = []  # each worker's model loading (in its first job)
        self.first_ready: float | None = None  # seconds until a worker could take a job
        self.start = 0.0
        self.cancelled = self.told = False
        self.gone: list[str] = []  # why workers that will not come back went

    def run(self) -> BatchReport:
        self.start = time.perf_counter()
        for i, job in enumerate(self.jobs):
            if job.action == RUN:
                self.queue.append(i)
            else:  # skips and refusals, reported at once as a one-process run does
                self.observer.job_started(job, len(self.results), len(self.jobs))
                self._finish(i, run_one(job, _nowhere)[0])
        self.probes = {self._ping(w): w for w in self.workers}
        alone = None
        while self.running or (self.queue and not self.cancelled and (self.idle or self.probes)):
            if not self.cancelled and self.should_cancel():
                self.cancelled = True
                self.mailbox.stop.remote()  # each running pipeline sees it at its next step
            while self.queue and self.idle and not self.cancelled:
                self._hand_out(self.idle.pop(0), self.queue.popleft())
            for ref in self._ready():
                if ref in self.probes:
                    self._answered(self.probes.pop(ref), ref)
                else:
                    self._returned(ref, *self.running.pop(ref))
            self._drain()
            alone = None if self.running or self.idle else (alone or time.monotonic())
            if alone is not None and self._alone_too_long(time.monotonic() - alone):
                break
        self._drain()
        if self.queue and not self.cancelled:
            self._give_up()
        report = BatchReport(results=[self.results[i] for i in sorted(self.results)], interrupted=self.cancelled)
        report.seconds = time.perf_counter() - self.start
        report.setup_seconds = (self.first_ready or 0.0) + max(self.setups, default=0.0)
        return report

    def _alone_too_long(self, seconds: float) -> bool:
        """No worker to give a job to for `seconds`: tell once after TELL_S, give up after alone_s."""
        if seconds > self.alone_s:
            self.gone.append(f"no worker answered for {self.alone_s:.0f} s")
            return True
        if seconds > TELL_S and not self.told:
            self.told = True
            self.observer.notice(f"no worker ready for {TELL_S:.0f} s: Ray is starting or placing them "
                                 "(all GPUs/CPUs in use? see `ray status`)")
        return False

    def _ready(self) -> list:
        refs = [*self.running, *self.probes]
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_S)
        if ready and rest:  # whatever else is ready too
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return ready

    @staticmethod
    def _ping(worker: _Worker):
        """Answered once the worker runs; waits through its restarts (its jobs are never retried by
        Ray: max_task_retries=0), fails only if it cannot start at all."""
        return worker.handle.ping.options(max_task_retries=-1).remote()

    def _hand_out(self, worker: _Worker, i: int) -> None:
        self.attempts[i] += 1
        if self.attempts[i] == 1:
            self.observer.job_started(self.jobs[i], len(self.results), len(self.jobs))
        self.running[worker.handle.run.remote(absolute(self.jobs[i]), i)] = (worker, i)

    def _answered(self, worker: _Worker, ref) -> None:
        try:
            info = ray.get(ref)
        except RayError as exc:  # it failed to start (an import error on its node) or is gone for good
            self.gone.append(_cause(exc))
            self.observer.problem(worker.name, f"gone: {_cause(exc)}")
            return
        worker.where = f"pid {info['pid']} on {info['host']}"
        self.idle.append(worker)
        if self.first_ready is None:  # its process started, imported torch and the pipeline
            self.first_ready = time.perf_counter() - self.start

    def _returned(self, ref, worker: _Worker, i: int) -> None:
        job = self.jobs[i]
        try:
            outcome = ray.get(ref)
        except RayTaskError as exc:  # the worker's own code failed outside the job: a bug of ours
            self.idle.append(worker)
            self._finish(i, JobResult(job, FAILED, f"internal error: {_cause(exc)}", trace=str(exc)))
            return
        except RayError as exc:  # its process or its node died
            self._lost(worker, i, exc)
            return
        self.idle.append(worker)
        if outcome.kind == "fatal":
            raise outcome.error  # as in one process: missing weights and the like stop the batch
        if outcome.kind == "done":
            self.setups.append(outcome.setup_seconds)
            self._finish(i, replace(outcome.result, job=job))

    def _lost(self, worker: _Worker, i: int, exc: BaseException) -> None:
        """A worker died with job i: Ray restarts it (we ping it until it answers); job i goes to
        the next free worker, unless it was tried `max_attempts` times."""
        self.probes[self._ping(worker)] = worker
        job, tries = self.jobs[i], self.attempts[i]
        where = f"{worker.name} ({worker.where})" if worker.where else worker.name
        if self.cancelled:
            return
        if tries < self.max_attempts:
            self.queue.appendleft(i)
            self.observer.notice(f"{where} died while on {job.input} ({_death(exc)}); "
                                 f"it goes to the next free worker (try {tries + 1} of {self.max_attempts})")
            return
        self._finish(i, JobResult(job, FAILED, f"its worker died each of the {tries} times it ran it ({_death(exc)})"))

    def _give_up(self) -> None:
        why = self.gone[-1] if self.gone else "every worker is gone"
        self.observer.problem("workers", f"none left ({why}); {len(self.queue)} images not done (re-run to resume)")
        while self.queue:
            i = self.queue.popleft()
            self._finish(i, JobResult(self.jobs[i], FAILED, f"not done: no worker left ({why})"))

    def _finish(self, i: int, result: JobResult) -> None:
        self.results[i] = result
        self.observer.job_finished(result, len(self.results) - 1, len(self.jobs))

    def _drain(self) -> None:
        try:
            events = ray.get(self.mailbox.drain.remote())
        except RayError:  # the mailbox is gone: progress stops, the work does not
            return
        for kind, key, payload in map(unwrap, events):
            if kind == "weights":
                self.observer.weights_event(payload)
            elif key is not None and key in self.running_keys():
                job = self.jobs[key]
                self.observer.image_event(job, payload) if kind == "progress" else self.observer.image_status(job, payload)

    def running_keys(self) -> set[int]:
        return {i for _, i in self.running.values()}

"""One batch shared by the processes of a team: each runs its share, the main one reports for all.

The others hand each result over through the launch's store (`team`); the main process
shows them as they arrive, waits for every process's end (or finds it lost), and combines
one report. Problems are told to the observer (`problem`, `status`), never printed here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from seesr_cli.batch import FAILED, BatchReport, Job, JobResult, WorkDone, run_jobs, shard_jobs
from seesr_cli.errors import SeesrError
from seesr_cli.scaleout.team import Heartbeat, Liveness, Team

POLL_S = 0.5  # how often the main process looks at the others' progress


def _encode(result: JobResult) -> str:
    return json.dumps({"status": result.status, "error": result.error, "seconds": result.seconds,
                       "prompts": list(result.prompts), "notes": list(result.notes)})


def _decode(data: bytes, job: Job) -> JobResult:
    d = json.loads(data)
    return JobResult(job, d["status"], d["error"], d["seconds"], tuple(d["prompts"]), tuple(d["notes"]))


class SoloBatch:
    """One process: the whole batch, drawn as it runs."""

    def __init__(self, jobs: Sequence[Job], view):
        self.jobs, self.view = list(jobs), view
        self.pipeline_event = view.pipeline_event

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> BatchReport:
        return run_jobs(self.jobs, work, observer=self.view, should_cancel=should_cancel)


class _SharedBatch:
    def __init__(self, jobs: Sequence[Job], team: Team, view):
        self.jobs, self.team, self.view = list(jobs), team, view
        self.shares = [shard_jobs(range(len(self.jobs)), rank, team.world) for rank in range(team.world)]
        self.mine = self.shares[team.rank]


class HelperBatch(_SharedBatch):
    """A process other than the main one: runs its share silently and hands every result over."""

    lost_main = False

    def pipeline_event(self, event) -> None:
        pass

    def job_started(self, job: Job, index: int, total: int) -> None:
        pass

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        self._send(lambda store: (store.set(f"result/{self.mine[index]}", _encode(result)),
                                  store.add(f"count/{self.team.rank}", 1)))

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> None:
        end: dict = {"interrupted": False, "setup": 0.0, "fatal": None}
        stopped_now = False
        with Heartbeat(self.team):
            try:
                self.team.handshake(self.jobs)
                report = run_jobs([self.jobs[i] for i in self.mine], work, observer=self, should_cancel=should_cancel)
                end.update(interrupted=report.interrupted, setup=report.setup_seconds)
            except KeyboardInterrupt:
                end["interrupted"] = stopped_now = True
            except SeesrError as exc:  # the main process reports it, with the images left
                end["fatal"] = str(exc)
            self._send(lambda store: store.set(f"done/{self.team.rank}", json.dumps(end)))
        self.team.leave()
        if self.lost_main:
            self.view.problem(f"process {self.team.rank}",
                              "lost the main process; finished images are kept (re-run to resume)")
            raise SystemExit(1)
        if stopped_now:
            raise SystemExit(130)  # quietly: the main process says how to resume

    def _send(self, action: Callable[[object], object]) -> None:
        if self.lost_main:
            return
        try:
            action(self.team.store)
        except (RuntimeError, OSError):  # the store went with the main process; the work itself is saved
            self.lost_main = True


class MainBatch(_SharedBatch):
    """The main process: runs its share, draws everyone's progress, waits for all, combines."""

    def __init__(self, jobs: Sequence[Job], team: Team, view):
        super().__init__(jobs, team, view)
        self.results: dict[int, JobResult] = {}
        self._shown = 0
        self._seen = [0] * team.world
        self._next_poll = 0.0

    def job_started(self, job: Job, index: int, total: int) -> None:
        self.view.job_started(job, self._shown, len(self.jobs))
        self._poll()

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        self.results[self.mine[index]] = result
        self._show(result)

    def pipeline_event(self, event) -> None:
        self.view.pipeline_event(event)
        self._poll()

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> BatchReport:
        hellos = self.team.handshake(self.jobs)
        start = time.perf_counter()
        try:
            own = run_jobs([self.jobs[i] for i in self.mine], work, observer=self, should_cancel=should_cancel)
        except KeyboardInterrupt:
            raise
        except BaseException:
            self._wait(Liveness(self.team, hellos))  # the others end alike; let them hand over first
            raise
        ends = self._wait(Liveness(self.team, hellos))
        self.team.leave()
        return self._combine(own, ends, time.perf_counter() - start)

    def _show(self, result: JobResult) -> None:
        self.view.job_finished(result, self._shown, len(self.jobs))
        self._shown += 1

    def _poll(self, force: bool = False) -> None:
        """Show the results the others finished since the last look."""
        if not force and time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + POLL_S
        for rank in range(1, self.team.world):
            count = self.team.store.add(f"count/{rank}", 0)
            for index in self.shares[rank][self._seen[rank]:count]:
                result = _decode(self.team.store.get(f"result/{index}"), self.jobs[index])
                self.results[index] = result
                self._show(result)
            self._seen[rank] = max(self._seen[rank], count)

    def _end(self, rank: int) -> dict | None:
        key = f"done/{rank}"
        return json.loads(self.team.store.get(key)) if self.team.store.check([key]) else None

    def _wait(self, liveness: Liveness) -> dict[int, dict]:
        """Every other process's end record; {"lost": why} for one that is gone."""
        ends: dict[int, dict] = {}
        pending = list(range(1, self.team.world))
        told = False
        while pending:
            self._poll(force=True)
            for rank in list(pending):
                end = self._end(rank)
                if end is None:
                    why = liveness.lost(rank)
                    end = None if why is None else (self._end(rank) or {"lost": why})  # done just now?
                if end is not None:
                    ends[rank] = end
                    pending.remove(rank)
            if pending:
                if not told:
                    self.view.status(f"waiting for {len(pending)} other process(es)")
                    told = True
                time.sleep(POLL_S / 2)
        self._poll(force=True)
        return ends

    def _combine(self, own: BatchReport, ends: dict[int, dict], seconds: float) -> BatchReport:
        report = BatchReport(interrupted=own.interrupted, seconds=seconds, setup_seconds=own.setup_seconds)
        for rank, end in sorted(ends.items()):
            report.interrupted |= bool(end.get("interrupted"))
            report.setup_seconds = max(report.setup_seconds, float(end.get("setup") or 0.0))
            problem = end.get("fatal") or end.get("lost")
            if problem:
                missing = [i for i in self.shares[rank] if i not in self.results]
                left = f"{len(missing)} of its {len(self.shares[rank])} images not done (re-run to resume)"
                self.view.problem(f"process {rank}", f"{problem}; {left}")
                for i in missing:
                    self.results[i] = JobResult(self.jobs[i], FAILED, f"not done: process {rank} stopped ({problem})")
        report.results = [self.results[i] for i in sorted(self.results)]
        return report


def share_batch(jobs: Sequence[Job], team: Team | None, view) -> SoloBatch | MainBatch | HelperBatch:
    """The batch as this process runs it: all of it alone, else its share (see the module doc)."""
    if team is None:
        return SoloBatch(jobs, view)
    return MainBatch(jobs, team, view) if team.is_main else HelperBatch(jobs, team, view)

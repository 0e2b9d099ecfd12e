"""`seesr upscale --devices ... / --ray ...` on the driver: Ray up quietly, the batch drawn as it
runs (several images at once), Ray down; the caller prints the summary as for one process.

Ray writes to the driver's stdout and stderr from its own threads and C++ code ("A worker died
or was killed ...", a lost node's raylet log, start-up warnings). For as long as Ray is up both
descriptors go to a log file (kept and named with --debug), so `--json` stays clean JSON and the
terminal shows only our lines: the progress draws on a copy of the terminal's stderr. Our Ctrl-C
handlers go in after `ray.init`, which installs its own for SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial

from rich.console import Console
from rich.progress import TaskID

from seesr_cli import DOCS_URL
from seesr_cli.batch import RUN, BatchReport, Job, JobResult, PipelineLoader
from seesr_cli.cli.progress import BatchProgress, denoise_progress
from seesr_cli.cli.signals import cancel_on_signals
from seesr_cli.cli.tables import note_line
from seesr_cli.errors import UsageError
from seesr_cli.scaleout.devices import LOCAL, RayPlan, plan_ray
from seesr_cli.settings import UpscaleSettings


class ClusterProgress(BatchProgress):
    """`BatchProgress` for several running images: a bar each (steps x tiles), and notices
    (a worker died, its image goes elsewhere) as plain lines."""

    def __init__(self, console: Console, **kw):
        super().__init__(console, **kw)
        self._images: dict[Job, TaskID] = {}
        self._passes_of: dict[Job, int] = {}
        self._fractions: dict[Job, float] = {}

    def job_started(self, job: Job, index: int, total: int) -> None:
        if self._progress is not None and job.action == RUN and job not in self._images:
            self._images[job] = self._progress.add_task(str(job.input), total=None, detail="")

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        task = self._images.pop(result.job, None)
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)
        self._passes_of.pop(result.job, None)
        self._fractions.pop(result.job, None)
        super().job_finished(result, index, total)

    def image_status(self, job: Job, text: str) -> None:
        if self._progress is not None and job in self._images:
            self._progress.update(self._images[job], detail=text)

    def image_event(self, job: Job, event) -> None:
        task = self._images.get(job)
        if self._progress is None or task is None:
            return
        if event.stage != "denoise":
            self._progress.update(task, detail=event.stage)
            return
        done, total, detail = denoise_progress(event, self._passes_of.get(job, 0))
        self._passes_of[job], self._fractions[job] = done, done / total
        self._progress.update(task, total=total, completed=done, detail=detail)
        self._advance_batch(sum(self._fractions.values()))

    def notice(self, text: str) -> None:
        if not self.quiet:
            note_line(self.console, text)


def parse_ray_options(devices: str | None, ray: str | None, device: str) -> RayPlan | None:
    """The Ray plan of `--devices` / `--ray`, or None for a one-process run; checks GPU numbers here.
    Refuses to run as one of several launched processes (torchrun support is gone: each would redo all)."""
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        raise UsageError("seesr no longer runs under accelerate launch or torchrun (WORLD_SIZE is set): run it "
                         f"once, with --devices 0,1,... on one machine or --ray ADDRESS on a Ray cluster ({DOCS_URL})")
    if devices is None and ray is None:
        return None
    plan = plan_ray(devices, ray, device)
    if plan.address == LOCAL and plan.gpu:
        import torch

        plan = plan_ray(devices, ray, device, gpus=torch.cuda.device_count(),
                        visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return plan


@contextlib.contextmanager
def ray_output_to_log(debug: bool) -> Iterator[Console]:
    """Descriptors 1 and 2 (and sys.stdout) to a log file; yields a console on the real stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd, log = tempfile.mkstemp(prefix="seesr-ray-", suffix=".log")
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        with open(fd, "w", buffering=1, closefd=False) as sink, contextlib.redirect_stdout(sink):
            yield Console(file=terminal)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for kept in (*saved, fd):
            os.close(kept)
        if debug and os.path.getsize(log):
            note_line(Console(file=terminal), f"Ray's own messages: {log}")
        else:
            os.unlink(log)
        terminal.close()


def run_on_ray(plan: RayPlan, jobs: list[Job], loader: PipelineLoader, settings: UpscaleSettings, quality: int, *,
               quiet: bool, debug: bool) -> BatchReport:
    """The batch on Ray's workers, drawn here; the report a one-process run would give."""
    import ray

    from seesr_cli.scaleout.nodes import WeightsSource, start_ray
    from seesr_cli.scaleout.run import run_batch

    weights_dir = loader.weights_dir.absolute() if loader.weights_dir is not None else None
    source = WeightsSource(loader.load.turbo, weights_dir, loader.sd2_repo, loader.accept_local)
    session = None
    with ray_output_to_log(debug) as console:
        start = time.perf_counter()
        try:
            if not quiet:
                note_line(console, "starting Ray" if plan.address == LOCAL else f"joining the Ray cluster at {plan.address}")
            session = start_ray(plan)
            with ClusterProgress(console, quiet=quiet, debug=debug) as view, \
                    cancel_on_signals(say=partial(note_line, console)) as cancelled:
                view.start(jobs)
                return run_batch(plan, jobs, loader.load, source, settings, quality, observer=view,
                                 should_cancel=cancelled, setup_seconds=time.perf_counter() - start)
        finally:
            ray.shutdown()
            if session is not None:  # our private Ray's logs: kept with --debug, else gone with it
                if debug:
                    note_line(console, f"Ray's logs: {session}")
                else:
                    shutil.rmtree(session, ignore_errors=True)

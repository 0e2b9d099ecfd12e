"""One pipeline per worker: a Ray actor that runs the batch runner's per-job function on each job
it is handed; its progress goes to the driver through the `mailbox`.

The worker loads the models on its first image (`batch.PipelineLoader`), after taking its node's
weights lock once (`nodes.prepare_weights`: a no-op when the node's setup task has run). Ctrl-C
on the driver raises the mailbox's stop flag; the pipeline asks for it between steps
(`should_cancel`, a look at the mailbox at most every CHECK_EVERY_S) and stops before anything
is written.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import ray
from ray.exceptions import RayError

from seesr_cli.batch import JobResult, PipelineLoader, run_one, upscale_job
from seesr_cli.errors import Cancelled, SeesrError
from seesr_cli.scaleout.mailbox import wrap
from seesr_cli.scaleout.nodes import WeightsSource, prepare_weights
from seesr_cli.settings import LoadOptions, UpscaleSettings

SEND_EVERY_S = 0.2  # progress events of one stage are thinned to this rate
CHECK_EVERY_S = 0.2  # how often a running job asks whether the driver stops


@dataclass(frozen=True)
class WorkerSpec:
    load: LoadOptions  # with this worker's device kind
    source: WeightsSource
    settings: UpscaleSettings
    quality: int
    threads: int  # torch CPU threads: the worker's CPU share, unless --threads pins it (recorded in each result)
    mailbox: str  # the mailbox's actor name (a handle passed in would make Ray log an error at start)


@dataclass(frozen=True)
class Outcome:
    """What a worker hands back for one job: done (with its result), cancelled, or fatal (stops the batch)."""

    kind: str
    result: JobResult | None = None
    setup_seconds: float = 0.0
    error: SeesrError | None = None


@ray.remote(max_restarts=-1, max_task_retries=0)  # Ray restarts a dead worker; the driver requeues its job
class UpscaleWorker:
    def __init__(self, spec: WorkerSpec):
        import torch

        import seesr_cli.pipeline  # noqa: F401 - the heavy imports now, while the nodes are prepared

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.mailbox = ray.get_actor(spec.mailbox)
        self.loader = PipelineLoader(spec.load, weights_dir=spec.source.weights_dir, sd2_repo=spec.source.sd2_repo,
                                     accept_local=spec.source.accept_local, on_status=self._status,
                                     on_weights=self._weights)
        self.prepared = False
        self.key: int | None = None
        self.last: tuple[str, float] = ("", 0.0)
        self.stopping, self.checked = False, 0.0

    def ping(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, job, key: int) -> Outcome:
        """Job `key` through `batch.run_one`, as in a one-process batch."""
        self.key, self.last = key, ("", 0.0)
        work = partial(upscale_job, pipeline=self._pipeline, settings=self.spec.settings, quality=self.spec.quality,
                       on_progress=self._progress, should_cancel=self._stopping)
        try:
            result, setup = run_one(job, work)
        except (Cancelled, KeyboardInterrupt):  # nothing of this image was written
            return Outcome("cancelled")
        except SeesrError as exc:  # missing weights, models that do not load: every image would fail
            return Outcome("fatal", error=exc)
        return Outcome("done", result, setup)

    def _pipeline(self):
        if not self.prepared:
            prepare_weights(self.spec.source, self._weights)
            self.prepared = True
        return self.loader()

    def _stopping(self) -> bool:
        now = time.monotonic()
        if not self.stopping and now - self.checked >= CHECK_EVERY_S:
            self.checked = now
            try:
                self.stopping = ray.get(self.mailbox.stopped.remote())
            except RayError:  # the driver is gone: Ray ends this worker soon
                self.stopping = True
        return self.stopping

    def _send(self, kind: str, payload: Any) -> None:
        self.mailbox.put.remote(wrap(kind, self.key, payload))

    def _progress(self, event) -> None:
        stage, sent = self.last
        now = time.monotonic()
        if event.stage == stage and now - sent < SEND_EVERY_S and event.done < event.total:
            return
        self.last = (event.stage, now)
        self._send("progress", event)

    def _status(self, text: str) -> None:
        self._send("status", text)

    def _weights(self, event) -> None:
        self._send("weights", event)


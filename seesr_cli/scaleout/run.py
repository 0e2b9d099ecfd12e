"""A batch on Ray, once Ray is up (`nodes.start_ray`): prepare the nodes, start one worker per
slot, hand the jobs out (`dispatch`), and return the report a one-process run would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from seesr_cli.batch import RUN, BatchReport, Job
from seesr_cli.errors import InternalError
from seesr_cli.scaleout.devices import LOCAL, RayPlan, Slot, cluster_slots, local_slots, worker_load
from seesr_cli.scaleout.dispatch import ClusterObserver, Dispatcher
from seesr_cli.scaleout.mailbox import Mailbox, unwrap
from seesr_cli.scaleout.nodes import WeightsSource, setup_nodes
from seesr_cli.scaleout.worker import UpscaleWorker, WorkerSpec
from seesr_cli.settings import LoadOptions, UpscaleSettings


def plan_slots(plan: RayPlan) -> list[Slot]:
    """The workers for this Ray: the listed devices here, or one per GPU (else per node) of a cluster."""
    return local_slots(plan) if plan.address == LOCAL else cluster_slots(plan, ray.nodes())


def slot_nodes(slots: Sequence[Slot]) -> list[str]:
    """The nodes to prepare: the slots' own, or (a local Ray) every live node."""
    named = list(dict.fromkeys(slot.node for slot in slots if slot.node))
    return named or [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def start_workers(slots: Sequence[Slot], load: LoadOptions, source: WeightsSource, settings: UpscaleSettings,
                  quality: int, mailbox: str) -> list:
    handles = []
    for slot in slots:
        where = NodeAffinitySchedulingStrategy(slot.node, soft=True) if slot.node else "DEFAULT"
        spec = WorkerSpec(worker_load(load, slot), source, settings, quality, slot.threads, mailbox)
        handles.append(UpscaleWorker.options(**slot.resources, scheduling_strategy=where).remote(spec))
    return handles


def run_batch(plan: RayPlan, jobs: Sequence[Job], load: LoadOptions, source: WeightsSource,
              settings: UpscaleSettings, quality: int, *, observer: ClusterObserver,
              should_cancel: Callable[[], bool], setup_seconds: float = 0.0) -> BatchReport:
    """Every job on the workers of `plan`; `setup_seconds` (starting Ray) is counted as loading."""
    first = next((job for job in jobs if job.action == RUN), None)
    if first is None:
        raise InternalError("a batch with nothing to run does not start Ray")
    start = time.perf_counter()
    slots = plan_slots(plan)
    name = f"seesr-mailbox-{uuid.uuid4().hex[:12]}"
    mailbox = Mailbox.options(name=name).remote()
    nodes = slot_nodes(slots)
    kind = "GPU" if slots[0].device == "cuda" else "CPU"
    observer.notice(f"{len(slots)} {kind} worker{'s' if len(slots) > 1 else ''} on {len(nodes)} "
                    f"node{'s' if len(nodes) > 1 else ''}; preparing the weights")

    def weights_progress() -> None:
        for kind, _, event in map(unwrap, ray.get(mailbox.drain.remote())):
            if kind == "weights":
                observer.weights_event(event)

    # The workers start (import torch and the pipeline) meanwhile; they load nothing before their
    # node is prepared (the lock), and get no job before every node is checked.
    handles = start_workers(slots, load, source, settings, quality, name)
    setup_nodes(nodes, Path(first.output).absolute().parent, Path(first.input).absolute(), source,
                mailbox=name, should_cancel=should_cancel, poll=weights_progress)
    prepared = time.perf_counter() - start
    report = Dispatcher(jobs, handles, mailbox=mailbox, observer=observer, should_cancel=should_cancel).run()
    report.seconds += prepared + setup_seconds
    report.setup_seconds += prepared + setup_seconds
    return report

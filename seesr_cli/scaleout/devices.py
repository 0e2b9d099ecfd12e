"""Which workers a run asks Ray for: `--devices 0,1` / `--devices cpu,cpu` here, or `--ray ADDRESS`.

Pure: parses the options and turns a cluster's nodes into worker slots; imports no Ray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from seesr_cli.errors import UsageError
from seesr_cli.settings import LoadOptions

LOCAL = "local"  # ray.init(address="local"): always a private Ray, never one already running here


@dataclass(frozen=True)
class RayPlan:
    """Where the workers run. `count`/`gpu` None: decided from the cluster's nodes (`--ray`)."""

    address: str  # LOCAL, "auto" or HOST:PORT
    gpu: bool | None  # GPU workers (one GPU each) or CPU workers; None: GPUs if the cluster has any
    count: int | None = None  # workers of a local Ray
    visible: str | None = None  # CUDA_VISIBLE_DEVICES of a local Ray with GPUs
    cpus: int = 1  # CPUs (and torch threads) of each local worker


@dataclass(frozen=True)
class Slot:
    """One worker: its Ray resources, where it may go, its device and its torch thread count."""

    resources: dict[str, Any]  # num_cpus / num_gpus for .options()
    device: str  # "cpu" or "cuda" (its one GPU: CUDA_VISIBLE_DEVICES is set by Ray)
    threads: int
    node: str | None = None  # preferred node (CPU workers of a cluster: one per node)


def cpu_budget() -> int:
    """The CPUs one process here would use: OMP_NUM_THREADS when set (as torch reads it), else the
    CPUs this process may run on."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        value = 0
    if value > 0:
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_ray(devices: str | None, ray: str | None, device: str = "auto", *, gpus: int | None = None,
             visible: str | None = None, cpus: int | None = None) -> RayPlan:
    """`--devices LIST` (a private Ray here) or `--ray ADDRESS` (a running cluster), checked against --device.

    `gpus`: the CUDA devices here (checked when GPU numbers are listed); `visible`: this process's
    CUDA_VISIBLE_DEVICES, so that `--devices 1` means what `--device cuda:1` means here."""
    if devices is not None and ray is not None:
        raise UsageError("--devices starts a private Ray on this machine and --ray uses a running cluster: "
                         "give one of them")
    if ray is not None:
        return _plan_cluster(ray.strip(), device)
    return _plan_local(devices or "", device, gpus=gpus, visible=visible, cpus=cpus or cpu_budget())


def _plan_cluster(address: str, device: str) -> RayPlan:
    if not address:
        raise UsageError("--ray: give `auto` or the cluster's HOST:PORT")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--ray runs on the cluster's GPUs or CPUs, not on --device {device}: "
                         "use --device auto, cuda or cpu")
    return RayPlan(address, {"auto": None, "cpu": False, "cuda": True}[device])


def _plan_local(spec: str, device: str, *, gpus: int | None, visible: str | None, cpus: int) -> RayPlan:
    items = [item.strip().lower().removeprefix("cuda:") for item in spec.split(",") if item.strip()]
    if items and all(item == "cpu" for item in items):
        if device not in ("auto", "cpu"):
            raise UsageError(f"--devices {spec} runs on the CPU, but --device is {device}")
        return RayPlan(LOCAL, False, len(items), None, max(1, cpus // len(items)))
    if not items or not all(item.isdigit() for item in items):
        raise UsageError(f"--devices {spec}: give GPU numbers (0,1,2,3) or cpu,cpu, not a mix")
    if len(set(items)) != len(items):
        raise UsageError(f"--devices {spec}: name each GPU once")
    if device not in ("auto", "cuda"):
        raise UsageError(f"--devices {spec} runs on GPUs, but --device is {device}")
    if gpus is not None and max(map(int, items)) >= gpus:
        raise UsageError(f"--devices {spec}: only {gpus} CUDA device(s) here")
    names = visible.split(",") if visible else None  # keep cuda:N meaning what it means here
    ids = [names[int(i)] if names and int(i) < len(names) else i for i in items]
    return RayPlan(LOCAL, True, len(ids), ",".join(ids), max(1, cpus // len(ids)))


def local_slots(plan: RayPlan) -> list[Slot]:
    """The workers of a private Ray: one per listed device, each with its share of the CPUs."""
    gpu = {"num_gpus": 1} if plan.gpu else {}
    return [Slot({"num_cpus": plan.cpus, **gpu}, "cuda" if plan.gpu else "cpu", plan.cpus)] * (plan.count or 0)


def cluster_slots(plan: RayPlan, nodes: list[dict]) -> list[Slot]:
    """The workers of a running cluster (`nodes`: ray.nodes()): one per GPU; without GPUs (or with
    --device cpu) one per node, taking all of its CPUs."""
    alive = [n for n in nodes if n.get("Alive")]
    gpus = {n["NodeID"]: int(n["Resources"].get("GPU", 0)) for n in alive}
    want_gpu = plan.gpu if plan.gpu is not None else sum(gpus.values()) > 0
    if want_gpu:
        if not sum(gpus.values()):
            raise UsageError("--device cuda: the Ray cluster has no GPUs (use --device cpu)")
        slots = []
        for node in alive:
            count = gpus[node["NodeID"]]
            cpus = max(1, int(node["Resources"].get("CPU", 0)) // max(count, 1))
            slots += [Slot({"num_cpus": cpus, "num_gpus": 1}, "cuda", cpus, node["NodeID"])] * count
        return slots
    cpu_nodes = [n for n in alive if int(n["Resources"].get("CPU", 0)) >= 1]
    if not cpu_nodes:
        raise UsageError("the Ray cluster has no node with a CPU to run on")
    return [Slot({"num_cpus": int(n["Resources"]["CPU"])}, "cpu", int(n["Resources"]["CPU"]), n["NodeID"])
            for n in cpu_nodes]


def worker_load(load: LoadOptions, slot: Slot) -> LoadOptions:
    """A worker's load options: its device kind ("cuda" is its one GPU)."""
    return replace(load, device=slot.device)

"""Ray up, and every node ready before a worker loads anything.

`start_ray` starts a private Ray here (`--devices`) or joins a running cluster (`--ray`), quietly.
`setup_nodes` runs one task pinned to each node that will hold workers: it checks that the node
sees the driver's inputs and outputs (a token file written by the driver, answered by the node:
both directions of a shared file system) and prepares the weights there (`prepare_weights`:
resolve, verify, convert, under a file lock in the cache folder), so the workers of one node
share that work instead of converting N times or writing the cache concurrently.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import seesr_cli
from seesr_cli import DOCS_URL
from seesr_cli.errors import Cancelled, SeesrError, one_line
from seesr_cli.scaleout.devices import LOCAL, RayPlan
from seesr_cli.scaleout.mailbox import wrap
from seesr_cli.weights import Progress, cache_dirs, resolve_weights

_LOCK = ".seesr-prepare.lock"
_QUIET = {"log_to_driver": False, "logging_level": logging.ERROR}  # workers' output stays in Ray's logs


@dataclass(frozen=True)
class WeightsSource:
    """What a node prepares and its workers load: the options of `PipelineLoader`."""

    turbo: bool = False
    weights_dir: Path | None = None
    sd2_repo: str | None = None
    accept_local: bool = False  # --accept-local-weights


def start_ray(plan: RayPlan) -> Path | None:
    """A private Ray here (never one already running: address="local") or the cluster at plan.address.
    Returns the private Ray's session folder (its logs), None for a cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if plan.address == LOCAL:
        # Ray starts its workers at nice 15; ours are the run itself, as a one-process run at nice 0.
        os.environ.setdefault("RAY_worker_niceness", "0")
        if plan.visible is not None:  # Ray hands each GPU worker one of exactly these
            os.environ["CUDA_VISIBLE_DEVICES"] = plan.visible
        context = ray.init(address=LOCAL, num_cpus=plan.cpus * (plan.count or 1),
                           num_gpus=plan.count if plan.gpu else 0, include_dashboard=False, **_QUIET)
        session = context.address_info.get("session_dir")
        return Path(session) if session else None
    try:
        _reachable(plan.address)
        ray.init(address=plan.address, **_QUIET)
    except (OSError, RuntimeError, ValueError) as exc:  # refused, timed out, unknown host; Ray's own
        hint = "start one with `ray start --head`, or give its HOST:PORT" if plan.address == "auto" else \
            "is `ray start` running there, and is its port reachable from here?"
        raise SeesrError(f"--ray {plan.address}: cannot join the Ray cluster ({one_line(exc)}); {hint}") from exc
    return None


def _reachable(address: str, timeout: float = 10.0) -> None:
    """Raise ConnectionError at once for a HOST:PORT nobody answers on (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def prepare_weights(source: WeightsSource, progress: Progress | None = None) -> int:
    """Resolve, verify and convert the weights, one process per cache folder at a time; a no-op
    once done. Returns how many conversions this call ran (0 when another process had done them)."""
    converted = []

    def seen(event) -> None:
        if event.stage == "convert" and event.done == 0:
            converted.append(event.key)
        if progress is not None:
            progress(event)

    def resolve() -> None:
        resolve_weights(weights_dir=source.weights_dir, turbo=source.turbo, sd2_repo=source.sd2_repo,
                        progress=seen, accept_local=source.accept_local)

    from filelock import FileLock

    derived = cache_dirs().derived
    try:
        derived.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(derived / _LOCK))
        lock.acquire()
    except OSError:  # a read-only cache: nothing will be written to it, so nothing to serialise
        resolve()
        return len(converted)
    try:
        resolve()
    finally:
        lock.release()
    return len(converted)


@dataclass(frozen=True)
class Probe:
    """What a node must see: the driver's token in an output folder, and an input file."""

    folder: str
    token: str
    input: str


def _token_file(folder: str, token: str, node: str = "") -> Path:
    return Path(folder) / (f".seesr-ray-{token}" + (f"-{node[:12]}" if node else ""))


@ray.remote(num_cpus=0, max_retries=0)
def _setup_node(probe: Probe, source: WeightsSource, mailbox: str | None) -> dict:
    """On one node: answer the driver's token, find the input, prepare the weights."""
    node = ray.get_runtime_context().get_node_id()
    info = {"node": node, "host": socket.gethostname(), "version": seesr_cli.__version__, "converted": 0,
            "seconds": 0.0, "input": os.path.isfile(probe.input), "error": None}
    try:
        info["seen"] = _token_file(probe.folder, probe.token).read_text()
    except OSError as exc:
        info["seen"] = f"<{exc.strerror or type(exc).__name__}>"
    if info["seen"] == probe.token:
        _token_file(probe.folder, probe.token, node).write_text(probe.token)
    if info["seen"] != probe.token or not info["input"]:
        return info
    forward = None
    if mailbox is not None:
        handle = ray.get_actor(mailbox)
        forward = lambda event: handle.put.remote(wrap("weights", None, event))
    start = time.perf_counter()
    try:
        info["converted"] = prepare_weights(source, forward)
    except SeesrError as exc:  # WeightsError and co.: the driver raises it
        info["error"] = exc
    info["seconds"] = time.perf_counter() - start
    return info


def setup_nodes(node_ids: list[str], probe_dir: Path, probe_input: Path, source: WeightsSource, *,
                mailbox: str | None = None, should_cancel: Callable[[], bool] = lambda: False,
                poll: Callable[[], None] = lambda: None) -> list[dict]:
    """Run `_setup_node` on each node; raise a clear error (before any job) if one cannot see the
    files, runs another seesr-cli, or cannot get the weights. Returns each node's report.
    `poll` runs every fraction of a second meanwhile (to show the weights' progress)."""
    token = uuid.uuid4().hex
    made = not probe_dir.exists()
    probe_dir.mkdir(parents=True, exist_ok=True)
    mine = _token_file(str(probe_dir), token)
    mine.write_text(token)
    ok = False
    probe = Probe(str(probe_dir), token, str(probe_input))
    refs = [_setup_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(probe, source, mailbox) for node in node_ids]
    try:
        while True:
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=0.2)
            poll()
            if not pending:
                break
            if should_cancel():
                raise Cancelled("interrupted while preparing the nodes")
        infos = ray.get(refs)
        for info in infos:
            check_node(info, probe, answered=_token_file(str(probe_dir), token, info["node"]).is_file(),
                       several=len(node_ids) > 1)
        ok = True
    finally:
        for path in [mine, *(_token_file(str(probe_dir), token, n) for n in node_ids)]:
            path.unlink(missing_ok=True)
        if made and not ok and not any(probe_dir.iterdir()):
            probe_dir.rmdir()  # a run that stops here leaves no trace
    return infos


def check_node(info: dict, probe: Probe, *, answered: bool, several: bool = True) -> None:
    """Raise the error of a node that cannot take part (`answered`: the driver sees its token file)."""
    where = f"node {info['host']} ({info['node'][:12]})"
    if info["version"] != seesr_cli.__version__:
        raise SeesrError(f"{where} runs seesr-cli {info['version']}, this machine {seesr_cli.__version__}: "
                         "install the same version on every node")
    if info["seen"] != probe.token or not answered:
        seen = "a file it cannot have written" if info["seen"] == probe.token else info["seen"]
        raise SeesrError(f"{probe.folder} is not the same folder on {where} (it reads {seen}): inputs and outputs "
                         f"must be on a file system every node mounts at the same path ({DOCS_URL}); nothing was run")
    if not info["input"]:
        raise SeesrError(f"{where} does not see the input {probe.input}: inputs and outputs must be on a "
                         f"file system every node mounts at the same path ({DOCS_URL}); nothing was run")
    if info["error"] is not None:
        error = info["error"]
        if several:  # the same message as one process, and the node it came from
            error.args = (f"on {where}: {error}",)
        raise error

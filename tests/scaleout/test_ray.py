"""One batch on Ray's workers (`seesr upscale --devices` / `--ray`), end to end on the CPU with the
tiny models of the fake Hugging Face cache (tests/fakehub.py).

Every Ray start and every worker process costs seconds on a small machine, so the module holds
one two-node cluster (`ray.cluster_utils.Cluster`, 1 CPU per node, each node its own HF_HOME),
and the command runs twice: a `--devices cpu` run (its own private Ray) stopped by Ctrl-C,
then its rerun on the cluster (`--ray auto`) that loses a worker. This process also joins the
cluster as a driver, for the dispatcher (with stand-in workers) and the weights lock. Each worker
runs one torch thread, as the one-process baseline does, so the bytes must be equal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from seesr_cli.batch import FAILED, OK, RUN, Job, JobResult
from seesr_cli.cli import app

ray = pytest.importorskip("ray")

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "2", "--scale", "2", "--process-size", "64", "--device", "cpu"]
HF_VARS = ("HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "SEESR_SOURCES")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds Ray's workers in /proc")


# ----------------------------------------------------------------------------- helpers


def noisy_png(path: Path, seed: int, size=(40, 24)) -> None:
    """Per-pixel noise: any change in the arithmetic (thread count, order) shows in the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def seesr(*args, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seesr_cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


REPORT = ("seesr-report.html", ".seesr-report")  # the batch report: about the run, not an image


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name not in REPORT)


def same_bytes(a: Path, b: Path) -> bool:
    names = [p.name for p in images(a)]
    return names == [p.name for p in images(b)] and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def busy_worker() -> int | None:
    """The pid of one of our cluster's workers that is running a job (Ray titles it so)."""
    for pid in descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::UpscaleWorker.run"):
            return pid
    return None


def stray_lines(stderr: str, allowed: list[str]) -> list[str]:
    """Lines of stderr that none of our own line shapes explains (Ray's noise would)."""
    return [line for line in stderr.splitlines() if line.strip() and not any(re.match(p, line) for p in allowed)]


OUR_LINES = [r"starting Ray$", r"joining the Ray cluster at ", r"\d CPU workers? on \d nodes?; preparing the weights$",
             r"\[\d+/\d+\] (ok|skipped) ", r"(verifying|converting) \w+ \.\.\.$", r"error: ", r"worker \d \(pid \d+ on .*\) died while on ",
             r"seesr: \d+ upscaled", r"interrupted", r"report: ", r"stopping after the current step", r"\s*$",
             r" ?[━┃│─╇]|\s+input\s+┃| \S+ +│ "]  # the summary table


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(fake_hub, tmp_path_factory) -> dict:
    """A driver's environment: offline against the fake cache, the checkout importable, one thread."""
    home = tmp_path_factory.mktemp("ray-home")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    return {**fake_hub.environ(home, base), "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def baseline(env, tmp_path_factory) -> Path:
    """Six noisy images and their upscales by ONE process with one torch thread."""
    import torch

    root = tmp_path_factory.mktemp("ray")
    for i in range(6):
        noisy_png(root / "in" / f"img{i}.png", seed=i)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        for name in HF_VARS + ("SEESR_SOURCES",):
            patch.setenv(name, env[name])
        patch.chdir(root)
        result = CliRunner().invoke(app, ["upscale", "in", "-o", "one", *FAST], catch_exceptions=False)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def cluster(env, tmp_path_factory):
    """Two Ray nodes on this machine, 1 CPU each, each with its own HF_HOME (derived weights)."""
    from ray.cluster_utils import Cluster

    def node_env(name: str) -> dict:
        return {**{k: env[k] for k in HF_VARS}, "HF_HOME": str(tmp_path_factory.mktemp(name)),
                "PYTHONPATH": env["PYTHONPATH"], "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_worker_niceness": "0"}  # as the private Ray of --devices (Ray's default: 15)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "env_vars": node_env("head-home")})
    session = cluster.head_node.get_session_dir_path()
    try:
        cluster.add_node(num_cpus=1, env_vars=node_env("node-home"))
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(session, ignore_errors=True)  # this test's own Ray logs (Ray keeps them)


@pytest.fixture(scope="module")
def driver(cluster):
    """This process as one more driver of the cluster (the CLI runs are others)."""
    import logging

    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    yield cluster
    ray.shutdown()


# ----------------------------------------------------------------------------- the command


def test_devices_ctrl_c_then_a_two_node_rerun_that_loses_a_worker(baseline, env, cluster):
    """One batch over two commands (every Ray start and worker costs seconds):
    1. `--devices cpu` (one worker, a private Ray here); SIGINT to the driver after the first
       image: the running image stops at its next step, nothing is half-written, exit 130;
    2. the rerun with two workers on the two-node cluster (`--ray auto`, RAY_ADDRESS) skips what is
       done; one worker process is SIGKILLed during its first image, which is redone elsewhere:
       exit 0, every input reported once, stdout clean JSON, nothing of Ray's on stderr.
    Every output, from the 1-worker and the 2-worker run (one torch thread each), has the same
    bytes as the one-process run's."""
    args = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", "ray", *FAST]
    proc = subprocess.Popen([*args, "--devices", "cpu"], env=env, cwd=baseline, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((baseline / "ray").glob("img*.png")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert time.monotonic() - signalled < 30
    assert "starting Ray" in stderr and "1 CPU worker on 1 node; preparing the weights" in stderr
    assert "stopping after the current step; the image in progress is not written (Ctrl-C again to stop now)" in stderr
    assert re.search(r"interrupted after \d of 6 images: re-run the same command to resume", stderr), stderr
    assert not stray_lines(stderr, OUR_LINES), stderr
    before = {p.name: p.stat().st_mtime_ns for p in images(baseline / "ray")}
    assert 1 <= len(before) < 6 and all(name.startswith("img") for name in before)  # no temp, no token left

    proc = subprocess.Popen([*args, "--json", "--ray", "auto"], env={**env, "RAY_ADDRESS": cluster.address},
                            cwd=baseline, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            killed = busy_worker()
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no worker ever ran an image: " + stderr
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    statuses = {Path(r["input"]).name: r["status"] for r in report["images"]}  # each input once
    assert statuses == {f"img{i}.png": "skipped" if f"img{i}.png" in before else "ok" for i in range(6)}
    assert report["exit_code"] == 0 and report["load_seconds"] > 0
    assert "joining the Ray cluster at auto" in stderr and "2 CPU workers on 2 nodes" in stderr
    [died] = [line for line in stderr.splitlines() if " died while on " in line]
    assert f"(pid {killed} on " in died and "goes to the next free worker (try 2 of 3)" in died
    assert not stray_lines(stderr, OUR_LINES), stderr
    after = {p.name: p.stat().st_mtime_ns for p in images(baseline / "ray")}
    assert {name: after[name] for name in before} == before  # nothing redone
    assert same_bytes(baseline / "one", baseline / "ray")
    assert not [p for p in baseline.rglob("*") if ".tmp" in p.name or ".seesr-ray" in p.name]


# ----------------------------------------------------------------------------- the dispatcher and the nodes, in here


class Recorder:
    """A ClusterObserver that keeps what it is told."""

    def __init__(self):
        self.finished: list[JobResult] = []
        self.notices: list[str] = []
        self.problems: list[str] = []

    def job_started(self, job, index, total): pass

    def job_finished(self, result, index, total): self.finished.append(result)

    def image_event(self, job, event): pass

    def image_status(self, job, text): pass

    def weights_event(self, event): pass

    def notice(self, text): self.notices.append(text)

    def problem(self, subject, cause): self.problems.append(f"{subject}: {cause}")


MAILBOX = "seesr-test-mailbox"


@pytest.fixture(scope="module")
def mailbox(driver):
    from seesr_cli.scaleout.mailbox import Mailbox

    box = Mailbox.options(name=MAILBOX).remote()
    yield box
    ray.kill(box)


@pytest.fixture(scope="module")
def fakes(mailbox):
    """Two stand-in workers (no models): poison.png kills its worker process, long.png runs in 50 ms
    steps until the driver stops, any other image takes one step."""
    from seesr_cli.scaleout.worker import Outcome

    @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
    class Fake:
        def ping(self):
            return {"pid": os.getpid(), "host": "here"}

        def run(self, job, key):
            if job.rel == "poison.png":
                os.kill(os.getpid(), signal.SIGKILL)
            for _ in range(600 if job.rel == "long.png" else 1):
                if job.rel == "long.png" and ray.get(ray.get_actor(MAILBOX).stopped.remote()):
                    return Outcome("cancelled")
                time.sleep(0.05)
            return Outcome("done", JobResult(job, OK, seconds=0.05), 0.0)

    workers = [Fake.remote() for _ in range(2)]
    yield workers
    for worker in workers:
        ray.kill(worker)


def jobs_named(folder: Path, *names: str) -> list[Job]:
    return [Job(Path(n), n, folder / n, "png", 0, RUN) for n in names]


def test_an_image_that_kills_its_worker_is_tried_three_times(fakes, mailbox, tmp_path):
    """Workers that die on one image (every time) and run the others: that image fails after 3
    tries with a one-line cause, every other image is done, the run ends."""
    from seesr_cli.scaleout.dispatch import Dispatcher

    names = ["a.png", "b.png", "poison.png", "c.png", "d.png"]
    seen = Recorder()
    report = Dispatcher(jobs_named(tmp_path, *names), fakes, mailbox=mailbox, observer=seen,
                        should_cancel=lambda: False).run()
    assert [r.job.rel for r in report.results] == names
    told = (seen.notices, seen.problems, [r.error for r in report.results])
    assert [r.status for r in report.results] == [OK, OK, FAILED, OK, OK] and report.exit_code == 1, told
    cause = report.results[2].error
    assert cause.startswith("its worker died each of the 3 times it ran it (killed, crashed, out of memory or its "
                            "node left; Ray: Actor") and "\n" not in cause
    died = [n for n in seen.notices if " died while on " in n]  # (a very slow restart adds a "no worker ready")
    assert len(died) == 2 and all("died while on poison.png" in n for n in died)


def test_ctrl_c_cancels_the_running_jobs_at_their_next_step(fakes, mailbox, tmp_path):
    """The first Ctrl-C: no job handed out any more; a running job sees the stop flag between its
    steps and stops; the report is interrupted and lists every image that finished."""
    from seesr_cli.scaleout.dispatch import Dispatcher

    names = ["long.png", "a.png", "b.png", "c.png", "d.png", "e.png"]
    seen = Recorder()
    start = time.monotonic()
    report = Dispatcher(jobs_named(tmp_path, *names), fakes, mailbox=mailbox, observer=seen,
                        should_cancel=lambda: len(seen.finished) >= 1).run()  # Ctrl-C once an image is done
    assert time.monotonic() - start < 15  # not the 30 s of the long job
    assert report.interrupted and report.exit_code == 130
    assert "long.png" not in [r.job.rel for r in report.results] and 1 <= len(report.results) < 6


def test_workers_that_cannot_start_leave_the_images_failed_with_the_cause(driver, tmp_path):
    """A worker whose start fails on its node (say seesr-cli is missing there): no hang, every
    image reported not done with the worker's own error, exit 1."""
    from seesr_cli.scaleout.dispatch import Dispatcher
    from seesr_cli.scaleout.mailbox import Mailbox

    @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
    class Broken:
        def __init__(self):
            raise ModuleNotFoundError("No module named 'seesr_cli'")

        def ping(self):
            return {}

    seen, box = Recorder(), Mailbox.remote()
    try:
        report = Dispatcher(jobs_named(tmp_path, "a.png", "b.png"), [Broken.remote()], mailbox=box, observer=seen,
                            should_cancel=lambda: False).run()
    finally:
        ray.kill(box)
    cause = "ModuleNotFoundError: No module named 'seesr_cli'"
    assert [(r.status, r.error) for r in report.results] == [(FAILED, f"not done: no worker left ({cause})")] * 2
    assert seen.problems == [f"worker 1: gone: {cause}",
                             f"workers: none left ({cause}); 2 images not done (re-run to resume)"]


def test_weights_are_prepared_once_per_cache(driver, tmp_path):
    """Workers preparing at once, two of them on one node: one conversion per node cache; with one
    cache shared by both nodes (a network home), one conversion in all; nobody else writes it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from seesr_cli.scaleout.nodes import WeightsSource, prepare_weights

    @ray.remote(num_cpus=0)
    def prepare(assets: str) -> int:
        old = os.environ.get("HF_ASSETS_CACHE")
        os.environ["HF_ASSETS_CACHE"] = assets
        try:
            return prepare_weights(WeightsSource())
        finally:
            os.environ.pop("HF_ASSETS_CACHE") if old is None else os.environ.update(HF_ASSETS_CACHE=old)

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2

    def on(node):
        return prepare.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))

    two_on_one = [nodes[0], nodes[0], nodes[1]]  # (each task a worker process importing torch: 3, not 4)
    own = {node: str(tmp_path / f"assets-{k}") for k, node in enumerate(nodes)}
    assert sorted(ray.get([on(n).remote(own[n]) for n in two_on_one])) == [0, 1, 1]
    shared = str(tmp_path / "assets-shared")
    assert sorted(ray.get([on(n).remote(shared) for n in two_on_one])) == [0, 0, 1]
    for folder in [*own.values(), shared]:
        assert len(list(Path(folder, "seesr-cli").glob("dape-*.safetensors"))) == 1
        assert not list(Path(folder, "seesr-cli").glob(".*.tmp-*"))

"""Several processes, one batch (seesr_cli/distributed.py).

End to end on the CPU with 2 gloo processes and the tiny models of the fake Hub cache
(tests/fakehub.py), through both real entry paths: `seesr upscale --devices cpu,cpu` and
`accelerate launch --multi_gpu --num_processes 2 -m seesr_cli upscale` (torchrun; accelerate's
`--cpu` flag alone starts a single process). Then the store protocol between the processes in
threads of this process (fast), and the pure parts: --devices, relaunch arguments, exit codes.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import typer.main
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from seesr_cli.batch import FAILED, OK, RUN, Job, WorkDone, shard_jobs
from seesr_cli.cli import app
from seesr_cli.cli.signals import cancel_on_signals
from seesr_cli.cli.upscale import relaunch_args
from seesr_cli.scaleout.launch import combined_exit, parse_devices
from seesr_cli.scaleout.shared import HelperBatch, MainBatch
from seesr_cli.scaleout.team import Liveness, Team, plan_fingerprint
from seesr_cli.errors import InputImageError, UsageError, WeightsError
from seesr_cli.cli.progress import BatchProgress

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "2", "--scale", "2", "--process-size", "64", "--device", "cpu"]
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds a rank's pid in /proc")


# ----------------------------------------------------------------------------- helpers


def rgb_png(path: Path, seed: int, size=(24, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 4 + 1, size[0] // 4 + 1, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.BILINEAR).save(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def env(fake_hub, tmp_path_factory) -> dict:
    """A subprocess environment: offline against the fake cache, the checkout importable, one thread."""
    home = tmp_path_factory.mktemp("dist-home")
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    return {**fake_hub.environ(home, base), "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def baseline(env, tmp_path_factory):
    """Six images and their upscales by ONE process (in-process, one thread, as the children run)."""
    import torch

    root = tmp_path_factory.mktemp("dist")
    for i in range(6):
        rgb_png(root / "in" / f"img{i}.png", seed=i)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "SEESR_SOURCES"):
            patch.setenv(name, env[name])
        patch.chdir(root)
        result = CliRunner().invoke(app, ["upscale", "in", "-o", "one", *FAST], catch_exceptions=False)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return root


def seesr(*args, env: dict, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seesr_cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def same_bytes(a: Path, b: Path) -> bool:
    """The same files with the same pixels and metadata, but for `seesr:run`'s timings (seconds differ)."""
    from seesr_cli.io import read_metadata

    def content(path: Path):
        with Image.open(path) as im:
            meta = read_metadata(path)
            run = json.loads(meta.get("seesr:run", "{}"))
            run.pop("timings", None)
            return np.asarray(im).tobytes(), {**meta, "seesr:run": run}

    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(content(a / n) == content(b / n) for n in names)


def summaries(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("seesr: ")]


def rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the child of `parent` started with RANK=`rank`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if ppid == parent else []
        except (OSError, IndexError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


# ----------------------------------------------------------------------------- end to end, 2 CPU processes


def test_devices_cpu_cpu_matches_one_process(baseline, env):
    """`--devices cpu,cpu`: the same bytes as one process, every input once, one summary, exit 1
    for the one bad input (the last job: the second process meets it, the main one reports it)."""
    (baseline / "zero.png").write_bytes(b"")
    done = seesr("upscale", "in", "zero.png", "-o", "two", "--json", "--devices", "cpu,cpu", *FAST,
                 env=env, cwd=baseline)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    inputs = [Path(r["input"]).as_posix() for r in report["images"]]
    assert sorted(inputs) == sorted([f"in/img{i}.png" for i in range(6)] + ["zero.png"])  # each once
    statuses = {Path(r["input"]).name: r["status"] for r in report["images"]}
    assert statuses == {**{f"img{i}.png": "ok" for i in range(6)}, "zero.png": "failed"}
    assert report["exit_code"] == 1 and not report["interrupted"]
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        "error: zero.png: file is empty (0 bytes)"]
    finished = re.findall(r"^\[\d+/7\] ok (\S+) ->", done.stderr, re.M)  # both processes' images, drawn by one
    assert sorted(finished) == sorted(str(Path(f"in/img{i}.png")) for i in range(6))
    assert summaries(done.stderr) == [summaries(done.stderr)[0]] and "6 upscaled, 0 skipped, 1 failed" in done.stderr
    assert same_bytes(baseline / "one", baseline / "two")
    assert not [p for p in baseline.rglob("*") if ".tmp" in p.name]


def test_accelerate_launch_two_processes(baseline, env):
    """`accelerate launch -m seesr_cli upscale` (torchrun, gloo): the same bytes, one report."""
    command = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "seesr_cli", "upscale", "in", "-o", "acc", "--json",
               *FAST]
    done = subprocess.run(command, env=env, cwd=baseline, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [Path(r["input"]).name for r in report["images"]] == [f"img{i}.png" for i in range(6)]
    assert [r["status"] for r in report["images"]] == ["ok"] * 6
    assert len(summaries(done.stderr)) == 1 and len(re.findall(r"^\[\d/6\] ok ", done.stderr, re.M)) == 6
    assert same_bytes(baseline / "one", baseline / "acc")


@needs_proc
def test_killed_process_is_reported_and_a_rerun_resumes(env, tmp_path):
    """SIGKILL the second process after its first image: the main one finishes its share, names
    the lost process and its images, exits 1 (no hang). A rerun does only what is missing."""
    for i in range(6):
        rgb_png(tmp_path / "in" / f"img{i}.png", seed=10 + i, size=(48, 32))
    args = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", "out", "--devices", "cpu,cpu", *FAST,
            "--steps", "6"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 150
        while not (tmp_path / "out" / "img3.png").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)  # img3..img5 are the second process's share
        pid = rank_pid(proc.pid, 1)
        assert pid is not None, "the second process is not running"
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    [lost] = [line for line in stderr.splitlines() if line.startswith("error: process 1:")]
    assert f"pid {pid}" in lost and "not done (re-run to resume)" in lost
    assert len(summaries(stdout)) == 1 and "Traceback" not in stderr  # the summary: on stdout without --json
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert {"img0.png", "img1.png", "img2.png", "img3.png"} <= set(before) and len(before) < 6

    rerun = subprocess.run([*args, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in json.loads(rerun.stdout)["images"]}
    assert statuses == {f"img{i}.png": "skipped" if f"img{i}.png" in before else "ok" for i in range(6)}
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert sorted(after) == [f"img{i}.png" for i in range(6)]
    assert {name: after[name] for name in before} == before  # nothing redone
    for name in after:
        with Image.open(tmp_path / "out" / name) as im:
            im.load()
            assert im.size == (96, 64)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


# ----------------------------------------------------------------------------- the protocol, in threads


@pytest.fixture
def store():
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def make_team(store, rank: int, world: int = 2, single_machine: bool = True) -> Team:
    import torch.distributed as dist

    def connect():
        return dist.PrefixStore("seesr/0/", dist.TCPStore("127.0.0.1", store.port, is_master=False,
                                                           wait_for_workers=False))

    return Team(rank, world, connect(), connect, single_machine)


def fake_jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(Path(f"in/{i}.png"), f"{i}.png", tmp_path / "out" / f"{i}.png", "png", i, RUN) for i in range(n)]


def plain_view(quiet: bool = False) -> BatchProgress:
    return BatchProgress(Console(file=io.StringIO(), width=300), quiet=quiet)


def run_pair(jobs, store, helper_work, main_work=lambda job: WorkDone()):
    """Rank 1 in a thread, rank 0 here: (combined report, main's stderr text)."""
    helper = HelperBatch(jobs, make_team(store, 1), plain_view(quiet=True))
    thread = threading.Thread(target=helper.run, args=(helper_work, lambda: False))
    thread.start()
    view = plain_view()
    with view:
        view.start(jobs)
        report = MainBatch(jobs, make_team(store, 0), view).run(main_work, lambda: False)
    thread.join(timeout=30)
    return report, view.console.file.getvalue()


def test_results_of_every_process_are_combined_in_plan_order(store, tmp_path):
    jobs = fake_jobs(tmp_path, 5)  # shares: [0, 1, 2] here, [3, 4] in the helper

    def helper_work(job):
        if job.rel == "3.png":
            raise InputImageError(job.input, "truncated or corrupt image data")
        return WorkDone(prompts=(f"tags of {job.rel}",))

    report, text = run_pair(jobs, store, helper_work)
    assert [r.job for r in report.results] == jobs
    assert [r.status for r in report.results] == [OK, OK, OK, FAILED, OK]
    assert report.results[4].prompts == ("tags of 4.png",) and report.exit_code == 1
    lines = text.splitlines()
    assert lines.count(f"error: {Path('in/3.png')}: truncated or corrupt image data") == 1
    numbers = re.findall(r"^\[(\d)/5\] ok ", text, re.M)  # the four done images, numbered as they came
    assert len(numbers) == len(set(numbers)) == 4 and set(numbers) <= set("12345")


def test_a_fatal_error_in_another_process_is_reported_with_its_images(store, tmp_path):
    jobs = fake_jobs(tmp_path, 4)

    def helper_work(job):
        raise WeightsError("missing weights: unet")

    report, text = run_pair(jobs, store, helper_work)
    assert [r.status for r in report.results] == [OK, OK, FAILED, FAILED]
    assert "process 1 stopped (missing weights: unet)" in report.results[3].error
    assert "error: process 1: missing weights: unet; 2 of its 2 images not done (re-run to resume)" in text


def test_a_lost_process_does_not_hang_the_main_one(store, tmp_path):
    """Rank 1 said hello and died (its pid is gone): the main process reports it at once."""
    jobs = fake_jobs(tmp_path, 3)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    make_team(store, 1).store.set("hello/1", json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                         "plan": plan_fingerprint(jobs), "jobs": 3}))
    view = plain_view()
    start = time.monotonic()
    report = MainBatch(jobs, make_team(store, 0), view).run(lambda job: WorkDone(), lambda: False)
    assert time.monotonic() - start < 10
    assert [r.status for r in report.results] == [OK, OK, FAILED]
    assert f"its process (pid {dead.pid}) ended; 1 of its 1 images not done" in view.console.file.getvalue()


def test_different_plans_are_refused(store, tmp_path):
    jobs = fake_jobs(tmp_path, 3)
    make_team(store, 1).store.set("hello/1", json.dumps({"pid": os.getpid(), "host": "elsewhere",
                                                         "plan": plan_fingerprint(jobs[:2]), "jobs": 2}))
    with pytest.raises(UsageError, match="process 1 on elsewhere planned another batch"):
        make_team(store, 0).handshake(jobs)


def test_a_silent_heartbeat_on_another_machine_means_lost(store):
    now = [0.0]
    team = make_team(store, 0, single_machine=False)
    beats = make_team(store, 1).store
    watch = Liveness(team, [{}, {"pid": os.getpid()}], clock=lambda: now[0], lost_after=60)
    beats.add("beat/1", 1)
    assert watch.lost(1) is None
    now[0] = 59
    assert watch.lost(1) is None
    beats.add("beat/1", 1)
    now[0] = 100
    assert watch.lost(1) is None  # it beat since: 41 s of silence so far
    now[0] = 161
    assert watch.lost(1) == "no sign of life for 60 s"


# ----------------------------------------------------------------------------- pure parts


def test_shares_cover_every_job_once():
    for n in range(12):
        for world in (1, 2, 3, 5):
            shares = [shard_jobs(range(n), rank, world) for rank in range(world)]
            assert [i for share in shares for i in share] == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_parse_devices():
    assert parse_devices("cpu,cpu") == parse_devices("cpu, cpu", "cpu")
    assert parse_devices("cpu,cpu").count == 2 and parse_devices("cpu,cpu").visible is None
    plan = parse_devices("0,1,3", gpus=4)
    assert (plan.count, plan.device, plan.visible) == (3, "auto", "0,1,3")
    assert parse_devices("cuda:1,0", "cuda", gpus=2, visible="6,7").visible == "7,6"  # as cuda:N counts them
    for spec, device, message in [("0,cpu", "auto", "not a mix"), ("", "auto", "GPU numbers"),
                                  ("0,0", "auto", "each GPU once"), ("0,1", "cpu", "--device is cpu"),
                                  ("cpu,cpu", "cuda", "runs on the CPU"), ("0,2", "auto", "only 2 CUDA")]:
        with pytest.raises(UsageError, match=message):
            parse_devices(spec, device, gpus=2)


def test_relaunch_args_round_trip():
    """The children parse exactly the parent's options, less --devices, with their --device."""
    command = typer.main.get_command(app).commands["upscale"]
    argv = ["in dir", "-", "-o", "out", "--devices", "cpu,cpu", "-r", "--prompt=-dash, comma", "--seed", "7",
            "--format", "jpg", "--scale", "2.5", "--turbo", "--json", "--tile-size", "64"]
    parent = command.make_context("upscale", list(argv))
    child = command.make_context("upscale", relaunch_args(parent, device="cpu"))
    expected = {**parent.params, "devices": None, "device": "cpu"}
    assert child.params == expected


def test_combined_exit_code():
    assert combined_exit([0, 0]) == 0
    assert combined_exit([1, 0]) == 1  # some image failed somewhere: the main process knows
    assert combined_exit([130, 0]) == 130 and combined_exit([2, 2]) == 2
    assert combined_exit([0, -9]) == 1  # a helper crashed after the main process had reported
    assert combined_exit([-9, 0]) == 1 and combined_exit([-2, 0], interrupted=True) == 130


@pytest.mark.skipif(os.name != "posix", reason="raises signals at this process")
def test_one_ctrl_c_delivered_twice_counts_once():
    """The terminal and a launcher both pass on one Ctrl-C: stop cleanly; a later one: at once."""
    with cancel_on_signals(announce=False) as cancelled:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert cancelled()
        time.sleep(1.1)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)

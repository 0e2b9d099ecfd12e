"""The pure parts of scale-out: `--devices` / `--ray` parsing, worker slots from a cluster's nodes,
the per-node checks' errors, the several-images progress view, and that a plain run imports no Ray."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from seesr_cli.batch import OK, RUN, Job, JobResult
from seesr_cli.cli.scale import ClusterProgress
from seesr_cli.cli.signals import cancel_on_signals
from seesr_cli.errors import SeesrError, UsageError, WeightsError
from seesr_cli.scaleout.devices import LOCAL, cluster_slots, local_slots, plan_ray

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_devices_plan_a_private_ray_here():
    plan = plan_ray("cpu, cpu", None, "cpu", cpus=5)
    assert (plan.address, plan.gpu, plan.count, plan.cpus) == (LOCAL, False, 2, 2)
    assert [s.resources for s in local_slots(plan)] == [{"num_cpus": 2}] * 2
    assert {s.device for s in local_slots(plan)} == {"cpu"}
    assert plan_ray("cpu,cpu,cpu", None, cpus=2).cpus == 1  # never below one thread
    plan = plan_ray("0,1,3", None, gpus=4, cpus=12)
    assert (plan.count, plan.visible, plan.cpus) == (3, "0,1,3", 4)
    assert local_slots(plan)[0].resources == {"num_cpus": 4, "num_gpus": 1}
    assert plan_ray("cuda:1,0", None, "cuda", gpus=2, visible="6,7").visible == "7,6"  # as cuda:N counts them
    for spec, device, message in [("0,cpu", "auto", "not a mix"), ("", "auto", "GPU numbers"),
                                  ("0,0", "auto", "each GPU once"), ("0,1", "cpu", "--device is cpu"),
                                  ("cpu,cpu", "cuda", "runs on the CPU"), ("0,2", "auto", "only 2 CUDA")]:
        with pytest.raises(UsageError, match=message):
            plan_ray(spec, None, device, gpus=2)


def test_launchers_are_refused(monkeypatch):
    """torchrun / accelerate launch would run the whole batch N times over: say what replaced them."""
    from seesr_cli.cli.scale import parse_ray_options

    assert parse_ray_options(None, None, "auto") is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(UsageError, match="no longer runs under accelerate launch or torchrun.*--ray ADDRESS"):
        parse_ray_options(None, None, "auto")


def test_ray_plans_from_the_cluster():
    assert plan_ray(None, "auto").address == "auto" and plan_ray(None, "10.0.0.1:6379", "cpu").gpu is False
    with pytest.raises(UsageError, match="give one of them"):
        plan_ray("cpu,cpu", "auto")
    with pytest.raises(UsageError, match="not on --device mps"):
        plan_ray(None, "auto", "mps")

    def node(name, cpus, gpus=0, alive=True):
        return {"NodeID": name, "Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}

    nodes = [node("a", 16, 2), node("b", 8), node("c", 4, alive=False)]
    gpu = cluster_slots(plan_ray(None, "auto"), nodes)  # auto: the GPUs
    assert [(s.device, s.resources, s.node, s.threads) for s in gpu] == [
        ("cuda", {"num_cpus": 8, "num_gpus": 1}, "a", 8)] * 2
    cpu = cluster_slots(plan_ray(None, "auto", "cpu"), nodes)  # one worker per node, all its CPUs
    assert [(s.device, s.resources, s.node) for s in cpu] == [("cpu", {"num_cpus": 16}, "a"),
                                                              ("cpu", {"num_cpus": 8}, "b")]
    assert [s.node for s in cluster_slots(plan_ray(None, "auto"), nodes[1:])] == ["b"]  # no GPU: CPUs
    with pytest.raises(UsageError, match="no GPUs"):
        cluster_slots(plan_ray(None, "auto", "cuda"), nodes[1:])


def test_node_checks_name_the_node_and_what_is_wrong():
    pytest.importorskip("ray")
    import seesr_cli
    from seesr_cli.scaleout.nodes import Probe, check_node

    probe = Probe("/shared/out", "t0ken", "/shared/in/a.png")
    good = {"node": "98c09b97d97b0123", "host": "vm2", "version": seesr_cli.__version__, "seen": "t0ken",
            "input": True, "error": None}
    check_node(good, probe, answered=True)
    cases = [({"seen": "<No such file or directory>"}, True, ("/shared/out is not the same folder on node vm2 "
                                                              "(98c09b97d97b) (it reads <No such file or directory>)")),
             ({}, False, "it reads a file it cannot have written"),  # the driver does not see the node's answer
             ({"input": False}, True, "does not see the input /shared/in/a.png"),
             ({"version": "0.0.1"}, True, "runs seesr-cli 0.0.1")]
    for change, answered, message in cases:
        with pytest.raises(SeesrError) as caught:
            check_node({**good, **change}, probe, answered=answered)
        assert message in str(caught.value)
    with pytest.raises(WeightsError, match=r"^on node vm2 \(98c09b97d97b\): missing weights"):
        check_node({**good, "error": WeightsError("missing weights (1 part)")}, probe, answered=True)
    with pytest.raises(WeightsError, match=r"^missing weights"):  # one node: the one-process message
        check_node({**good, "error": WeightsError("missing weights (1 part)")}, probe, answered=True, several=False)


def test_an_address_nobody_answers_on_fails_at_once():
    """Ray itself retries an unreachable cluster for minutes: we ask the port first."""
    pytest.importorskip("ray")
    import socket

    from seesr_cli.scaleout.nodes import start_ray

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SeesrError, match=rf"--ray 127.0.0.1:{port}: cannot join the Ray cluster \(.*\); is `ray start`"):
        start_ray(plan_ray(None, f"127.0.0.1:{port}"))
    assert time.monotonic() - start < 15


def _job(name: str) -> Job:
    return Job(Path("in") / name, name, Path("out") / name, "png", 1, RUN)


def test_cluster_progress_draws_several_images_and_notices():
    from seesr_cli.pipeline.seesr import ProgressEvent

    text = io.StringIO()
    view = ClusterProgress(Console(file=text, width=300, force_terminal=True), live=True)
    a, b = _job("a.png"), _job("b.png")
    with view:
        view.start([a, b])
        view.job_started(a, 0, 2)
        view.job_started(b, 0, 2)
        view.image_status(a, "loading models")
        view.image_event(a, ProgressEvent("denoise", 1, 2, 0, 1))
        view.image_event(b, ProgressEvent("decode", 0, 1))
        tasks = {t.description: t for t in view._progress.tasks}
        assert tasks[str(a.input)].completed == 1 and tasks[str(a.input)].total == 2
        assert tasks[str(b.input)].fields["detail"] == "decode"
        assert tasks["images"].completed == 0.5  # the running images' shares move the batch bar
        view.notice("worker 2 died while on in/b.png; it goes to the next free worker")
        view.job_finished(JobResult(a, OK), 0, 2)
        assert str(a.input) not in {t.description for t in view._progress.tasks}
    assert "worker 2 died while on in/b.png" in text.getvalue()
    quiet = io.StringIO()
    ClusterProgress(Console(file=quiet), quiet=True).notice("worker 1 died")
    assert quiet.getvalue() == ""


def test_a_plain_run_imports_no_ray(tmp_path):
    """Without --devices / --ray nothing imports Ray (0.3-2 s, and its own processes)."""
    code = ("import sys; from typer.testing import CliRunner; from seesr_cli.cli import app; "
            "r = CliRunner().invoke(app, ['upscale', 'missing.png', '--dry-run', '--json']); "
            "assert r.exit_code == 1, r.output; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


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

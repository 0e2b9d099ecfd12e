"""Stopping (issue 10, item 7): the first Ctrl-C/SIGTERM is acknowledged within a second at every
stage (while the models load, mid-image, inside a long call into C), the image in progress is not
written, the exit code is 130 and a rerun resumes. Real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "6", "--scale", "2", "--process-size", "64", "--device", "cpu"]
ACK = "stopping after the current step"

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")


class Watched:
    """A subprocess whose stderr lines are collected with their arrival times."""

    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in self.lines:
                if text in line:
                    return at
            assert self.proc.poll() is None, f"exited before {text!r}: {self.text()}"
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} within {timeout} s: {self.text()}")

    def finish(self, timeout: float = 120) -> int:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        return self.proc.returncode

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _env(fake_hub, home: Path, extra_path: Path | None = None) -> dict:
    env = fake_hub.environ(home)
    paths = [str(p) for p in (extra_path, REPO_ROOT) if p is not None]
    env.update(PYTHONPATH=os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep), OMP_NUM_THREADS="1")
    return env


def _inputs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def test_first_signal_is_acknowledged_while_the_main_thread_is_inside_a_long_c_call(tmp_path):
    """A Python handler waits for the main thread to leave C code (one big convolution, one big read):
    the wakeup socket's reader says "stopping" at once anyway."""
    script = (
        "import sys, time, torch\n"
        "torch.set_num_threads(1)\n"
        "from seesr_cli.cli.signals import cancel_on_signals\n"
        "a = torch.randn(6000, 6000)\n"
        "with cancel_on_signals(say=lambda t: print(f'{time.monotonic():.3f} {t}', file=sys.stderr, flush=True)) as stop:\n"
        "    print('busy', file=sys.stderr, flush=True)\n"
        "    a @ a\n"
        "    print(f'{time.monotonic():.3f} done', stop(), file=sys.stderr, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    watched = Watched([sys.executable, "-c", script], env, tmp_path)
    watched.wait_for("busy", 60)
    time.sleep(0.3)
    sent = time.monotonic()
    watched.proc.send_signal(signal.SIGINT)
    assert watched.finish(60) == 0, watched.text()
    stamps = {line.split(" ", 1)[1].split(" ")[0]: float(line.split(" ", 1)[0]) for _, line in watched.lines
              if line[:1].isdigit()}
    if stamps["done"] - sent < 1.0:
        pytest.skip(f"the multiplication took only {stamps['done'] - sent:.2f} s after the signal here")
    assert stamps["stopping"] - sent < 1.0, watched.text()
    assert "done True" in watched.text()


def test_a_stop_while_the_models_load_is_answered_at_once_and_a_rerun_resumes(fake_hub, tmp_path):
    """Loading made slow the way real weights are (long calls into C that hold the main thread: here
    two 4500 x 4500 multiplications before the weights resolve): the stop is acknowledged within a
    second, no image is started, exit 130; the rerun does everything."""
    _inputs(tmp_path / "in", 2)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import torch\n"
        "from seesr_cli.weights import resolve\n"
        "_resolve = resolve.resolve_weights\n"
        "def slow(**kw):\n"
        "    a = torch.randn(4500, 4500)\n"
        "    a @ a\n"
        "    a @ a\n"
        "    return _resolve(**kw)\n"
        "resolve.resolve_weights = slow\n")
    args = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", "out", *FAST]
    watched = Watched(args, _env(fake_hub, tmp_path / "home", hook), tmp_path)
    watched.wait_for("loading models")
    time.sleep(0.5)
    sent = time.monotonic()
    watched.proc.send_signal(signal.SIGTERM)  # as torchrun and --devices stop their workers
    code = watched.finish(120)
    acked = watched.wait_for(ACK, 1) - sent
    print(f"\nstop while loading: acknowledged after {acked:.2f} s, exit {code} after {time.monotonic() - sent:.1f} s")
    assert code == 130, watched.text()
    assert acked < 1.0, watched.text()
    assert "re-run the same command to resume" in watched.text() and "Traceback" not in watched.text()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    rerun = subprocess.run([*args, "--json"], env=_env(fake_hub, tmp_path / "home"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["status"] for r in json.loads(rerun.stdout)["images"]] == ["ok", "ok"]


def test_a_stop_mid_batch_writes_nothing_after_it_and_exits_130(fake_hub, tmp_path):
    how = signal.SIGINT
    _inputs(tmp_path / "in", 4)
    args = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", "out", *FAST]
    watched = Watched(args, _env(fake_hub, tmp_path / "home"), tmp_path)
    watched.wait_for("ok ")  # the first image is done: the second is in progress
    sent_wall, sent = time.time(), time.monotonic()
    watched.proc.send_signal(how)
    code = watched.finish()
    acked = watched.wait_for(ACK, 1) - sent
    print(f"\nstop mid-batch ({how.name}): acknowledged after {acked:.2f} s, exit {code}")
    assert code == 130 and acked < 1.0, watched.text()
    # the report of what finished is written at the end, by design: only images count here
    written = sorted(p for p in (tmp_path / "out").iterdir() if p.name not in ("seesr-report.html", ".seesr-report"))
    assert written and all(p.stat().st_mtime <= sent_wall + 0.05 for p in written), "written after the stop"
    assert all(not p.name.startswith(".") for p in written)  # no temp file, no claim left
    assert len(written) < 4


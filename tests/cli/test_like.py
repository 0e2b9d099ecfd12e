"""`seesr upscale --like RESULT`: the same pixels from a result's metadata; one clear error otherwise.
Also: the same CPU thread count in two processes gives the same bytes (docs/CLI.md, "Same bytes")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from seesr_cli.batch import derive_seed
from seesr_cli.cli import app
from seesr_cli.io import read_metadata
from seesr_cli.settings import UpscaleSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "2", "--scale", "2", "--process-size", "64", "--device", "cpu"]


@pytest.fixture(autouse=True)
def keep_threads():
    """--threads sets torch's process-wide count: put it back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline(fake_hub, monkeypatch, tmp_path):
    fake_hub.apply(monkeypatch, tmp_path / "home")
    monkeypatch.chdir(tmp_path)
    return fake_hub


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def noisy_png(path: Path, seed: int = 0, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def pixels(path: Path) -> bytes:
    with Image.open(path) as im:
        return np.asarray(im).tobytes()


def test_like_writes_the_same_pixels(offline, tmp_path):
    """Settings that are not defaults, a seed and a thread count, all from RESULT's metadata alone."""
    noisy_png(tmp_path / "a.png")
    made = invoke("upscale", "a.png", "-o", "first.png", *FAST, "--seed", "7", "--tile-size", "8",
                  "--tile-overlap", "2", "--sampler", "ddim", "--color-fix", "wavelet", "--tile-window", "gaussian",
                  "--threads", "1")
    assert made.exit_code == 0, made.stderr
    again = invoke("upscale", "a.png", "--like", "first.png", "-o", "second.png", "--threads", "1")
    assert again.exit_code == 0, again.stderr
    assert pixels(tmp_path / "second.png") == pixels(tmp_path / "first.png")
    first, second = read_metadata(tmp_path / "first.png"), read_metadata(tmp_path / "second.png")
    for key in ("seesr:seed", "seesr:base-seed", "seesr:settings", "seesr:prompts", "seesr:tiles"):
        assert first[key] == second[key], key
    settings = json.loads(first["seesr:settings"])
    assert (settings["tile_size"], settings["sampler"], settings["tile_window"]) == (8, "ddim", "gaussian")
    # An option given with --like wins over RESULT's.
    other = invoke("upscale", "a.png", "--like", "first.png", "-o", "third.png", "--steps", "1")
    assert other.exit_code == 0, other.stderr
    third = json.loads(read_metadata(tmp_path / "third.png")["seesr:settings"])
    assert third == {**settings, "steps": 1}


def test_like_reuses_the_cpu_kernels(offline, tmp_path, monkeypatch):
    """--cpu-kernels stock is recorded and --like runs stock again (default: onednn); the
    environment's SEESR_CPU_KERNELS counts as given and wins over RESULT's."""
    monkeypatch.delenv("SEESR_CPU_KERNELS", raising=False)
    noisy_png(tmp_path / "a.png")
    made = invoke("upscale", "a.png", "-o", "stock.png", *FAST, "--threads", "1", "--cpu-kernels", "stock")
    assert made.exit_code == 0, made.stderr
    fast = invoke("upscale", "a.png", "-o", "fast.png", *FAST, "--threads", "1")
    assert fast.exit_code == 0, fast.stderr
    again = invoke("upscale", "a.png", "--like", "stock.png", "-o", "again.png")
    assert again.exit_code == 0, again.stderr

    def kernels(name: str) -> str:
        return json.loads(read_metadata(tmp_path / name)["seesr:run"])["kernels"]

    assert [kernels(n) for n in ("stock.png", "fast.png", "again.png")] == ["stock", "onednn", "stock"]
    assert pixels(tmp_path / "again.png") == pixels(tmp_path / "stock.png")
    monkeypatch.setenv("SEESR_CPU_KERNELS", "onednn")
    env = invoke("upscale", "a.png", "--like", "stock.png", "-o", "env.png")
    assert env.exit_code == 0, env.stderr
    assert kernels("env.png") == "onednn"
    bad = invoke("upscale", "a.png", "-o", "bad.png", *FAST, "--cpu-kernels", "mkl")
    assert bad.exit_code == 2


def test_like_with_several_inputs_uses_the_base_seed(offline, tmp_path):
    noisy_png(tmp_path / "in" / "a.png")
    noisy_png(tmp_path / "in" / "b.png", seed=1)
    assert invoke("upscale", "in/a.png", "-o", "first.png", *FAST, "--seed", "7").exit_code == 0
    done = invoke("upscale", "in", "--like", "first.png", "-o", "out", "--dry-run", "--json")
    assert done.exit_code == 0, done.stderr
    seeds = {Path(p["input"]).name: p["seed"] for p in json.loads(done.stdout)["plan"]}
    assert seeds == {"a.png": derive_seed(7, "a.png"), "b.png": derive_seed(7, "b.png")}
    one = invoke("upscale", "in/b.png", "--like", "first.png", "-o", "b.png", "--dry-run", "--json")
    assert [p["seed"] for p in json.loads(one.stdout)["plan"]] == [derive_seed(7, "a.png")]  # RESULT's own


def old_result(path: Path) -> Path:
    """A result of an earlier version: the first five keys, no `seesr:run`."""
    info = PngImagePlugin.PngInfo()
    for key, value in {"seesr:seed": "1", "seesr:base-seed": "0", "seesr:source": "a.png",
                       "seesr:prompts": "[]", "seesr:settings": "{}"}.items():
        info.add_itxt(key, value)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: noisy_png(p), "no seesr metadata in it"),
    (old_result, "metadata format 1 from another seesr-cli version; --like reads format 2"),
    (lambda p: p.write_text("not an image") and p, "cannot read it"),
])
def test_like_refuses_what_it_cannot_reproduce_before_loading(tmp_path, monkeypatch, make, message):
    """Exit 2 and one line, with no weights anywhere: nothing was loaded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    noisy_png(tmp_path / "a.png")
    make(tmp_path / "result.png")
    done = invoke("upscale", "a.png", "--like", "result.png")
    assert done.exit_code == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--like result.png: {message}" in lines[0], done.stderr


def run_seesr(*args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "seesr_cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_same_threads_in_two_processes_give_the_same_bytes(fake_hub, tmp_path):
    """Noisy input, 2 threads in two fresh processes; then --like in a process whose own default is
    1 thread (OMP_NUM_THREADS=1) takes 2 from RESULT and writes the same bytes."""
    noisy_png(tmp_path / "a.png", size=(48, 32))
    env = fake_hub.environ(tmp_path / "home")
    for name in ("one.png", "two.png"):
        done = run_seesr("upscale", "a.png", "-o", name, *FAST, "--threads", "2", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert pixels(tmp_path / "one.png") == pixels(tmp_path / "two.png")  # the files differ only in timings
    assert json.loads(read_metadata(tmp_path / "one.png")["seesr:run"])["threads"] == 2
    done = run_seesr("upscale", "a.png", "--like", "one.png", "-o", "like.png", env={**env, "OMP_NUM_THREADS": "1"},
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert pixels(tmp_path / "like.png") == pixels(tmp_path / "one.png")


def test_a_fallback_is_noted_and_the_summary_says_the_output_may_differ(offline, tmp_path, monkeypatch):
    import torch

    from seesr_cli.pipeline import vae

    real, failed = vae.decode_many, []

    def decode_many(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(vae, "decode_many", decode_many)
    noisy_png(tmp_path / "a.png", size=(128, 96))  # a 32 x 24 latent: decoder tiles can halve to 16
    done = invoke("upscale", "a.png", "-o", "a_x2.png", *FAST, "--json")
    assert done.exit_code == 0, done.stderr
    notes = json.loads(done.stdout)["images"][0]["notes"]
    assert len(notes) == 1 and notes[0].startswith("fallback: out of memory in the VAE decoder")
    assert json.loads(read_metadata(tmp_path / "a_x2.png")["seesr:run"])["notes"] == notes
    assert "1 output(s) needed a fallback" in done.stderr and "may differ from an unconstrained run" in done.stderr


@pytest.mark.parametrize("compiled", [True, False])
def test_like_compiles_again_what_was_compiled(compiled):
    """A result whose ControlNet+UNet ran compiled (`seesr:run` "compiled") is redone with --compile:
    Inductor's fusions round differently from eager. Given on the command line, --compile wins."""
    from seesr_cli.cli.like import LikeRecord, apply_like
    from seesr_cli.settings import LoadOptions

    class Context:  # nothing given on the command line
        params: dict = {}

        def get_parameter_source(self, name):
            return None

    record = LikeRecord(Path("r.png"), UpscaleSettings(), 1, 1, "fp16", 4, False, None, compiled)
    _, load = apply_like(record, Context(), UpscaleSettings(), LoadOptions(compile=not compiled))
    assert load.compile is compiled

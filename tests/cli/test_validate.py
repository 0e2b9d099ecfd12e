"""Options are checked against each other and the defaults up front: exit 2 at once, before any model
loads (issue 10, items 1, 6 and 9). The loader is made to fail loudly, so a check that comes too late
shows up as that failure instead of the expected message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch  # imported once up front: the timings below measure the checks, not this import
from PIL import Image
from typer.testing import CliRunner

from seesr_cli.batch import PipelineLoader
from seesr_cli.cli import app


@pytest.fixture(autouse=True)
def no_models(monkeypatch, tmp_path):
    """Any model load fails the test; cwd is a folder holding a.png and in/b.png."""
    def refuse(self):
        raise AssertionError("the models were loaded")

    monkeypatch.setattr(PipelineLoader, "__call__", refuse)
    monkeypatch.delenv("SEESR_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    for rel in ("a.png", "in/b.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("RGB", (24, 16), (40, 80, 120)).save(tmp_path / rel)


def invoke(*args: str):
    start = time.perf_counter()
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    result.seconds = time.perf_counter() - start
    return result


def error_text(result) -> str:
    return " ".join(result.stderr.split())  # rich wraps long lines


USAGE = [
    (["upscale", "a.png", "--scale", "1e9"], "--scale 1e+09: at most 16 (SeeSR is trained for x4)"),
    (["upscale", "a.png", "--scale", "1000"], "--scale 1000: at most 16"),
    (["upscale", "a.png", "--tile-overlap", "200"],
     "--tile-overlap 200 must be smaller than the tile size (default 96 latent px)"),
    (["upscale", "a.png", "--tile-size", "16", "--turbo"],
     "--tile-size 16 must be larger than the tile overlap (default 32 latent px with --turbo)"),
    (["upscale", "in", "-o", "a.png"], "-o a.png: an existing file, but the inputs can hold several images"),
    (["upscale", "a.png", "-o", "x.gif"], "-o x.gif: seesr cannot write GIF images"),
    (["upscale", "a.png", "--suffix", "../x"], "--suffix '../x': must be part of a file name"),
    (["upscale", "a.png", "--dtype", "fp16", "--device", "cpu"], "--dtype fp16 on the CPU"),
    (["upscale", "a.png", "--max-tiles", "0"], "--max-tiles must be >= 1"),
    (["upscale", "a.png", "--max-vram", "8", "--device", "cpu"], "--max-vram applies to CUDA GPUs"),
    (["upscale", "a.png", "--max-vram", "0"], "max_vram (--max-vram) must be a number of GiB > 0; got 0.0"),
    (["upscale", "a.png", "--max-vram", "-2"], "max_vram (--max-vram) must be a number of GiB > 0; got -2.0"),
    (["upscale", "a.png", "--max-vram", "nan"], "max_vram (--max-vram) must be a number of GiB > 0; got nan"),
    (["upscale", "a.png", "--group", "0"], "--group must be a whole number >= 1; got 0"),
    (["upscale", "a.png", "--threads", "0"], "threads (--threads) must be a whole number >= 1; got 0"),
    (["tag", "a.png", "--scale", "1000"], "--scale 1000: at most 16"),
    (["tag", "a.png", "--tile-overlap", "100"], "--tile-overlap 100 must be smaller than the tile size"),
]


@pytest.mark.parametrize("args, message", USAGE, ids=[" ".join(a[1:]) for a, _ in USAGE])
def test_bad_options_exit_2_at_once_with_a_message_naming_the_option(args, message):
    result = invoke(*args)
    assert (result.exit_code, result.stdout) == (2, ""), result.stderr
    assert message in error_text(result) and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert result.seconds < 5
    assert not Path("x.gif").exists()


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "8"])
def test_a_bad_max_vram_is_one_error_line_not_a_usage_screen(value):
    """--max-vram 8 on this machine: the device is no CUDA GPU (or, with one, it is accepted: skipped)."""
    if value == "8" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("upscale", "a.png", "--max-vram", value)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "Usage:" not in result.stderr
    assert "--max-vram" in error_text(result)


def test_cuda_on_a_machine_without_cuda_is_refused_before_anything_loads():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("upscale", "a.png", "--device", "cuda")
    assert result.exit_code == 2
    assert "--device cuda: CUDA is not available" in error_text(result) and "--device cpu" in error_text(result)


def test_seesr_weights_pointing_nowhere_is_named_as_seesr_weights(monkeypatch):
    monkeypatch.setenv("SEESR_WEIGHTS", "/no/such/weights")
    for args in (["upscale", "a.png"], ["tag", "a.png"], ["weights"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.stderr
        assert "SEESR_WEIGHTS=/no/such/weights: does not exist" in error_text(result)
        assert "--weights" not in result.stderr.split(":")[0]


def test_bf16_on_the_cpu_is_allowed_with_a_note_on_its_cost(monkeypatch):
    result = invoke("upscale", "a.png", "--dtype", "bf16", "--device", "cpu", "-o", "done.png")
    Image.new("RGB", (48, 32)).save("done.png")
    result = invoke("upscale", "a.png", "--dtype", "bf16", "--device", "cpu", "-o", "done.png")
    assert result.exit_code == 0, result.stderr  # the output exists: skipped, nothing loaded
    assert "note: --dtype bf16 on the CPU" in error_text(result) and "slower on others" in error_text(result)


def test_an_image_over_a_limit_gets_one_line_and_the_batch_goes_on():
    """A 1 x 4000 PNG is refused from its header in well under a second; the batch goes on (exit 1)."""
    Image.new("RGB", (1, 4000), (9, 9, 9)).save("in/wide.png")
    Path("in_x4").mkdir()
    Image.new("RGB", (96, 64)).save("in_x4/b.png")  # done earlier: skipped
    result = invoke("upscale", "in", "--json")
    assert result.exit_code == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {Path('in/wide.png')}: a 1 x 4000 px image is diffused")
    assert result.seconds < 5

"""bench/gpu_suite.py runs where it cannot be tried twice (a GPU lent for minutes): its arguments, its plan
and the sections a CPU can run are checked here, so a typo fails now and not on the GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE = REPO_ROOT / "bench" / "gpu_suite.py"


def suite(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def test_dry_run_prints_the_plan_within_the_budget_without_a_gpu():
    run = suite("--dry-run")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "dtypes ['fp16', 'bf16'], budget 540 s" in out
    assert "2048px at 50 steps, 4096px at 10 steps; lowvram 2048px at 10 steps under --max-vram 8" in out
    # The same plan `seesr upscale --max-vram 8` makes for a 2048 output (pipeline/placement.py).
    assert "--max-vram 8 (fp16, full size): offload True, tile batch 4, VAE encoder tile 1024, decoder tile 192" in out
    for name in ("eager", "kernels", "lowvram", "large", "compiled", "batch", "turbo"):
        assert f"[{name}] cap" in out
    caps = int(out.split("caps sum to ")[1].split()[0])
    assert caps <= 540


def test_bad_arguments_exit_2_before_building_anything():
    too_small = suite("--dry-run", "--max-vram", "3")
    assert too_small.returncode == 2 and "--max-vram 3: too small" in too_small.stderr
    unknown = suite("--dry-run", "--sections", "eager,nope")
    assert unknown.returncode == 2 and "unknown sections: nope" in unknown.stderr
    dtype = suite("--dry-run", "--dtypes", "fp8")
    assert dtype.returncode == 2 and "unknown dtypes: fp8" in dtype.stderr


def test_cpu_smoke_runs_the_eager_and_lowvram_sections_and_writes_the_json(reference_dir, tmp_path):
    """Tiny random models on the CPU: each section's code runs (the CUDA-only lines excepted), the offloaded
    image equals the resident one, and the JSON and the table are written."""
    run = suite("--device", "cpu", "--tiny", "--sections", "eager,lowvram", "--size", "64", "--steps", "1",
                "--lowvram", "64:1", "--runs", "1", "--dtypes", "fp32", "--out", str(tmp_path),
                env={"SEESR_REFERENCE_FIXTURES": str(reference_dir)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    sections = report["sections"]
    assert {name: s["status"] for name, s in sections.items()} == {"eager": "ok", "lowvram": "ok"}
    assert sections["eager"]["data"]["fp32_tb1"]["seconds"]
    offloaded = sections["lowvram"]["data"]["offloaded"]
    assert offloaded["notes"][0].endswith("networks kept in CPU RAM, each copied to the GPU for its stage")
    assert set(offloaded["move_seconds"]) == {"load", "unload"}
    rows = {what: value for what, value, _ in sections["lowvram"]["rows"]}
    assert rows["pixels offloaded vs resident (same tiles)"].startswith("max 0 LSB")
    assert "| lowvram | cost of offloading (same tiles) |" in (tmp_path / "gpu_suite.md").read_text()


CAST_ROUND_TRIP = """
import sys, torch
sys.path[:0] = ["bench", "."]
import _models
from _gpu_plan import CAST, Bench, parse_args
from gpu_suite import SECTIONS
args = parse_args(["--device", "cpu", "--tiny"], SECTIONS, "test")
parts = _models.tiny_components("cpu", "fp32", seed=1)
bench = Bench(args, torch.device("cpu"), parts)
before = {key: {n: t.clone() for n, t in parts[key].state_dict().items()} for key in CAST}
bench.cast("bf16")
assert all(t.dtype == torch.bfloat16 for t in parts["unet"].parameters())
bench.cast("fp32")
for key in CAST:
    after = parts[key].state_dict()
    assert all(torch.equal(before[key][n], after[n]) for n in before[key]), key
print("round trip exact")
"""


def test_a_cast_back_gives_the_weights_as_built_not_rounded_through_the_other_dtype(reference_dir):
    """Sections cast the models between fp16 and bf16: compiled-vs-eager pixels must compare the same weights."""
    run = subprocess.run([sys.executable, "-c", CAST_ROUND_TRIP], capture_output=True, text=True, timeout=300,
                         cwd=REPO_ROOT, env={**os.environ, "SEESR_REFERENCE_FIXTURES": str(reference_dir)})
    assert run.returncode == 0 and "round trip exact" in run.stdout, run.stderr[-3000:]

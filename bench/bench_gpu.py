"""GPU throughput of `SeeSRPipeline.upscale` with full-size random weights: seconds per image, peak VRAM, stages.

On a CUDA device (default): 512x512 output (128x128 LR, x4), 50 DDPM steps, CFG
5.5, in fp16 and bf16 (DAPE stays fp32, as the loader keeps it): 1 warm-up, then the
median of 3 (`torch.cuda.synchronize` around each), per-stage medians, peak VRAM
(`max_memory_allocated`, reset per config; the weights are included and also shown
alone) and images/hour. Then one 2048x2048 output in fp16 (1-step warm-up, then
`--large-steps` steps; with fewer than 50 the denoise part is extrapolated per
step). Goal: <= 0.8 s per 512 image on an H100 (paper: 7.24 s V100, 4.30 s A100).
Prints as it goes, so a timeout keeps the finished parts. ~2 min on an H100.

    python bench/bench_gpu.py                 # full run
    python bench/bench_gpu.py --quick         # 1 timed run per dtype, 2048 at 10 steps
    python bench/bench_gpu.py --device cpu --tiny --quick --steps 2 --large-size 256   # smoke test
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see bench_scaling.py)

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)
from bench_pipeline import lr_image  # noqa: E402

from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402

GIB = 1 << 30
CAST = ("unet", "controlnet", "vae", "text_encoder")  # DAPE stays float32 (seesr_cli.loading)
STAGES = ("dape", "text", "vae_encode", "denoise", "vae_decode", "colorfix")
DEFAULT_STEPS = 50


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_line(device: torch.device, weights: int) -> str:
    if device.type != "cuda":
        return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20):.2f} GiB (process lifetime)"
    peak = torch.cuda.max_memory_allocated(device)
    reserved = torch.cuda.max_memory_reserved(device)
    return (f"peak VRAM {peak / GIB:.2f} GiB allocated (weights {weights / GIB:.2f} + activations "
            f"{(peak - weights) / GIB:.2f}), {reserved / GIB:.2f} GiB reserved")


def timed(pipe: SeeSRPipeline, image, settings: UpscaleSettings, device: torch.device):
    sync(device)
    start = time.perf_counter()
    result = pipe.upscale(image, settings)
    sync(device)
    seconds = time.perf_counter() - start
    if result.notes:  # e.g. a non-finite fp16 result redone in fp32: the time is not this dtype's
        print(f"    NOTE from the pipeline (timing not representative): {result.notes}", flush=True)
    return seconds, result


def stage_line(timings: list[dict[str, float]], steps: int) -> str:
    medians = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in STAGES}
    parts = [f"{k} {v:.3f}" for k, v in medians.items()]
    per_step = medians["denoise"] / steps * 1e3
    return "stages (median s): " + ", ".join(parts) + f"; ControlNet+UNet per step {per_step:.1f} ms"


def bench_dtype(parts: dict, name: str, args, device: torch.device) -> float:
    """The 512 case in one dtype; returns the median seconds per image."""
    dtype = _models.DTYPES[name]
    for key in CAST:
        parts[key].to(dtype)
    sync(device)
    pipe = SeeSRPipeline(**parts, device=device, dtype=dtype)
    weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    settings = UpscaleSettings(steps=args.steps, seed=args.seed)
    lr = max(1, args.size // 4)
    image = lr_image(lr, lr, seed=args.seed)
    print(f"[{name}] {lr * 4}x{lr * 4} output, {args.steps} steps", flush=True)
    reset_peak(device)
    warm, _ = timed(pipe, image, settings, device)
    print(f"    warm-up {warm:.3f} s", flush=True)
    runs, timings = [], []
    for i in range(args.runs):
        seconds, result = timed(pipe, image, settings, device)
        runs.append(seconds)
        timings.append(result.timings)
        print(f"    run {i + 1}: {seconds:.3f} s", flush=True)
    median = statistics.median(runs)
    overhead = median - sum(statistics.median(t.get(k, 0.0) for t in timings) for k in STAGES)
    print(f"    => {median:.3f} s/image (median of {len(runs)}), {3600 / median:.0f} images/hour; "
          f"pipeline overhead {overhead * 1e3:.1f} ms", flush=True)
    print(f"    {stage_line(timings, args.steps)}", flush=True)
    print(f"    {memory_line(device, weights)}", flush=True)
    return median


def bench_large(parts: dict, args, device: torch.device) -> None:
    name = args.dtypes[0]
    dtype = _models.DTYPES[name]
    for key in CAST:
        parts[key].to(dtype)
    pipe = SeeSRPipeline(**parts, device=device, dtype=dtype)
    weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    lr = max(1, args.large_size // 4)
    image = lr_image(lr, lr, seed=args.seed)
    settings = UpscaleSettings(steps=args.large_steps, seed=args.seed)
    print(f"[{name}] {lr * 4}x{lr * 4} output, {args.large_steps} steps", flush=True)
    reset_peak(device)
    if not args.quick:
        warm, _ = timed(pipe, image, settings.with_(steps=1), device)
        print(f"    warm-up (1 step) {warm:.2f} s", flush=True)
    seconds, result = timed(pipe, image, settings, device)
    denoise = result.timings.get("denoise", 0.0)
    per_step = denoise / args.large_steps
    full = seconds - denoise + per_step * DEFAULT_STEPS
    print(f"    {seconds:.2f} s for {args.large_steps} steps, {len(result.prompts)} tiles; "
          f"denoise {per_step:.3f} s/step; at {DEFAULT_STEPS} steps: {full:.1f} s"
          f"{'' if args.large_steps == DEFAULT_STEPS else ' (extrapolated)'}", flush=True)
    print(f"    stages (s): " + ", ".join(f"{k} {result.timings.get(k, 0.0):.2f}" for k in STAGES), flush=True)
    print(f"    {memory_line(device, weights)}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="fp16,bf16", help="comma-separated; the first also runs the large case")
    parser.add_argument("--size", type=int, default=512, help="output edge of the main case")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per dtype (default 3; --quick 1)")
    parser.add_argument("--large-size", type=int, default=2048, help="output edge of the large case (0: skip)")
    parser.add_argument("--large-steps", type=int, default=None, help="default 50; --quick 10")
    parser.add_argument("--quick", action="store_true", help="fewer runs and large steps, no large warm-up")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test, e.g. on the CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default=None, help="reference fixtures folder (small files only)")
    args = parser.parse_args(argv)
    args.dtypes = args.dtypes.split(",")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.large_steps is None:
        args.large_steps = 10 if args.quick else DEFAULT_STEPS
    return args


def header(args, device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    size = "TINY" if args.tiny else "full-size"
    return (f"SeeSR GPU bench on {name}: {size} random weights, torch {torch.__version__}, "
            f"dtypes {','.join(args.dtypes)}, load average {_models.load_average()}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    _models.quiet_libraries()
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    print(header(args, device), flush=True)
    start = time.perf_counter()
    build = _models.tiny_components if args.tiny else _models.full_size_components
    parts = build(device, args.dtypes[0], seed=args.seed, reference=args.reference)
    sync(device)
    counts = _models.parameter_counts(parts)
    print(f"built in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{k} {v / 1e6:.0f}M" for k, v in counts.items()), flush=True)
    medians = {name: bench_dtype(parts, name, args, device) for name in args.dtypes}
    if args.large_size:
        bench_large(parts, args, device)
    print("summary: " + "; ".join(f"{k} {v:.3f} s/image ({3600 / v:.0f} images/hour)" for k, v in medians.items())
          + f" at {args.size}x{args.size}, {args.steps} steps (goal <= 0.8 s on an H100)", flush=True)


if __name__ == "__main__":
    main()

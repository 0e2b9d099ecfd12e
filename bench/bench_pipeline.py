"""Seconds per stage of one `SeeSRPipeline.upscale` with full-size random weights, and the pipeline's overhead.

Default: CPU, float32, 2 torch threads, 512x512 output (128x128 LR, x4), 2 DDPM
steps, CFG 5.5 (both branches in one batch), per-tile DAPE (one tile at 512).
Overhead = upscale() wall time - the sum of the pipeline's own stage timings
(`UpscaleResult.timings`): geometry, planning, the PIL resizes of the control image,
and whatever else runs between stages (goal <= 3% of the total). For comparison,
the official code's ControlNet + UNet step (batch 2, latent 64x64) takes 20.3 s on
the reference 2-core AMD EPYC (fixtures manifests/timing.json). Needs ~10 GB RAM.

    python bench/bench_pipeline.py [--steps 2] [--size 512] [--device cpu] [--dtype fp32] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see bench/README.md)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)

from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402

OFFICIAL_STEP_S = 20.3  # ControlNet + UNet, batch 2, latent 64x64, fp32, 2 threads (timing.json)
OFFICIAL_DAPE_S = 1.48  # RAMLora generate_image_embeds (1, 3, 384, 384) (timing.json)
STAGES = (("dape", "DAPE (Swin-L + tag head)"), ("text", "text encoder"), ("vae_encode", "VAE encode (LRE start)"),
          ("denoise", "denoise (all steps)"), ("vae_decode", "VAE decode"), ("colorfix", "colour fix + output"))


def lr_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB image (blocky noise, bilinear-upsampled): stands in for a photo."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, height // 4), max(1, width // 4), 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.BILINEAR)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="output edge in px (LR = size / scale)")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(_models.DTYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-warmup", action="store_true", help="skip the small warm-up run")
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead (smoke test)")
    parser.add_argument("--reference", default=None, help="reference fixtures folder (small files only)")
    return parser.parse_args(argv)


def report(result, total: float, steps: int) -> None:
    timings = result.timings
    stages = sum(timings.values())
    print(f"  {'stage':38s} {'seconds':>9s} {'% total':>8s}")
    for key, label in STAGES:
        seconds = timings.get(key, 0.0)
        print(f"  {label:38s} {seconds:9.3f} {100 * seconds / total:7.1f}%")
        if key == "denoise":
            per_step = seconds / steps
            print(f"  {'  ControlNet+UNet per step (denoise/steps)':38s} {per_step:9.3f}"
                  f"          official ControlNet+UNet step: {OFFICIAL_STEP_S} s ({OFFICIAL_STEP_S / per_step:.2f}x)")
        if key == "dape":
            print(f"  {'':38s} {'':9s}          official DAPE embeds alone: {OFFICIAL_DAPE_S} s")
    unknown = sorted(set(timings) - {k for k, _ in STAGES})
    for key in unknown:
        print(f"  {key:38s} {timings[key]:9.3f} {100 * timings[key] / total:7.1f}%")
    overhead = total - stages
    print(f"  {'sum of stages':38s} {stages:9.3f}")
    print(f"  {'upscale() wall time':38s} {total:9.3f}")
    verdict = "meets" if overhead / total <= 0.03 else "MISSES"
    print(f"  pipeline overhead = total - stages: {overhead:.3f} s = {100 * overhead / total:.2f}% of total "
          f"({verdict} the <= 3% goal)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _models.quiet_libraries()
    device, dtype = torch.device(args.device), _models.DTYPES[args.dtype]
    lr_side = max(1, round(args.size / args.scale))
    out = round(lr_side * args.scale)
    print(f"SeeSR pipeline, {'TINY' if args.tiny else 'full-size'} random weights, {device} {args.dtype}, "
          f"{args.threads} torch threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, {out}x{out} output "
          f"({lr_side}x{lr_side} LR, x{args.scale:g}), {args.steps} DDPM steps, CFG 5.5", flush=True)
    print(f"  load average at start: {_models.load_average()}", flush=True)
    start = time.perf_counter()
    build = _models.tiny_components if args.tiny else _models.full_size_components
    parts = build(device, dtype, seed=args.seed, reference=args.reference)
    counts = _models.parameter_counts(parts)
    print(f"  built in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{name} {count / 1e6:.0f}M" for name, count in counts.items()), flush=True)
    pipe = SeeSRPipeline(**parts, device=device, dtype=dtype)
    settings = UpscaleSettings(scale=args.scale, steps=args.steps, seed=args.seed)

    if not args.no_warmup:  # small: process size 64 -> latent 8x8; DAPE and text encoder still full size
        start = time.perf_counter()
        pipe.upscale(lr_image(16, 16, seed=1), settings.with_(steps=1, process_size=64, scale=4.0))
        print(f"  warm-up (64x64 output, 1 step): {time.perf_counter() - start:.1f} s", flush=True)

    image = lr_image(lr_side, lr_side, seed=args.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = pipe.upscale(image, settings)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    print(f"  output {result.image.size[0]}x{result.image.size[1]}; notes: {result.notes or 'none'}")
    print(f"  prompt: {result.prompts[0][:100]!r}{' ...' if len(result.prompts[0]) > 100 else ''} "
          f"({len(result.prompts)} tile prompt(s))")
    report(result, total, args.steps)
    print(f"  load average at end: {_models.load_average()} (2-core machine shared with other jobs)", flush=True)


if __name__ == "__main__":
    main()

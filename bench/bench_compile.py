"""Eager vs torch.compile (CUDA graphs) for a 512x512, 50-step SeeSR image on a GPU.

    python bench/bench_compile.py [--mode reduce-overhead] [--dtype fp16]

Prints compile time (first image), then seconds per image for eager and compiled
(median of 3) and the largest pixel difference between the two outputs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)
from bench_pipeline import lr_image  # noqa: E402

from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402


def timed(pipe, image, settings, device) -> tuple[float, object]:
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = pipe.upscale(image, settings)
    torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="max-autotune")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--reference", default=None)
    args = parser.parse_args()
    device = torch.device("cuda")
    parts = _models.full_size_components(device, args.dtype, reference=args.reference)
    pipe = SeeSRPipeline(**parts, device=device, dtype=_models.DTYPES[args.dtype])
    image, settings = lr_image(128, 128), UpscaleSettings(steps=args.steps, seed=1)
    timed(pipe, image, settings, device)
    eager = [timed(pipe, image, settings, device) for _ in range(3)]
    print(f"eager: {statistics.median(t for t, _ in eager):.3f} s/image ({args.dtype}, {args.steps} steps)", flush=True)
    pipe.compile(mode=args.mode)
    first, _ = timed(pipe, image, settings, device)
    print(f"compile ({args.mode}): first image {first:.1f} s", flush=True)
    runs = [timed(pipe, image, settings, device) for _ in range(3)]
    seconds = statistics.median(t for t, _ in runs)
    diff = np.abs(np.asarray(runs[0][1].image, np.int16) - np.asarray(eager[0][1].image, np.int16)).max()
    print(f"compiled: {seconds:.3f} s/image, {3600 / seconds:.0f} images/hour; "
          f"max pixel difference vs eager {diff}/255", flush=True)
    print(f"peak VRAM {torch.cuda.max_memory_allocated(device) / (1 << 30):.2f} GiB", flush=True)


if __name__ == "__main__":
    main()

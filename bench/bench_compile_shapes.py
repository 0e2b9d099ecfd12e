"""--compile on a batch of mixed image sizes: graphs compiled per denoise input shape, and none after.

    python bench/bench_compile_shapes.py [--tiny] [--device cpu] [--group 4] [--backend inductor]

Inputs from 300x200 to 1500x1000 px (with --tiny: the same aspect ratios scaled down by 12.5, so
the tiny models' 16-latent tiles see the same mix of tile shapes as 96-latent tiles at full size).
Runs the batch twice through a compiled pipeline (grouped with `upscale_many`, then each image
alone in reverse order) and prints, per pass, Dynamo's new graphs (`unique_graphs`), recompiles
(graphs after the first) and frames compiled, the distinct denoise input shapes, and the seconds. The second pass must
add no graph.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)
from bench_pipeline import lr_image  # noqa: E402

from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402

FULL_SIZES = [(300, 200), (640, 480), (1500, 1000), (512, 512), (800, 600), (1024, 768), (400, 300), (1200, 800)]


def dynamo_counts() -> dict[str, int]:
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    # One function is compiled (ControlNet+UNet): every graph after its first is a recompile.
    return {"graphs": graphs, "frames": counters["frames"]["ok"], "recompiles": max(graphs - 1, 0)}


def delta(after: dict[str, int], before: dict[str, int]) -> str:
    return ", ".join(f"{key} +{after[key] - before[key]}" for key in after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random models, inputs scaled down (CPU-friendly)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--group", type=int, default=4, help="images per upscale_many call in the first pass")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--mode", default=None, help="torch.compile mode (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reference", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _models.quiet_libraries()
    device = torch.device(args.device)
    build = _models.tiny_components if args.tiny else _models.full_size_components
    parts = build(device, args.dtype, reference=args.reference)
    pipe = SeeSRPipeline(**parts, device=device, dtype=_models.DTYPES[args.dtype]).compile(args.mode, args.backend)
    if args.tiny:
        sizes = [(max(8, round(w / 12.5)), max(8, round(h / 12.5))) for w, h in FULL_SIZES]
        tiles = dict(tile_size=16, tile_overlap=4, process_size=64, vae_encoder_tile=128, vae_decoder_tile=16)
    else:
        sizes, tiles = FULL_SIZES, {}
    images = [lr_image(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    settings = [UpscaleSettings(steps=args.steps, seed=i, **tiles) for i in range(len(images))]
    compiles: list[str] = []

    def on_progress(event) -> None:
        if event.stage == "compile" and event.done == 1:
            compiles.append(event.detail)

    print(f"{len(images)} inputs: {', '.join(f'{w}x{h}' for w, h in sizes)}; {args.backend} mode={args.mode}, "
          f"{device} {args.dtype}, {args.steps} steps, group {args.group}", flush=True)
    for name, order, group in (("pass 1 (grouped)", range(len(images)), args.group),
                               ("pass 2 (alone, reversed)", reversed(range(len(images))), 1)):
        before, start, order = dynamo_counts(), time.perf_counter(), list(order)
        for first in range(0, len(order), group):
            chosen = order[first:first + group]
            for result in pipe.upscale_many([images[i] for i in chosen], [settings[i] for i in chosen],
                                            on_progress=on_progress):
                if isinstance(result, Exception):
                    raise result
        seconds = time.perf_counter() - start
        print(f"{name}: {delta(dynamo_counts(), before)}; {seconds:.1f} s", flush=True)
        for line in compiles:
            print(f"  {line}", flush=True)
        compiles.clear()
    shapes = sorted(pipe._forward.shapes)
    print(f"denoise input shapes ({len(shapes)}): {', '.join('x'.join(map(str, s)) for s in shapes)}", flush=True)


if __name__ == "__main__":
    main()

"""Cross-image batching: N small images one by one vs as one group (`SeeSRPipeline.upscale_many`).

    python bench/bench_group.py --tiny [--images 8] [--tile-batch 8] [--threads 2]

Both runs use the same fixed batch shape (--tile-batch, the GPU default 8), so every image's
bytes are the same either way (checked); one by one, each small image runs its one tile padded
to a full batch, grouped the images' tiles fill the batches together. Also prints one by one at
tile batch 1 (the CPU default), for reference.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random models, 16-latent tiles")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--tile-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _models.quiet_libraries()
    device = torch.device(args.device)
    build = _models.tiny_components if args.tiny else _models.full_size_components
    pipe = SeeSRPipeline(**build(device, args.dtype, reference=args.reference), device=device,
                         dtype=_models.DTYPES[args.dtype])
    # Small inputs of four sizes, all of whose tiles are full tiles (one or two each; tiny: 16-latent
    # tiles, full size: 96), so the tiles of different images can share a forward.
    edge = 32 if args.tiny else 192
    shapes = [(edge, edge), (edge * 3 // 2, edge), (edge, edge * 5 // 4), (edge * 5 // 4, edge * 5 // 4)]
    sizes = [shapes[i % len(shapes)] for i in range(args.images)]
    tiles = dict(tile_size=16, tile_overlap=4, process_size=64, vae_decoder_tile=16) if args.tiny else {}
    images = [lr_image(w, h, seed=i) for i, (w, h) in enumerate(sizes)]

    def settings(batch: int) -> list[UpscaleSettings]:
        return [UpscaleSettings(steps=args.steps, seed=i, tile_batch=batch, **tiles) for i in range(len(images))]

    pipe.upscale(images[0], settings(args.tile_batch)[0])  # warm-up
    runs = {}
    for name, call in (
        (f"one by one, tile batch {args.tile_batch}", lambda: [pipe.upscale(im, s) for im, s in
                                                                zip(images, settings(args.tile_batch))]),
        (f"grouped ({len(images)}), tile batch {args.tile_batch}", lambda: pipe.upscale_many(images,
                                                                                             settings(args.tile_batch))),
        ("one by one, tile batch 1", lambda: [pipe.upscale(im, s) for im, s in zip(images, settings(1))]),
    ):
        start = time.perf_counter()
        runs[name] = call()
        seconds = time.perf_counter() - start
        print(f"{name}: {seconds:.2f} s, {len(images) / seconds * 60:.1f} images/min", flush=True)
    alone, grouped = list(runs.values())[:2]
    same = all(np.array_equal(np.asarray(a.image), np.asarray(g.image)) and a.run == g.run
               for a, g in zip(alone, grouped))
    print(f"{len(images)} inputs {', '.join(f'{w}x{h}' for w, h in sizes)}; {args.steps} steps, {device} "
          f"{args.dtype}, {args.threads} threads; grouped == one by one (bytes and run record): {same}", flush=True)


if __name__ == "__main__":
    main()

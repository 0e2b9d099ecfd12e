"""CPU time of one full-size DAPE soft-prompt pass (Swin-L at 384x384 + image_proj), random weights.

Matches the reference timing protocol (fixtures manifests/timing.json: RAMLora
`generate_image_embeds` on (1, 3, 384, 384), float32, 2 threads, 1 warm-up,
median of 2: 1.48 s on a 2-core AMD EPYC). Also times `analyse` (embeds + tag
probabilities from the same Swin pass), which is what the pipeline calls.

    python bench/bench_dape.py [--threads 2] [--reps 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seesr_cli.models.dape import DAPE, DAPEConfig  # noqa: E402

SWIN_L_384 = DAPEConfig(
    embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12, patch_size=4,
    image_size=384, mlp_ratio=4.0, prompt_dim=512, num_labels=4585, label_dim=512, label_proj=True,
    head_width=768, head_ffn=3072, head_layers=2, head_heads=4,
)


def _median_seconds(fn, reps: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DAPE(SWIN_L_384, [f"tag{i}" for i in range(4585)], [0.65] * 4585).eval()
    with torch.no_grad():
        for p in model.parameters():  # random, but small enough to keep activations finite
            p.normal_(0.0, 0.02)
    image = torch.rand(1, 3, 384, 384)
    x = model.preprocess(image)
    params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        embed = _median_seconds(lambda: model.embed(x), args.reps)
        analyse = _median_seconds(lambda: model.analyse(x), args.reps)
    print(f"DAPE full size ({params:,} parameters), float32 CPU, {args.threads} threads, "
          f"1 warm-up + median of {args.reps}")
    print(f"embed   (1,3,384,384) -> (1,145,512): {embed:.3f} s   (official generate_image_embeds: 1.48 s)")
    print(f"analyse (embeds + 4585 tag probabilities): {analyse:.3f} s")


if __name__ == "__main__":
    main()

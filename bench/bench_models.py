"""CPU time of one full-size SeeSR ControlNet + UNet forward (one CFG step), random weights.

Matches the reference timing protocol (fixtures manifests/timing.json): batch 2,
latent 64x64 (512x512 output), text states (2, 77, 1024), DAPE states
(2, 145, 512), control image (2, 3, 512, 512), float32, 2 threads, 1 warm-up,
median of 2. Official code on a 2-core AMD EPYC: 20.3 s (ControlNet 5.7 s,
UNet 14.6 s). Needs about 7 GB of memory.

    python bench/bench_models.py [--threads 2] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seesr_cli.models.controlnet import SeeSRControlNet  # noqa: E402
from seesr_cli.models.unet import SeeSRUNet  # noqa: E402

# SD2-base's UNet (diffusers defaults otherwise) with SeeSR's RCA blocks: the official config.json.
SD2_SEESR = {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "use_image_cross_attention": True,
}
OFFICIAL = {"unet": 1_126_760_324, "controlnet": 489_031_440}


def _inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(batch, 4, 64, 64, generator=generator),
        "text": torch.randn(batch, 77, 1024, generator=generator),
        "dape": torch.randn(batch, 145, 512, generator=generator),
        "control": torch.rand(batch, 3, 512, 512, generator=generator),
    }


def _step(unet: SeeSRUNet, controlnet: SeeSRControlNet, x: dict[str, torch.Tensor]) -> tuple[float, float]:
    """One ControlNet + UNet forward as the pipeline runs it; returns (controlnet s, unet s)."""
    start = time.perf_counter()
    down, mid = controlnet(x["sample"], 981, x["text"], controlnet_cond=x["control"],
                           image_encoder_hidden_states=x["dape"], return_dict=False)
    middle = time.perf_counter()
    out = unet(x["sample"], 981, x["text"], image_encoder_hidden_states=x["dape"],
               down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    end = time.perf_counter()
    if not torch.isfinite(out).all():
        raise RuntimeError("non-finite UNet output with random weights")
    return middle - start, end - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    unet = SeeSRUNet.from_config({**SD2_SEESR, "sample_size": 64}).eval()
    controlnet = SeeSRControlNet.from_config(SD2_SEESR).eval()
    built = time.perf_counter() - start
    counts = {name: sum(p.numel() for p in model.parameters()) for name, model in
              (("unet", unet), ("controlnet", controlnet))}
    x = _inputs()
    with torch.inference_mode():
        _step(unet, controlnet, x)  # warm-up
        runs = [_step(unet, controlnet, x) for _ in range(args.reps)]
    control = statistics.median(r[0] for r in runs)
    denoise = statistics.median(r[1] for r in runs)
    total = statistics.median(sum(r) for r in runs)
    print(f"SeeSR ControlNet + UNet, full size, random weights (built in {built:.1f} s), float32 CPU, "
          f"{args.threads} threads, 1 warm-up + median of {args.reps}; load average {os.getloadavg()[0]:.2f}")
    for name, count in counts.items():
        print(f"  {name:10s} {count:,} parameters (official {OFFICIAL[name]:,})")
    print(f"  ControlNet + UNet, batch 2, latent 64x64: {total:.2f} s   (official 20.3 s)")
    print(f"    ControlNet {control:.2f} s (official 5.7 s); UNet {denoise:.2f} s (official 14.6 s)")
    print(f"  runs (controlnet s, unet s): {[(round(a, 2), round(b, 2)) for a, b in runs]}")


if __name__ == "__main__":
    main()

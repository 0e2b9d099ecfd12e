"""CPU time of one full-size SeeSR ControlNet + UNet forward (one CFG step), random weights:
stock modules (eager) against the oneDNN path (seesr_cli.models.cpu_fast.use_onednn).

Matches the reference timing protocol (fixtures manifests/timing.json): batch 2,
latent 64x64 (512x512 output), text states (2, 77, 1024), DAPE states
(2, 145, 512), control image (2, 3, 512, 512), float32, 2 threads. Official code on a
2-core AMD EPYC: 20.3 s (ControlNet 5.7 s, UNet 14.6 s).

One set of weights serves both paths: each round switches the models to the stock
classes, times a step, switches them to oneDNN, times a step (interleaved, so a change in
machine load hits both alike). Prints medians of wall and CPU seconds (CPU time is the
steadier figure on a shared machine), the best wall time, the ratio fast/eager and each
against the official 20.3 s, the first fast call (which packs the convolution
weights), peak memory, and the largest output difference relative to max |output|.
Needs about 11 GB of memory.

    python bench/bench_models.py [--threads 2] [--rounds 3] [--size 64x64]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see bench/README.md)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)

from seesr_cli.models.controlnet import SeeSRControlNet  # noqa: E402
from seesr_cli.models.cpu_fast import use_onednn, use_stock  # noqa: E402
from seesr_cli.models.unet import SeeSRUNet  # noqa: E402

# SD2-base's UNet (diffusers defaults otherwise) with SeeSR's RCA blocks: the official config.json.
SD2_SEESR = {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "use_image_cross_attention": True,
}
OFFICIAL = {"unet": 1_126_760_324, "controlnet": 489_031_440}
OFFICIAL_SECONDS = 20.3


def _inputs(height: int, width: int, batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(batch, 4, height, width, generator=generator),
        "text": torch.randn(batch, 77, 1024, generator=generator),
        "dape": torch.randn(batch, 145, 512, generator=generator),
        "control": torch.rand(batch, 3, 8 * height, 8 * width, generator=generator),
    }


def _step(unet: SeeSRUNet, controlnet: SeeSRControlNet, x: dict[str, torch.Tensor]):
    """One ControlNet + UNet forward as the pipeline runs it; returns (output, controlnet s, unet s, cpu s,
    thousands of minor page faults)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu = time.process_time()
    start = time.perf_counter()
    down, mid = controlnet(x["sample"], 981, x["text"], controlnet_cond=x["control"],
                           image_encoder_hidden_states=x["dape"], return_dict=False)
    middle = time.perf_counter()
    out = unet(x["sample"], 981, x["text"], image_encoder_hidden_states=x["dape"],
               down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    end = time.perf_counter()
    if not torch.isfinite(out).all():
        raise RuntimeError("non-finite UNet output with random weights")
    cpu = time.process_time() - cpu
    return out, middle - start, end - middle, cpu, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 1e3


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _summary(name: str, runs: list[tuple], eager: list[tuple] | None = None) -> str:
    wall = statistics.median(r[0] + r[1] for r in runs)
    control = statistics.median(r[0] for r in runs)
    denoise = statistics.median(r[1] for r in runs)
    cpu = statistics.median(r[2] for r in runs)
    best = min(r[0] + r[1] for r in runs)
    versus = cpu_versus = ""
    if eager is not None:
        versus = f", {wall / statistics.median(r[0] + r[1] for r in eager):.3f} x eager"
        cpu_versus = f" = {cpu / statistics.median(r[2] for r in eager):.3f} x eager"
    return (f"  {name:6s} {wall:6.2f} s = {wall / OFFICIAL_SECONDS:.3f} x official{versus}   "
            f"(ControlNet {control:.2f} + UNet {denoise:.2f}; best {best:.2f} s; CPU {cpu:.1f} s{cpu_versus})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed eager/fast pairs after one warm-up each")
    parser.add_argument("--size", default="64x64", help="latent height x width")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cpu = torch.device("cpu")
    unet = _models._build(lambda: SeeSRUNet.from_config({**SD2_SEESR, "sample_size": 64}), cpu, torch.float32, 0)
    controlnet = _models._build(lambda: SeeSRControlNet.from_config(SD2_SEESR), cpu, torch.float32, 1)
    built = time.perf_counter() - start
    counts = {name: sum(p.numel() for p in model.parameters()) for name, model in
              (("unet", unet), ("controlnet", controlnet))}
    x = _inputs(height, width)
    with torch.inference_mode():
        reference = _step(unet, controlnet, x)[0]  # eager warm-up
        use_onednn(unet, controlnet)
        first = time.perf_counter()
        fast_out = _step(unet, controlnet, x)[0]  # packs the convolution weights
        first = time.perf_counter() - first
        eager, fast = [], []
        for _ in range(args.rounds):
            use_stock(unet, controlnet, keep_packed=True)
            eager.append(_step(unet, controlnet, x)[1:])
            use_onednn(unet, controlnet)
            fast.append(_step(unet, controlnet, x)[1:])
    diff = ((fast_out - reference).abs().max() / reference.abs().max()).item()
    print(f"SeeSR ControlNet + UNet, full size, random weights (built in {built:.1f} s), float32 CPU, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, batch 2, latent "
          f"{height}x{width}; warm-up + median of {args.rounds} interleaved rounds; "
          f"load average {_models.load_average()}")
    for name, count in counts.items():
        print(f"  {name:10s} {count:,} parameters (official {OFFICIAL[name]:,})")
    print(_summary("eager", eager))
    print(_summary("oneDNN", fast, eager))
    print(f"  official {OFFICIAL_SECONDS} s (ControlNet 5.7 + UNet 14.6), at 64x64")
    fast_wall = statistics.median(r[0] + r[1] for r in fast)
    print(f"  oneDNN first call {first:.2f} s (packing the conv weights: ~{first - fast_wall:.1f} s more than a step); "
          f"peak RSS {_peak_gib():.1f} GiB; "
          f"max |fast - eager| / max |eager| = {diff:.1e}")
    print(f"  runs eager (controlnet s, unet s, cpu s, k faults): {[tuple(round(v, 2) for v in r) for r in eager]}")
    print(f"  runs oneDNN:                                         {[tuple(round(v, 2) for v in r) for r in fast]}")


if __name__ == "__main__":
    main()

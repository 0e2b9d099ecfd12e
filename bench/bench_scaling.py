"""How time and memory grow with output size: tiny random models, fixed tile size, 0.25 to 16 megapixels.

Each size runs in a fresh subprocess (so peak memory is that size's alone): build
the tiny models, one warm-up upscale at the smallest size (1 step), reset the
peak-RSS counter (`/proc/self/clear_refs` 5; else the warm-up peak stays in the
figure), note the baseline RSS, then one upscale at the size (default 2 DDPM
steps, CFG, per-tile DAPE, adain). Reported per size: seconds per output megapixel
(whole `upscale()` wall time, its CPU time -- steadier than wall time on
a shared machine with 1 thread -- and the denoise part), peak RSS raw and minus the
baseline, and that delta per megapixel. Goal: both per-megapixel figures flat
within 10% across sizes. Output sides are 512, 1024, 2048, 4096 (LR = out / 4).

    python bench/bench_scaling.py [--sizes 0.25,1,4,16] [--tile-size 64] [--overlap 16] [--steps 2] [--threads 1]
"""

from __future__ import annotations

import os

# Before torch loads: on a shared, loaded machine OpenMP's spinning waits make a
# 2-thread run several times slower; passive waits cost nothing measurable here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402  (puts the repo root on sys.path)
from bench_pipeline import lr_image  # noqa: E402

from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402

MB = 1 << 20


def _status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (VmRSS, VmHWM); None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    hwm = _status_kb("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def side_for(megapixels: float) -> int:
    """Output edge for a square of `megapixels` (2^20 px), a multiple of 32 (LR = edge / 4, on the latent grid)."""
    return max(32, round(megapixels ** 0.5 * 1024 / 32) * 32)


def child(args: argparse.Namespace) -> dict:
    """One size, in this (fresh) process: returns the measurements."""
    torch.set_num_threads(args.threads)
    _models.quiet_libraries()
    device = torch.device("cpu")
    pipe = SeeSRPipeline(**_models.tiny_components(device, "fp32", reference=args.reference), device=device,
                         dtype=torch.float32)
    settings = UpscaleSettings(steps=args.steps, tile_size=args.tile_size, tile_overlap=args.overlap,
                               tile_batch=args.tile_batch)
    pipe.upscale(lr_image(32, 32, seed=1), settings.with_(steps=1))  # warm-up: 512x512 output
    reset = _reset_peak()
    baseline = (_status_kb("VmRSS") or 0) * 1024
    side = side_for(args.child)
    image = lr_image(side // 4, side // 4, seed=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = pipe.upscale(image, settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "side": side, "megapixels": side * side / 1e6, "seconds": seconds, "cpu": cpu, "timings": result.timings,
        "tiles": len(result.prompts), "steps": args.steps, "tile_size": args.tile_size,
        "peak": _peak_bytes(), "baseline": baseline, "peak_reset": reset, "notes": result.notes,
    }


def run_size(args: argparse.Namespace, megapixels: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(megapixels),
               "--tile-size", str(args.tile_size), "--overlap", str(args.overlap), "--steps", str(args.steps),
               "--threads", str(args.threads)]
    if args.tile_batch is not None:
        command += ["--tile-batch", str(args.tile_batch)]
    if args.reference:
        command += ["--reference", args.reference]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"size {megapixels} MP failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict]) -> None:
    print(f"  {'output':>11s} {'MP':>6s} {'tiles':>5s} {'total s':>8s} {'s/MP':>7s} {'CPU s/MP':>8s} "
          f"{'denoise s/MP':>12s} {'s/tile-step':>11s} "
          f"{'peak RSS MB':>11s} {'baseline MB':>11s} {'delta MB':>9s} {'delta MB/MP':>11s}")
    for r in rows:
        delta = (r["peak"] - r["baseline"]) / MB
        print(f"  {r['side']:>5d}x{r['side']:<5d} {r['megapixels']:6.2f} {r['tiles']:5d} {r['seconds']:8.2f} "
              f"{r['seconds'] / r['megapixels']:7.2f} {r['cpu'] / r['megapixels']:8.2f} "
              f"{r['timings']['denoise'] / r['megapixels']:12.2f} "
              f"{r['timings']['denoise'] / (r['tiles'] * r['steps']):11.3f} "
              f"{r['peak'] / MB:11.0f} {r['baseline'] / MB:11.0f} {delta:9.0f} {delta / r['megapixels']:11.1f}")
    measures = {"s/MP": lambda r: r["seconds"], "CPU s/MP": lambda r: r["cpu"],
                "delta RSS/MP": lambda r: r["peak"] - r["baseline"]}
    for label, measure in measures.items():
        values = [measure(r) / r["megapixels"] for r in rows]
        spread = max(values) / min(values) - 1 if min(values) > 0 else float("inf")
        print(f"  {label}: max/min - 1 = {100 * spread:.0f}% (goal <= 10%)")
    # Overlapping tiles cover more latent area than the image; small images fit in one tile (no overlap).
    print("  tiled latent area / image latent area: " + ", ".join(
        f"{r['side']}: {r['tiles'] * min(r['tile_size'], r['side'] // 8) ** 2 / (r['side'] // 8) ** 2:.2f}"
        for r in rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.25,1,4,16", help="output megapixels (2^20 px), comma-separated")
    parser.add_argument("--tile-size", type=int, default=64, help="latent px")
    parser.add_argument("--overlap", type=int, default=16, help="latent px")
    parser.add_argument("--tile-batch", type=int, default=None, help="tiles per forward (default: the pipeline's)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", default=None, help="reference fixtures folder (small files only)")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"SeeSR pipeline scaling, tiny random models, CPU fp32, {args.threads} torch thread(s), "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, tile {args.tile_size} overlap {args.overlap} (latent px), "
          f"{args.steps} DDPM steps, CFG 5.5, per-tile DAPE; one fresh process per size", flush=True)
    print(f"  load average at start: {_models.load_average()}", flush=True)
    rows = []
    for megapixels in sizes:
        rows.append(run_size(args, megapixels))
        r = rows[-1]
        print(f"  {r['side']}x{r['side']}: {r['seconds']:.2f} s, peak RSS {r['peak'] / MB:.0f} MB "
              f"(baseline {r['baseline'] / MB:.0f} MB{'' if r['peak_reset'] else ', peak NOT reset after warm-up'})"
              f"{'; notes: ' + str(r['notes']) if r['notes'] else ''}", flush=True)
    print_table(rows)
    stages = sorted({k for r in rows for k in r["timings"]})
    print("  stage seconds per MP: " + "; ".join(
        f"{r['side']}: " + ", ".join(f"{k} {r['timings'][k] / r['megapixels']:.2f}" for k in stages) for r in rows))
    print(f"  load average at end: {_models.load_average()}", flush=True)


if __name__ == "__main__":
    main()

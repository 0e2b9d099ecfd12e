"""Issue 13's GPU figures in one run: full-size random weights, each section under a time budget.

    python bench/gpu_suite.py --out $OUT                        # one H200/H100: ~9 minutes
    python bench/gpu_suite.py --device cpu --tiny --out bench/out/smoke   # smoke test, ~2 min on a CPU

Sections, in this order (cheap and certain first; the compiles last):
  eager     512x512 output, 50 steps, eager fp16 and bf16 at the default tile batch (8) and at 1
  kernels   one ControlNet+UNet forward per dtype: ms, profile per kind of kernel (why fp16 is slower)
  lowvram   2048x2048 at the budget `--max-vram 8` gives: resident vs offloaded at the same tiles (the
            cost in seconds, the pixel difference), offloaded under set_per_process_memory_fraction(8 GiB)
            with each stage's peak against its estimate
  large     2048x2048 and 4096x4096 outputs, eager fp16: seconds (fewer steps, scaled to 50) and peak VRAM
  compiled  torch.compile with CUDA graphs at the default tile batch and at 1, in the faster dtype: first
            image (the compile), seconds per image, pixels vs eager
  batch     64 images of 512x512 output, compiled: images/hour (SeeSRPipeline.upscale_many when the
            cross-image batching is there, else one image at a time), pixels of one vs eager
  turbo     SeeSR-Turbo settings (2 steps, no guidance): seconds per image, eager and compiled
Results: OUT/gpu_suite.json (everything) and OUT/gpu_suite.md (the table), rewritten after each
section, and by a watchdog when the total budget runs out.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (bench/README.md)

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # this checkout's seesr_cli, whatever is installed
import _kernels  # noqa: E402
import _models  # noqa: E402
from _suite import (  # noqa: E402
    GIB,
    Suite,
    diff_text,
    environment,
    fifty,
    peak,
    peak_text,
    pixel_diff,
    reset_peak,
    timed,
)
from bench_pipeline import lr_image  # noqa: E402

from seesr_cli.core.geometry import latent_tiles, plan_geometry  # noqa: E402
from seesr_cli.errors import UsageError  # noqa: E402
from seesr_cli.pipeline import SeeSRPipeline  # noqa: E402
from seesr_cli.pipeline.placement import MemoryBudget, check_max_vram, memory_budget, network_bytes  # noqa: E402
from seesr_cli.pipeline.plan import plan_run  # noqa: E402
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings  # noqa: E402

CAST = ("unet", "controlnet", "vae", "text_encoder")  # DAPE stays float32, as the loader keeps it
NETWORKS = ("dape", "text_encoder", "vae", "controlnet", "unet")


class Bench:
    """The models (built once), the arguments and what sections hand to later ones."""

    def __init__(self, args, device: torch.device, parts: dict):
        self.args, self.device, self.parts = args, device, parts
        self.dtype_name = args.dtypes[0]
        self.default_batch = DEVICE_BATCH[device.type]
        self.eager: dict = {}  # (dtype, tile batch) -> (seconds, result) of the 512 image
        self.fastest = args.dtypes[0]
        self.compiled: dict = {}  # tile batch -> seconds per image
        self.compile_seconds = 5 if args.tiny else 60  # the least a new shape's compile takes (H100: 60-96 s)

    def cast(self, name: str) -> None:
        for key in CAST:
            self.parts[key].to(_models.DTYPES[name])
        self.dtype_name = name

    def pipe(self, *, turbo: bool = False, budget: MemoryBudget | None = None) -> SeeSRPipeline:
        return SeeSRPipeline(**self.parts, device=self.device, dtype=_models.DTYPES[self.dtype_name], turbo=turbo,
                             budget=budget)

    def compiled_pipe(self, turbo: bool = False) -> SeeSRPipeline:
        return self.pipe(turbo=turbo).compile(mode=self.args.compile_mode, backend=self.args.compile_backend)

    def image(self, size: int, seed: int = 0):
        lr = max(8, size // 4)
        return lr_image(lr, lr, seed=seed)

    def tile_batches(self) -> tuple[int, ...]:
        """The default tile batch, and 1 when `--size` makes several latent tiles (else the same forward)."""
        settings = self.settings().resolved(False, self.device.type)
        plan, lr = plan_run(settings, self.device.type), max(8, self.args.size // 4)
        tiles = latent_tiles(plan_geometry(lr, lr, settings), plan.tile, plan.overlap)
        return tuple(dict.fromkeys((self.default_batch, 1))) if len(tiles) > 1 else (self.default_batch,)

    def settings(self, **changes) -> UpscaleSettings:
        return UpscaleSettings(**{"steps": self.args.steps, "seed": self.args.seed, **changes})


# ----------------------------------------------------------------------------- sections


def eager(b: Bench, sec) -> None:
    image, runs = b.image(b.args.size), b.args.runs
    for name in b.args.dtypes:
        b.cast(name)
        pipe = b.pipe()
        for batch in b.tile_batches():
            if sec.left() < 5:
                sec.note(f"{name} tile batch {batch}: no time left")
                continue
            settings = b.settings(tile_batch=batch)
            reset_peak(b.device)
            warm, _ = timed(pipe, image, settings, b.device)
            times, result = [], None
            for _ in range(runs if batch == b.default_batch else 1):
                seconds, result = timed(pipe, image, settings, b.device)
                times.append(seconds)
                if sec.left() < 0:
                    break
            median = statistics.median(times)
            b.eager[(name, batch)] = (median, result)
            key = f"{name}_tb{batch}"
            sec.data[key] = {"seconds": times, "warm_up": warm, "timings": result.timings, "notes": result.notes,
                             **peak(b.device)}
            sec.row(f"{b.args.size}px {b.args.steps} steps, eager {name}, tile batch {batch}",
                    f"{median:.3f} s/image ({3600 / median:.0f}/h), {peak_text(peak(b.device))}"
                    + (f"; NOTES {result.notes}" if result.notes else ""), "<= 0.8 s (any path)")
    done = {name: b.eager[(name, b.default_batch)][0] for name in b.args.dtypes if (name, b.default_batch) in b.eager}
    if done:
        b.fastest = min(done, key=done.get)
        sec.data["fastest"] = b.fastest
        sec.row("faster dtype (eager, default tile batch)", b.fastest)
    if len(done) == 2:
        (n1, r1), (n2, r2) = [(n, b.eager[(n, b.default_batch)][1]) for n in done]
        sec.row(f"pixels {n1} vs {n2} (not a fast path: precision)", diff_text(pixel_diff(r1, r2)))


def kernels(b: Bench, sec) -> None:
    unet, controlnet = b.parts["unet"], b.parts["controlnet"]
    sec.data["attention"] = _kernels.attention_facts(unet)
    latent, profiles = b.args.size // 8, {}
    for name in b.args.dtypes:
        b.cast(name)
        dtype = _models.DTYPES[name]
        for batch in dict.fromkeys((b.default_batch, 1)):
            rows = 2 * batch
            ms = _kernels.forward_ms(unet, controlnet, _kernels.inputs(unet, rows, latent, b.device, dtype), b.device)
            sec.data[f"{name}_rows{rows}_ms"] = ms
            sec.row(f"ControlNet+UNet forward, {rows} rows of {latent}x{latent}, {name}", f"{ms:.2f} ms")
        if sec.left() < 10:
            sec.note("no time left to profile")
            continue
        args = _kernels.inputs(unet, 2 * b.default_batch, latent, b.device, dtype)
        profiles[name] = _kernels.profile(unet, controlnet, args, b.device)
        sec.data[f"profile_{name}"] = profiles[name]
    if profiles:
        sec.blocks.append(_kernels.table(profiles))
    if len(profiles) == 2:
        first, second = profiles.values()
        gaps = {k: first["per_kind_ms"].get(k, 0.0) - second["per_kind_ms"].get(k, 0.0)
                for k in {*first["per_kind_ms"], *second["per_kind_ms"]}}
        top = sorted(gaps.items(), key=lambda kv: -abs(kv[1]))[:3]
        sec.row(f"kernel time {' - '.join(profiles)} by kind (largest)", ", ".join(f"{k} {v:+.2f} ms" for k, v in top))
    notes = [n for key, d in b.eager.items() for n in d[1].notes if "non-finite" in n]
    sec.row("fp16 runs redone in fp32 (non-finite)", "yes: " + notes[0] if notes else "none seen")
    sec.row("attention", f"upcast_attention={sec.data['attention']['upcast_attention']}, "
            f"processors {', '.join(sec.data['attention']['processors'])}")
    if b.device.type == "cuda" and "fp16" in b.args.dtypes and sec.left() > 10:
        b.cast("fp16")
        torch.backends.cudnn.benchmark = True
        try:
            args = _kernels.inputs(unet, 2 * b.default_batch, latent, b.device, torch.float16)
            ms = _kernels.forward_ms(unet, controlnet, args, b.device)
        finally:
            torch.backends.cudnn.benchmark = False
        sec.data["fp16_cudnn_benchmark_ms"] = ms
        sec.row("same fp16 forward with cudnn.benchmark=True (conv algorithm search)", f"{ms:.2f} ms")


def lowvram(b: Bench, sec) -> None:
    size, steps = b.args.lowvram_size, b.args.lowvram_steps
    b.cast(b.args.dtypes[0])
    dtype = _models.DTYPES[b.dtype_name]
    networks = {name: b.parts[name] for name in NETWORKS}
    if b.device.type == "cuda" and not b.args.tiny:
        budget = memory_budget(b.args.max_vram, b.device, networks, dtype)
    else:  # the estimates are for the full-size networks: only the mechanics are smoke-tested here
        budget = MemoryBudget(int(b.args.max_vram * GIB), f"--max-vram {b.args.max_vram:g}", True,
                              network_bytes(networks), torch.tensor([], dtype=dtype).element_size())
    if not budget.offload:
        sec.note("the budget keeps every network resident; offloading anyway to measure it")
        budget = MemoryBudget(budget.limit, budget.source, True, budget.weights, budget.dtype_bytes)
    fitted, notes = budget.fit(b.settings(steps=steps).resolved(False, b.device.type), b.device.type)
    sec.data.update(budget_gib=b.args.max_vram, settings={k: getattr(fitted, k) for k in
                    ("tile_batch", "vae_encoder_tile", "vae_decoder_tile")}, notes=notes)
    sec.row(f"--max-vram {b.args.max_vram:g} plan ({b.dtype_name})", f"tile batch {fitted.tile_batch}, VAE encoder "
            f"tile {fitted.vae_encoder_tile}, decoder tile {fitted.vae_decoder_tile}")
    image = b.image(size)
    resident = b.pipe()
    timed(resident, image, fitted.with_(steps=1), b.device)  # warm-up at these shapes
    reset_peak(b.device)
    r_seconds, r_result = timed(resident, image, fitted, b.device)
    r_memory = peak(b.device)
    sec.data["resident"] = {"seconds": r_seconds, "timings": r_result.timings, **r_memory}
    del resident
    moves: dict[str, float] = {}
    stage_peaks: dict[str, float] = {}
    overall = {"peak_allocated_gib": 0.0, "peak_reserved_gib": 0.0}  # each stage resets the peaks: kept here

    def keep_peak() -> dict:
        overall.update({k: max(overall[k], v) for k, v in peak(b.device).items()})
        return overall

    def on_move(action: str, stage: str, seconds: float) -> None:
        if b.device.type == "cuda":
            torch.cuda.synchronize(b.device)
            if action == "load":
                keep_peak()  # what came before this stage
                torch.cuda.reset_peak_memory_stats(b.device)
            else:
                stage_peaks[stage] = max(stage_peaks.get(stage, 0.0), torch.cuda.max_memory_allocated(b.device) / GIB)
        moves[action] = moves.get(action, 0.0) + seconds

    offloaded = b.pipe(budget=budget)  # moves every network to CPU RAM
    offloaded.placement.on_move = on_move
    total = torch.cuda.get_device_properties(b.device).total_memory if b.device.type == "cuda" else 0
    try:
        if total:
            reset_peak(b.device)
            torch.cuda.set_per_process_memory_fraction(min(1.0, budget.limit / total), b.device)
        o_seconds, o_result = timed(offloaded, image, fitted, b.device)
        memory = dict(keep_peak()) if total else {}
    finally:
        if total:
            torch.cuda.set_per_process_memory_fraction(1.0, b.device)
        b.pipe()  # every network back on the device (resident placement)
    denoise = o_result.timings.get("denoise", 0.0)
    sec.data["offloaded"] = {"seconds": o_seconds, "timings": o_result.timings, "notes": o_result.notes,
                             "move_seconds": moves, "stage_peaks_gib": stage_peaks, **memory}
    sec.row(f"{size}px {steps} steps, resident at these tiles", f"{r_seconds:.2f} s, {peak_text(r_memory)}")
    other = [n for n in o_result.notes if not n.startswith(budget.source)]  # e.g. an out-of-memory fallback
    sec.row(f"{size}px {steps} steps, offloaded under {b.args.max_vram:g} GiB",
            f"{o_seconds:.2f} s ({fifty(o_seconds, denoise, steps, 50):.1f} s at 50 steps), {peak_text(memory)}"
            + (f"; NOTES {other}" if other else ""), f"<= {b.args.max_vram:g} GiB")
    sec.row("cost of offloading (same tiles)", f"{o_seconds - r_seconds:+.2f} s per image "
            f"(copies enqueued in {sum(moves.values()):.2f} s)")
    sec.row("pixels offloaded vs resident (same tiles)", diff_text(pixel_diff(o_result, r_result)), "0 LSB")
    if stage_peaks:
        estimates = {s: budget.stage_need(s, fitted, b.device.type) / GIB for s in stage_peaks}
        sec.data["stage_estimates_gib"] = estimates
        sec.row("stage peak / estimate (GiB)", ", ".join(f"{s} {stage_peaks[s]:.2f}/{estimates[s]:.2f}"
                                                           for s in stage_peaks))


def large(b: Bench, sec) -> None:
    b.cast(b.args.dtypes[0])
    pipe, warmed = b.pipe(), False
    for size, steps in b.args.large:
        if sec.left() < 10:
            sec.note(f"{size}px: no time left")
            continue
        image, settings = b.image(size), b.settings(steps=steps)
        if not warmed:
            timed(pipe, image, settings.with_(steps=1), b.device)
            warmed = True
        reset_peak(b.device)
        seconds, result = timed(pipe, image, settings, b.device)
        denoise = result.timings.get("denoise", 0.0)
        at_fifty = fifty(seconds, denoise, steps, 50)
        sec.data[f"{size}"] = {"steps": steps, "seconds": seconds, "seconds_at_50": at_fifty,
                               "tiles": len(result.tiles), "timings": result.timings, "notes": result.notes,
                               **peak(b.device)}
        scaled = "" if steps == 50 else f" ({steps} steps run, denoise scaled per step)"
        sec.row(f"{size}x{size} output, eager {b.dtype_name}, {len(result.tiles)} tiles",
                f"{at_fifty:.1f} s at 50 steps{scaled}, {peak_text(peak(b.device))}")


def compiled(b: Bench, sec) -> None:
    b.cast(b.fastest)
    image = b.image(b.args.size)
    for batch in b.tile_batches():
        if sec.left() < b.compile_seconds:
            sec.note(f"tile batch {batch}: no time left for a compile")
            continue
        pipe, settings = b.compiled_pipe(), b.settings(tile_batch=batch)
        first, _ = timed(pipe, image, settings, b.device)
        times, result = [], None
        for _ in range(b.args.runs):
            seconds, result = timed(pipe, image, settings, b.device)
            times.append(seconds)
        median = statistics.median(times)
        b.compiled[batch] = median
        reference = b.eager.get((b.fastest, batch))
        diff = pixel_diff(result, reference[1]) if reference else {"max_lsb": None, "note": "no eager reference"}
        sec.data[f"tb{batch}"] = {"first": first, "seconds": times, "pixels_vs_eager": diff, **peak(b.device)}
        sec.row(f"{b.args.size}px {b.args.steps} steps, compiled {b.fastest}, tile batch {batch}",
                f"{median:.3f} s/image ({3600 / median:.0f}/h); first image {first:.1f} s", "<= 0.8 s")
        sec.row(f"pixels compiled vs eager, tile batch {batch}", diff_text(diff), "<= 1 LSB")
    sec.data["dynamo"] = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if k in ("stats", "recompiles")}


def batch(b: Bench, sec) -> None:
    b.cast(b.fastest)
    images = [b.image(b.args.size, seed=i + 1) for i in range(b.args.batch)]
    many = hasattr(SeeSRPipeline, "upscale_many")
    tile_batch = b.default_batch if many or not b.compiled else min(b.compiled, key=b.compiled.get)
    settings = b.settings(tile_batch=tile_batch)
    pipe = b.compiled_pipe()
    timed(pipe, images[0], settings, b.device)  # the compile (once per shape)
    start, results = time.perf_counter(), []
    if many:  # its signature is the xbatch branch's: (images, one settings per image) is a guess
        try:
            results = list(pipe.upscale_many(images, [settings.with_(seed=b.args.seed + i)
                                                      for i in range(len(images))]))
            how = "upscale_many (tiles of different images share forwards)"
        except TypeError as exc:
            sec.note(f"upscale_many(images, settings per image) refused: {exc}; one image at a time instead")
            many, start = False, time.perf_counter()
    if not many:
        for i, image in enumerate(images):
            results.append(timed(pipe, image, settings.with_(seed=b.args.seed + i), b.device)[1])
            if sec.left() < 15:
                break
        how = "one image at a time (no SeeSRPipeline.upscale_many here)"
    seconds = time.perf_counter() - start
    rate = 3600 * len(results) / seconds
    reference = timed(b.pipe(), images[0], settings.with_(seed=b.args.seed), b.device)[1]
    diff = pixel_diff(results[0], reference)
    sec.data.update(images=len(results), seconds=seconds, per_hour=rate, how=how, tile_batch=tile_batch,
                    pixels_vs_eager=diff)
    sec.row(f"{len(results)} of {len(images)} images {b.args.size}px, compiled {b.fastest}, tile batch {tile_batch}",
            f"{rate:.0f} images/hour ({seconds / len(results):.3f} s/image); {how}", ">= 7000/h")
    sec.row("pixels of image 1 in the batch vs eager alone", diff_text(diff), "<= 1 LSB")


def turbo(b: Bench, sec) -> None:
    b.cast(b.fastest)
    image, settings = b.image(b.args.size), UpscaleSettings(seed=b.args.seed, tile_batch=1)
    results = {}
    for label, make in (("eager", lambda: b.pipe(turbo=True)), ("compiled", lambda: b.compiled_pipe(turbo=True))):
        if sec.left() < (10 if label == "eager" else b.compile_seconds):
            sec.note(f"{label}: no time left")
            continue
        pipe = make()
        first, _ = timed(pipe, image, settings, b.device)
        runs = [timed(pipe, image, settings, b.device) for _ in range(b.args.runs)]
        median = statistics.median(s for s, _ in runs)
        results[label] = runs[-1][1]
        sec.data[label] = {"first": first, "seconds": [s for s, _ in runs]}
        sec.row(f"turbo settings (2 steps, no guidance) {b.args.size}px, {label} {b.fastest}",
                f"{median:.3f} s/image; first {first:.1f} s", "<= 0.1 s/image")
    if len(results) == 2:
        sec.row("pixels turbo compiled vs eager", diff_text(pixel_diff(results["compiled"], results["eager"])),
                "<= 1 LSB")


SECTIONS = {  # name: (function, cap s, minimum s to start), on an H200
    "eager": (eager, 50, 20), "kernels": (kernels, 30, 10), "lowvram": (lowvram, 50, 25),
    "large": (large, 60, 20), "compiled": (compiled, 190, 60), "batch": (batch, 70, 30), "turbo": (turbo, 40, 15),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "bench/out/gpu_suite"))
    p.add_argument("--budget", type=float, default=540, help="total seconds (sections stop or are skipped)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models and sizes: a smoke test")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--dtypes", default="fp16,bf16", help="the first also runs lowvram and large")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--runs", type=int, default=2, help="timed runs after the warm-up")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--large", default="2048:50,4096:10", help="SIZE:STEPS,... (time scaled to 50 steps)")
    p.add_argument("--max-vram", type=float, default=8.0)
    p.add_argument("--lowvram", default="2048:10", help="SIZE:STEPS")
    p.add_argument("--compile-mode", default=None, help="default reduce-overhead (CUDA graphs); CPU: none")
    p.add_argument("--compile-backend", default=None, help="default inductor; CPU: eager (dynamo only, quick)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reference", default=None, help="reference fixtures folder (small files only)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (sections, caps, sizes, the --max-vram "
                   "tiles) and exit: no models, no device needed")
    args = p.parse_args(argv)
    if args.tiny:  # sizes a CPU runs in seconds per image
        defaults = {"size": 128, "steps": 2, "batch": 4, "large": "256:2,512:1", "lowvram": "256:2", "runs": 1}
        for key, value in defaults.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    cpu = args.device.startswith("cpu")
    args.compile_mode = args.compile_mode or (None if cpu else "reduce-overhead")
    args.compile_backend = args.compile_backend or ("eager" if cpu else "inductor")
    args.dtypes = args.dtypes.split(",")
    args.large = [tuple(int(x) for x in item.split(":")) for item in args.large.split(",") if item]
    args.lowvram_size, args.lowvram_steps = (int(x) for x in args.lowvram.split(":"))
    if cpu and "fp16" in args.dtypes:
        args.dtypes = ["bf16" if d == "fp16" else d for d in args.dtypes]  # fp16 on a CPU: ~100x slower
        args.dtypes = list(dict.fromkeys(["fp32", *args.dtypes]))[:2]
    unknown = set(args.dtypes) - set(_models.DTYPES)
    if unknown:
        p.error(f"unknown dtypes: {', '.join(sorted(unknown))} (use {', '.join(_models.DTYPES)})")
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if "lowvram" in args.sections and not cpu:
        try:  # the official networks' sizes: a budget too small is refused before any model is built
            check_max_vram(args.max_vram, _models.DTYPES[args.dtypes[0]])
        except UsageError as exc:
            p.error(str(exc))
    return args


def dry_run(args: argparse.Namespace) -> int:
    """The plan, from the arguments alone: what a GPU run would do, in what time."""
    caps = {name: SECTIONS[name][1] for name in args.sections}
    print(f"device {args.device} (CUDA available here: {torch.cuda.is_available()}), dtypes {args.dtypes}, "
          f"budget {args.budget:.0f} s, out {args.out}")
    print(f"  {args.size}px {args.steps} steps x {args.runs} runs; batch of {args.batch}; large "
          + ", ".join(f"{size}px at {steps} steps" for size, steps in args.large)
          + f"; lowvram {args.lowvram_size}px at {args.lowvram_steps} steps under --max-vram {args.max_vram:g}")
    if args.device.startswith("cpu"):
        print("  lowvram on the CPU: the mechanics only (an offloading budget over the models built), no memory cap")
    else:
        budget = check_max_vram(args.max_vram, _models.DTYPES[args.dtypes[0]])  # parse_args refused a bad one
        fitted, notes = budget.fit(UpscaleSettings().resolved(False, "cuda"), "cuda")
        print(f"  --max-vram {args.max_vram:g} ({args.dtypes[0]}, full size): offload {budget.offload}, tile batch "
              f"{fitted.tile_batch}, VAE encoder tile {fitted.vae_encoder_tile}, decoder tile "
              f"{fitted.vae_decoder_tile}")
        for note in notes:
            print(f"    note: {note}")
    for name, cap in caps.items():
        print(f"  [{name}] cap {cap} s, starts with >= {SECTIONS[name][2]} s left")
    print(f"  caps sum to {sum(caps.values())} s of {args.budget:.0f} s (the watchdog ends the run at budget + 5 s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    _models.quiet_libraries()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu --tiny for a smoke test, or --dry-run", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    suite = Suite(Path(args.out), args.budget, environment(device, args.tiny, args.budget))
    suite.meta["args"] = {k: v for k, v in vars(args).items()}
    print(f"{suite.meta['device_name']}: {suite.meta['weights']}, budget {args.budget:.0f} s -> {args.out}", flush=True)
    start = time.perf_counter()
    build = _models.tiny_components if args.tiny else _models.full_size_components
    parts = build(device, args.dtypes[0], seed=args.seed, reference=args.reference)
    suite.meta["build_s"] = round(time.perf_counter() - start, 1)
    suite.meta["parameters_m"] = {k: round(v / 1e6, 1) for k, v in _models.parameter_counts(parts).items()}
    print(f"built in {suite.meta['build_s']} s: {suite.meta['parameters_m']}", flush=True)
    bench = Bench(args, device, parts)
    for name in args.sections:
        function, cap, minimum = SECTIONS[name]
        with suite.section(name, cap=cap, minimum=minimum if not args.tiny else 1) as sec:
            if sec is not None:
                function(bench, sec)
    suite.write()
    print((Path(args.out) / "gpu_suite.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 13's GPU figures in one run: full-size random weights, each section under a time budget.

    python bench/gpu_suite.py --dry-run                         # the plan; no models, no GPU
    python bench/gpu_suite.py --out $OUT                        # one H200/H100: at most ~9 minutes
    python bench/gpu_suite.py --device cpu --tiny --out /tmp/smoke   # smoke test on a CPU (bench/README.md)

Sections, in this order (cheap and certain first; the compiles last):
  eager     512x512 output, 50 steps, eager fp16 and bf16 (tile batch 1 too when the size makes several tiles)
  kernels   one ControlNet+UNet forward per dtype: ms, profile per kind of kernel (why fp16 is slower)
  lowvram   2048x2048 at the tiles `--max-vram 8` gives: resident vs offloaded at the same tiles (the
            cost in seconds, the pixel difference), offloaded under set_per_process_memory_fraction(8 GiB)
            with each stage's peak against its estimate
  large     2048x2048 and 4096x4096 outputs, eager fp16: seconds (fewer steps, scaled to 50) and peak VRAM
  compiled  torch.compile with CUDA graphs in the faster dtype: first image (the compile), seconds per
            image, pixels vs eager
  batch     64 images of 512x512 output, compiled: images/hour (SeeSRPipeline.upscale_many in groups
            when the cross-image batching is there, else one image at a time), pixels of one vs eager
  turbo     SeeSR-Turbo settings (2 steps, no guidance): seconds per image, eager (and compiled if time is left)
Results: OUT/gpu_suite.json (everything) and OUT/gpu_suite.md (the table), rewritten after each
section, and by a watchdog when the total budget runs out.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (bench/README.md)

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # this checkout's seesr_cli, whatever is installed
import _kernels  # noqa: E402
import _models  # noqa: E402
from _gpu_plan import NETWORKS, Bench, dry_run, parse_args  # noqa: E402
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
    sync,
    timed,
)

from seesr_cli.pipeline.placement import MemoryBudget, memory_budget, network_bytes  # noqa: E402
from seesr_cli.settings import UpscaleSettings  # noqa: E402

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
    pipe = b.compiled_pipe()
    many = hasattr(pipe, "upscale_many")  # cross-image batching: another branch's, where it has landed
    tile_batch = b.default_batch if many or not b.compiled else min(b.compiled, key=b.compiled.get)
    # Images per upscale_many call: the batch runner's default group (the tile batch); alone: one.
    group = (b.args.group or tile_batch) if many else 1
    per_image = [b.settings(tile_batch=tile_batch, seed=b.args.seed + i) for i in range(len(images))]
    chunks = [range(i, min(i + group, len(images))) for i in range(0, len(images), group)]
    how = (f"upscale_many, {group} images per call (their tiles share forwards)" if many
           else "one image at a time (no SeeSRPipeline.upscale_many here)")

    def run(chunk: range) -> tuple[float, list]:
        sync(b.device)
        begin = time.perf_counter()
        if many:
            out = list(pipe.upscale_many([images[i] for i in chunk], [per_image[i] for i in chunk]))
        else:
            out = [pipe.upscale(images[i], per_image[i]) for i in chunk]
        sync(b.device)
        return time.perf_counter() - begin, out

    first, results = run(chunks[0])  # the compile at these shapes: timed apart
    seconds, timed_images, last = 0.0, 0, first
    for chunk in chunks[1:]:
        if sec.left() < 1.5 * last + 10:  # the reference image below needs a few seconds too
            sec.note(f"stopped after {len(results)} of {len(images)} images: the section's time is spent")
            break
        last, out = run(chunk)
        seconds, timed_images = seconds + last, timed_images + len(out)
        results += out
    failed = [f"image {i + 1}: {type(r).__name__}: {r}" for i, r in enumerate(results) if isinstance(r, Exception)]
    for text in failed[:3]:
        sec.note(text)
    rate = 3600 * timed_images / seconds if timed_images else None
    sec.data.update(images=len(results), timed_images=timed_images, seconds=seconds, first_group_seconds=first,
                    per_hour=rate, how=how, tile_batch=tile_batch, group=group, failed=len(failed))
    label = f"{len(results)} of {len(images)} images {b.args.size}px, compiled {b.fastest}, tile batch {tile_batch}"
    if rate is None:
        sec.row(label, f"first group only ({first:.1f} s with the compile); {how}", ">= 7000/h")
    else:
        sec.row(label, f"{rate:.0f} images/hour ({seconds / timed_images:.3f} s/image over {timed_images} images "
                f"after the first group, which took {first:.1f} s with the compile); {how}"
                + (f"; {len(failed)} FAILED" if failed else ""), ">= 7000/h")
    if not isinstance(results[0], Exception):
        reference = timed(b.pipe(), images[0], per_image[0], b.device)[1]
        diff = pixel_diff(results[0], reference)
        sec.data["pixels_vs_eager"] = diff
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
    "large": (large, 60, 20), "compiled": (compiled, 150, 60), "batch": (batch, 150, 60), "turbo": (turbo, 40, 15),
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, SECTIONS, __doc__.splitlines()[0])
    if args.dry_run:
        return dry_run(args, SECTIONS)
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

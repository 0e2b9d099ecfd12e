"""`seesr upscale`: plan the batch, load the models on first use, run with progress, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from seesr_cli.batch import RUN, OutputOptions, PipelineLoader, plan_batch
from seesr_cli.batch.estimate import DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_TILES, WorkLimits, limit_work
from seesr_cli.cli.app import app, debug_enabled
from seesr_cli.cli.help import Command
from seesr_cli.cli.like import apply_like, like_jobs, read_like
from seesr_cli.cli.options import (
    _ADV,
    _OUT,
    _RUN,
    _WTS,
    AcceptLocal,
    CpuKernels,
    Device,
    Dtype,
    Inputs,
    JsonOut,
    Like,
    Quiet,
    Recursive,
    Scale,
    Sd2Repo,
    TagThreshold,
    Threads,
    TileOverlap,
    TileSize,
    Turbo,
    Weights,
    local_weights_folder,
)
from seesr_cli.cli.options import (
    accept_local_weights as accept_local_weights_now,
)
from seesr_cli.cli.run import report_folders, run_upscale, show_plan
from seesr_cli.cli.scale import parse_ray_options
from seesr_cli.cli.tables import note_line
from seesr_cli.cli.validate import check_device, check_upscale
from seesr_cli.errors import UsageError
from seesr_cli.settings import DEFAULT_ADDED_PROMPT, DEFAULT_NEGATIVE_PROMPT, LoadOptions, UpscaleSettings


def _out(help: str, *decls: str, **kw):
    return typer.Option(*decls, rich_help_panel=_OUT, help=help, **kw)


def _run(help: str = "", *decls: str):
    return typer.Option(*decls, rich_help_panel=_RUN, help=help)


def _adv(help: str = ""):
    return typer.Option(rich_help_panel=_ADV, help=help)


@app.command(cls=Command)
def upscale(
    ctx: typer.Context,
    inputs: Inputs,
    output: Annotated[Optional[Path], _out(
        "Output folder (mirrors input subfolders), or a file name for one input file. Default: "
        "<folder>_x4/ beside a named folder, <name>_x4.png beside a named file.", "--output", "-o",
        metavar="OUT")] = None,
    recursive: Recursive = False,
    fmt: Annotated[Optional[Literal["png", "jpg", "webp", "tiff", "same"]],
                   _out("Output format; default png (or -o's extension).", "--format")] = None,
    quality: Annotated[int, _out("JPEG / WebP quality (WebP 100: lossless).", min=1, max=100)] = 95,
    suffix: Annotated[Optional[str], _out(
        "Added to output names; default none in an output folder, _x<scale> beside the input.")] = None,
    overwrite: Annotated[bool, _out("Redo existing outputs (default: skip them).", "--overwrite")] = False,
    dry_run: Annotated[bool, _out("List what would be done; load nothing.", "--dry-run")] = False,
    no_report: Annotated[bool, _out("Do not write OUT/seesr-report.html (the batch report with before/after "
                                    "sliders; rebuilt by `seesr report OUT`).", "--no-report")] = False,
    scale: Scale = 4.0,
    steps: Annotated[Optional[int], _run("Denoising steps; default per sampler (ddpm 50).")] = None,
    guidance: Annotated[Optional[float], _run("Classifier-free guidance; default 5.5.")] = None,
    seed: Annotated[int, _run("Base seed; each image's own seed derives from it and its path.")] = 0,
    prompt: Annotated[str, _run("Text added to the DAPE tags.")] = "",
    negative_prompt: Annotated[str, _run()] = DEFAULT_NEGATIVE_PROMPT,
    added_prompt: Annotated[str, _run()] = DEFAULT_ADDED_PROMPT,
    color_fix: Annotated[Literal["adain", "wavelet", "none"], _run()] = "adain",
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    tile_prompts: Annotated[Literal["tile", "global"],
                            _run("DAPE prompts per tile, or one per image (official).")] = "tile",
    start: Annotated[Literal["lr", "noise"], _run("Start from the LR latent (LRE) or from noise.")] = "lr",
    sampler: Annotated[Literal["ddpm", "ddim", "unipc", "dpmpp"], _run()] = "ddpm",
    process_size: Annotated[int, _adv("Smaller inputs are enlarged to this size / scale first.")] = 512,
    conditioning_scale: Annotated[float, _adv()] = 1.0,
    tile_batch: Annotated[Optional[int], _adv(
        "Tiles per ControlNet+UNet forward; default per device kind: cpu 1, cuda 8, mps 2.")] = None,
    tile_window: Annotated[Literal["linear", "gaussian"], _adv(
        "Blend window of the latent tiles; gaussian: the official one.")] = "linear",
    tag_threshold: TagThreshold = None,
    max_megapixels: Annotated[float, _adv("Refuse larger results or working images.")] = DEFAULT_MAX_MEGAPIXELS,
    max_tiles: Annotated[int, _adv("Refuse images that need more latent tiles.")] = DEFAULT_MAX_TILES,
    turbo: Turbo = False,
    device: Device = "auto",
    devices: Annotated[Optional[str], typer.Option(
        "--devices", rich_help_panel=_WTS, metavar="LIST",
        help="One worker per device on this machine (a private Ray): GPU numbers (0,1,2,3) or cpu,cpu.")] = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", rich_help_panel=_WTS, metavar="ADDRESS",
        help="Run on a running Ray cluster: auto (RAY_ADDRESS, or the one started here) or HOST:PORT; one "
             "worker per GPU, or per node without GPUs. Inputs and outputs on a shared file system "
             "(the documentation linked in `seesr --help`).")] = None,
    dtype: Dtype = "auto",
    threads: Threads = None,
    cpu_kernels: CpuKernels = "onednn",
    like: Like = None,
    max_vram: Annotated[Optional[float], typer.Option(
        "--max-vram", rich_help_panel=_WTS, metavar="GB",
        help="Keep GPU memory under GB (GiB): each network on the GPU only while its stage runs, smaller "
             "tile batch and VAE tiles where needed (recorded). Default: the card's size decides; "
             "at 8, a 2048 px output fits.")] = None,
    compile_models: Annotated[bool, typer.Option(
        "--compile", rich_help_panel=_WTS,
        help="torch.compile the networks (CUDA graphs): ~3x faster per image on a GPU after a "
             "one-off compile of about 1-2 minutes; for batches.")] = False,
    group: Annotated[Optional[int], typer.Option(
        "--group", rich_help_panel=_WTS, metavar="N",
        help="Up to N images go through the networks together, their tiles sharing each forward (small "
             "images fill a GPU batch); every image's bytes and metadata are what it gets alone. Default: "
             "the tile batch (cpu 1, cuda 8, mps 2). Not with --devices / --ray.")] = None,
    weights: Weights = None,
    accept_local_weights: AcceptLocal = False,
    sd2_repo: Sd2Repo = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> int:
    """Upscale images. Existing outputs are skipped, so re-running a command resumes it."""
    settings = UpscaleSettings(
        scale=scale, process_size=process_size, steps=steps, guidance=guidance, seed=seed, prompt=prompt,
        added_prompt=added_prompt, negative_prompt=negative_prompt, conditioning_scale=conditioning_scale,
        start=start, sampler=sampler, color_fix=color_fix, tile_size=tile_size,
        tile_overlap=tile_overlap, tile_batch=tile_batch, tile_prompts=tile_prompts,
        tile_window=tile_window, tag_threshold=tag_threshold)
    load = LoadOptions(device=device, dtype=dtype, turbo=turbo, compile=compile_models, threads=threads,
                       max_vram=max_vram, cpu_kernels=cpu_kernels)
    record = read_like(like) if like is not None else None  # before any work: a bad RESULT is exit 2
    if record is not None:
        settings, load = apply_like(record, ctx, settings, load)
    limits = WorkLimits(max_megapixels, max_tiles)
    check_upscale(settings, load, weights=weights)  # before any work
    local_weights_folder(accept_local_weights, weights)  # a usage error without a folder, before any work
    scale_out = parse_ray_options(devices, ray, load.device)  # None: this process
    if group is not None and group < 1:
        raise UsageError(f"--group must be a whole number >= 1; got {group}")
    if group is not None and scale_out is not None:
        raise UsageError("--group is for a run in this process; Ray's workers take one image at a time")
    options = OutputOptions(output, fmt, suffix, settings.scale, overwrite, recursive)
    jobs = plan_batch(inputs, options, base_seed=settings.seed)
    if record is not None:
        jobs = like_jobs(record, ctx, jobs)
    if dry_run:
        return show_plan(jobs, json_out)
    notes = check_device(load) if scale_out is None else []  # Ray's workers check their own devices
    jobs = limit_work(jobs, settings, limits, turbo=load.turbo)  # from the headers, before the models load
    for note in notes if not quiet else ():
        note_line(Console(stderr=True), f"note: {note}")
    if not any(job.action == RUN for job in jobs):
        scale_out = None  # nothing to run: no Ray
    accept_local = accept_local_weights_now(accept_local_weights, weights, note=not quiet)
    loader = PipelineLoader(load, weights_dir=weights, sd2_repo=sd2_repo, accept_local=accept_local)
    return run_upscale(jobs, loader, settings, quality, json_out=json_out, quiet=quiet,
                       debug=debug_enabled(ctx), reports=[] if no_report else report_folders(jobs, output),
                       ray=scale_out, group=group)


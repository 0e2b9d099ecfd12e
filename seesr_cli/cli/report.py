"""`seesr report OUT`: rebuild OUT/seesr-report.html from the results' metadata alone (no models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from seesr_cli.cli.app import app
from seesr_cli.cli.help import Command
from seesr_cli.cli.options import Quiet
from seesr_cli.cli.progress import counting
from seesr_cli.errors import UsageError


@app.command(cls=Command)
def report(
    folder: Annotated[Path, typer.Argument(metavar="OUT", show_default=False,
                                           help="An output folder of `seesr upscale`.")],
    quiet: Quiet = False,
) -> int:
    """Rebuild OUT/seesr-report.html (before/after sliders, tags, settings, failures) from the results.

    The page shows each result against the bicubic upscale of its input, each tile's DAPE tags,
    the seed, settings, seconds per stage and notes, and the failures with their cause, all read
    from the metadata of the results in OUT (no models are loaded).

    `seesr upscale ... -o OUT` writes it at the end of every run (unless --no-report); this
    rebuilds it after files were added, moved or deleted. Opens from file:// with no network;
    previews are small JPEGs in OUT/.seesr-report/."""
    from seesr_cli.report import write_report

    if not folder.is_dir():
        raise UsageError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    with counting(Console(stderr=True), "previews", quiet=quiet) as tick:
        page = write_report(folder, on_progress=tick)
    typer.echo(str(page))
    return 0

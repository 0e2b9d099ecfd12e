"""`seesr tag`: what DAPE sees in each image (and, with --per-tile, in each tile an upscale would run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from seesr_cli.batch import discover
from seesr_cli.cli.app import app, print_json
from seesr_cli.cli.help import Command
from seesr_cli.cli.options import (
    AcceptLocal,
    Device,
    Inputs,
    JsonOut,
    Recursive,
    Scale,
    TagThreshold,
    TagTileOverlap,
    ThresholdAlias,
    TileSize,
    Weights,
    one_threshold,
)
from seesr_cli.cli.options import (
    accept_local_weights as accept_local_weights_now,
)
from seesr_cli.cli.progress import BatchProgress
from seesr_cli.cli.tables import error_line, tag_lines
from seesr_cli.cli.validate import check_tag
from seesr_cli.errors import InputImageError
from seesr_cli.settings import UpscaleSettings


@app.command(cls=Command)
def tag(
    images: Inputs,
    json_out: JsonOut = False,
    per_tile: Annotated[bool, typer.Option("--per-tile", help="Also tag each tile an upscale would run.")] = False,
    recursive: Recursive = False,
    scale: Scale = 4.0,
    tile_size: TileSize = None,
    tile_overlap: TagTileOverlap = None,
    tag_threshold: TagThreshold = None,
    threshold: ThresholdAlias = None,
    weights: Weights = None,
    accept_local_weights: AcceptLocal = False,
    device: Device = "auto",
) -> int:
    """Print the DAPE tags of each image: what SeeSR's tagger sees (needs only the DAPE weights)."""
    settings = UpscaleSettings(scale=scale, tile_size=tile_size, tile_overlap=tile_overlap,
                               tag_threshold=one_threshold(tag_threshold, threshold))
    check_tag(settings, weights=weights, device=device)  # before DAPE loads; the defaults filled in after
    settings = settings.resolved()
    accept_local = accept_local_weights_now(accept_local_weights, weights)
    return _tag(images, settings, json_out=json_out, per_tile=per_tile, recursive=recursive,
                weights=weights, device=device, accept_local=accept_local)


def _tag(images, settings: UpscaleSettings, *, json_out: bool, per_tile: bool, recursive: bool,
         weights: Path | None, device: str, accept_local: bool) -> int:
    from seesr_cli.io import load_image

    files, problems = discover(images, recursive=recursive)
    err, failed, report = Console(stderr=True), len(problems), []
    for arg, cause in problems:
        error_line(err, arg, cause)
    tagger = _load_tagger(weights, device, accept_local) if files else None
    for item in files:
        try:
            loaded = load_image(item.path)
        except InputImageError as exc:
            error_line(err, str(item.path), exc.cause)
            failed += 1
            continue
        entry = _entry(tagger.tag(loaded.rgb, settings, per_tile=per_tile), per_tile)
        report.append({"input": str(item.path), **entry})
        if not json_out:
            typer.echo(tag_lines(item.path, entry))
    if json_out:
        print_json({"images": report})
    return 1 if failed else 0


def _load_tagger(weights_dir: Path | None, device: str, accept_local: bool):
    from seesr_cli.core.device import resolve_device
    from seesr_cli.pipeline.tagging import Tagger
    from seesr_cli.weights import resolve_dape

    torch_device = resolve_device(device)
    with BatchProgress(Console(stderr=True)) as view:
        path = resolve_dape(weights_dir=weights_dir, progress=view.weights_event, accept_local=accept_local)
    return Tagger.load(path, torch_device)


def _entry(tags, per_tile: bool) -> dict:
    """`ImageTags` as the JSON report shows it: tags with probabilities, tiles as [left, top, width, height]."""
    def listed(pairs):
        return [{"tag": name, "probability": round(p, 4)} for name, p in pairs]

    entry: dict = {"tags": listed(tags.tags)}
    if per_tile:
        entry["tiles"] = [{"box": [t.box.left, t.box.top, t.box.width, t.box.height], "tags": listed(t.tags)}
                          for t in tags.tiles]
    return entry

"""Work estimated before it starts: an image whose plan is over a limit is refused, not run for hours.

The size comes from the file's header (Pillow opens lazily: nothing is decoded) and the plan
from the pipeline's own geometry (`core.geometry`), before any model loads. A small input can
mean huge work: a 1 x 4000 px strip is first enlarged so its short side reaches
process_size / scale (official behaviour), which makes a 512 x 2,048,000 px working image.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from seesr_cli.batch.plan import FAIL, RUN, Job
from seesr_cli.errors import UsageError
from seesr_cli.settings import UpscaleSettings

DEFAULT_MAX_MEGAPIXELS = 64.0  # an 8000 x 8000 px result: 169 tiles at the defaults
DEFAULT_MAX_TILES = 256  # a 64 MP result with --turbo (16 x 16 tiles); ~17 min of 50 steps on a GPU


@dataclass(frozen=True)
class WorkLimits:
    """The most one image may cost: megapixels of the result and of the working image, latent tiles."""

    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_tiles: int = DEFAULT_MAX_TILES

    def __post_init__(self) -> None:
        if not (self.max_megapixels > 0 and math.isfinite(self.max_megapixels)):
            raise UsageError(f"--max-megapixels must be > 0; got {self.max_megapixels!r}")
        if self.max_tiles < 1:
            raise UsageError(f"--max-tiles must be >= 1; got {self.max_tiles!r}")


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when it cannot be read (loading says why)."""
    from PIL import Image

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or device here: it may block
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: load_image decides
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def refusal(width: int, height: int, settings: UpscaleSettings, limits: WorkLimits, *,
            turbo: bool = False) -> str | None:
    """Why an image of this size is over a limit with these settings, or None when it is not."""
    from seesr_cli.core.geometry import latent_tiles, plan_geometry, tile_size_for

    geometry = plan_geometry(width, height, settings)
    (out_w, out_h), (work_w, work_h) = geometry.out, geometry.work
    limit = limits.max_megapixels
    if out_w * out_h > limit * 1e6:
        return (f"the result would be {out_w} x {out_h} px ({out_w * out_h / 1e6:,.1f} MP), over the limit of "
                f"{limit:g} MP; lower --scale or raise --max-megapixels")
    if work_w * work_h > limit * 1e6:
        return (f"a {width} x {height} px image is diffused at {work_w} x {work_h} px ({work_w * work_h / 1e6:,.0f} MP: "
                f"its short side is enlarged to --process-size / --scale first), over the limit of {limit:g} MP; "
                "crop or pad an image this narrow, or raise --max-megapixels")
    tile = tile_size_for(settings)
    overlap = settings.resolved(turbo).tile_overlap
    tiles = len(latent_tiles(geometry, tile, overlap))
    if tiles > limits.max_tiles:
        return (f"{tiles:,} latent tiles of {tile} px (overlap {min(overlap, tile - 1)}) for a {work_w} x {work_h} px "
                f"working image, over the limit of {limits.max_tiles}; use a larger --tile-size or a smaller "
                "--tile-overlap, or raise --max-tiles")
    return None


def limit_work(jobs: Sequence[Job], settings: UpscaleSettings, limits: WorkLimits, *,
               turbo: bool = False) -> list[Job]:
    """The jobs, with those over a limit turned into failures that say which limit and why."""
    out = []
    for job in jobs:
        size = header_size(job.input) if job.action == RUN else None
        reason = refusal(*size, settings, limits, turbo=turbo) if size is not None else None
        out.append(job if reason is None else replace(job, action=FAIL, reason=reason))
    return out

"""Image sizes through the pipeline and the LR crop behind each latent tile (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from seesr_cli.core.tiling import Box, plan_tiles
from seesr_cli.errors import InternalError
from seesr_cli.settings import DEFAULT_TILE, UpscaleSettings

LATENT_FACTOR = 8  # the SD VAE's downsampling


@dataclass(frozen=True)
class Geometry:
    """Sizes as (width, height), following the official `test_seesr.py`.

    lr: the input; enlarged: lr with its shorter side raised to process_size/scale
    when smaller; work: enlarged x scale, floored to multiples of 8 (what the
    diffusion runs at); out: exactly scale x lr (the final resize).
    """

    lr: tuple[int, int]
    enlarged: tuple[int, int]
    upscaled: tuple[int, int]
    work: tuple[int, int]
    out: tuple[int, int]

    @property
    def latent(self) -> tuple[int, int]:
        """Latent (height, width)."""
        return self.work[1] // LATENT_FACTOR, self.work[0] // LATENT_FACTOR


def plan_geometry(width: int, height: int, settings: UpscaleSettings) -> Geometry:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    scale = settings.scale
    min_side = settings.process_size // scale  # official: args.process_size // rscale
    enlarged = (width, height)
    if width < min_side or height < min_side:
        factor = min_side / min(width, height)
        enlarged = (max(1, int(factor * width)), max(1, int(factor * height)))
    upscaled = (max(1, round(enlarged[0] * scale)), max(1, round(enlarged[1] * scale)))
    work = tuple(max(LATENT_FACTOR, side // LATENT_FACTOR * LATENT_FACTOR) for side in upscaled)
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Geometry(lr=(width, height), enlarged=enlarged, upscaled=upscaled, work=work, out=out)


def tile_size_for(settings: UpscaleSettings) -> int:
    """The latent tile edge: the user's, else the official 96 (never a function of free memory)."""
    return settings.tile_size or DEFAULT_TILE


def latent_tiles(geometry: Geometry, tile: int, overlap: int) -> list[Box]:
    height, width = geometry.latent
    return plan_tiles(height, width, tile, min(overlap, tile - 1))


def lr_box(box: Box, geometry: Geometry) -> Box:
    """The region of the original LR image that a latent tile covers (at least 1 px)."""
    lr_w, lr_h = geometry.lr
    fx = lr_w / geometry.work[0] * LATENT_FACTOR
    fy = lr_h / geometry.work[1] * LATENT_FACTOR
    top = min(lr_h - 1, math.floor(box.top * fy))
    left = min(lr_w - 1, math.floor(box.left * fx))
    bottom = max(top + 1, min(lr_h, math.ceil((box.top + box.height) * fy)))
    right = max(left + 1, min(lr_w, math.ceil((box.left + box.width) * fx)))
    return Box(top, left, bottom - top, right - left)


def plan_lr_tiles(width: int, height: int, settings: UpscaleSettings, tile: int | None = None) -> list[Box]:
    """LR-pixel boxes of the tiles an upscale with `settings` would run (for per-tile tags)."""
    geometry = plan_geometry(width, height, settings)
    if settings.tile_overlap is None:
        raise InternalError("plan_lr_tiles needs resolved settings (UpscaleSettings.resolved)")
    boxes = latent_tiles(geometry, tile or tile_size_for(settings), settings.tile_overlap)
    return [lr_box(box, geometry) for box in boxes]

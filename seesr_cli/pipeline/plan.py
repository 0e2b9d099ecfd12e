"""The run plan: how one image runs, a function of its resolved settings and the device kind only;
and what images must share to run as one group (`group_key`).

Free memory is never an input: tile size, overlap and every forward's batch come from the
settings and `settings.DEVICE_BATCH`. Memory matters only through the out-of-memory
fallbacks below, which shrink one stage's batch, then its tiles, and are noted.
"""

from __future__ import annotations

from dataclasses import dataclass

from seesr_cli.errors import InternalError
from seesr_cli.pipeline.vae import VAE_BATCH
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

# The smallest tiles an out-of-memory fallback goes down to.
MIN_LATENT_TILE = 16  # latent px, denoise sub-tiles
MIN_ENCODER_TILE = 128  # image px
MIN_DECODER_TILE = 16  # latent px


@dataclass(frozen=True)
class RunPlan:
    """Rows per forward of each network and the tiles, for one image on one device kind."""

    device: str  # cpu, cuda or mps
    tile: int  # latent px
    overlap: int  # latent px
    window: str  # latent tiles' blend window
    tile_batch: int  # ControlNet+UNet tiles per forward (twice the rows with guidance)
    dape_batch: int
    text_batch: int
    vae_batch: int
    vae_encoder_tile: int  # image px
    vae_decoder_tile: int  # latent px


def plan_run(settings: UpscaleSettings, device: str) -> RunPlan:
    """The plan of `settings` (resolved for `device`: `UpscaleSettings.resolved`) on that device kind."""
    if device not in DEVICE_BATCH:
        raise InternalError(f"unknown device kind {device!r}")
    if settings.tile_size is None or settings.tile_overlap is None or settings.tile_batch is None:
        raise InternalError("plan_run needs settings resolved for a device (UpscaleSettings.resolved)")
    batch = DEVICE_BATCH[device]
    return RunPlan(device=device, tile=settings.tile_size, overlap=settings.tile_overlap, window=settings.tile_window,
                   tile_batch=settings.tile_batch, dape_batch=batch, text_batch=batch, vae_batch=VAE_BATCH,
                   vae_encoder_tile=settings.vae_encoder_tile, vae_decoder_tile=settings.vae_decoder_tile)


def group_key(settings: UpscaleSettings) -> tuple:
    """What the images of one group (`SeeSRPipeline.upscale_many`) share, of their resolved settings:
    everything that sets a forward's shape or the schedule they are stepped by in lockstep. Seeds,
    sizes (scale, process size), prompts, tags, tile overlap and window, and the colour fix stay
    each image's own."""
    return (settings.sampler, settings.steps, settings.start, settings.guidance, settings.conditioning_scale,
            settings.tile_size, settings.tile_batch, settings.vae_encoder_tile, settings.vae_decoder_tile)


@dataclass(frozen=True)
class Batching:
    """One attempt of a stage: rows per forward and, where the stage has them, its tile edge."""

    batch: int
    tile: int | None = None

    def describe(self, unit: str = "tiles") -> str:
        return f"batch {self.batch}" + ("" if self.tile is None else f", {unit} {self.tile}")


def smaller_batch(option: Batching) -> Batching | None:
    """Half the batch; None at 1."""
    return Batching(option.batch // 2, option.tile) if option.batch > 1 else None


def smaller_tile(tile: int, extent: int, *, minimum: int, step: int) -> int | None:
    """Half of the tile (or of the extent it covers, when that is smaller), a multiple of `step`;
    None below `minimum`."""
    half = min(tile, extent) // 2 // step * step
    return half if half >= minimum else None


def shrink(option: Batching, extent: int, *, minimum: int, step: int) -> Batching | None:
    """The next attempt after an out-of-memory error: a smaller batch first, then smaller tiles at batch 1."""
    fewer = smaller_batch(option)
    if fewer is not None:
        return fewer
    tile = smaller_tile(option.tile if option.tile is not None else extent, extent, minimum=minimum, step=step)
    return None if tile is None else Batching(1, tile)

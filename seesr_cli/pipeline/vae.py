"""Tiled VAE encode and decode with blended overlaps (diffusers `AutoencoderKL`).

Tiles run through the VAE's own encoder/decoder in its dtype and on its device; the
blend accumulates in float32 (`tiling.tiled_map`), so memory beyond the image and
latent buffers is one batch of tiles. An input that fits in one tile goes through
the VAE untouched, exactly as `vae.encode` / `vae.decode` would.

Each tile normalises with its own GroupNorm statistics, so tiled and untiled results
differ slightly (most in flat regions); the overlaps cross-fade that difference.
The `*_many` forms take the images of a group: their tiles of one shape share forwards.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch

from seesr_cli.core.tiling import DEFAULT_WINDOW, Box, plan_tiles, tiled_map_many
from seesr_cli.errors import Cancelled, InternalError

ENCODER_TILE = 1024  # image px, official --vae_encoder_tiled_size
DECODER_TILE = 224  # latent px, official --vae_decoder_tiled_size
# Default overlaps: a quarter of the tile, at most these (the official hook pads by
# 32 image px / 11 latent px and cuts instead of blending).
ENCODER_OVERLAP = 128  # image px
DECODER_OVERLAP = 32  # latent px
# VAE tiles per forward, on every device kind: the tiles are large (1024 image px, 224 latent
# px) and memory-bound, so batching gains nothing; one fixed shape and no padding.
VAE_BATCH = 1
_LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp


def downsampling(vae) -> int:
    """The VAE's spatial factor (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _default_overlap(tile: int, cap: int, step: int) -> int:
    return min(cap, tile // 4 // step * step)


def _latent_scale(vae) -> tuple[float, float]:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return float(vae.config.scaling_factor), float(shift)


def _encoder_boxes(shape: tuple[int, ...], tile: int, overlap: int | None, factor: int) -> list[Box]:
    """Image-pixel tiles planned on the latent grid, so every tile starts on a latent pixel."""
    height, width = shape[-2:] if len(shape) == 4 else (0, 0)
    if min(height, width) < 1 or height % factor or width % factor:
        raise InternalError(f"VAE input must be B x C x H x W with H and W multiples of {factor}; got {shape}")
    if overlap is None:
        overlap = _default_overlap(tile, ENCODER_OVERLAP, factor)
    if tile < factor or tile % factor or overlap % factor or not 0 <= overlap < tile:
        raise InternalError(
            f"VAE encoder tile {tile} and overlap {overlap} must be multiples of {factor} with 0 <= overlap < tile"
        )
    latent_boxes = plan_tiles(height // factor, width // factor, tile // factor, overlap // factor)
    return [box.scaled(factor) for box in latent_boxes]


@torch.no_grad()
def encode_moments(
    vae,
    image: torch.Tensor,
    *,
    tile: int = ENCODER_TILE,
    overlap: int | None = None,
    batch_size: int = VAE_BATCH,
    window: str = DEFAULT_WINDOW,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Blended encoder moments (mean and logvar: the quant_conv output), B x 2C x H/8 x W/8, float32.

    tile and overlap are image pixels, multiples of 8; overlap None: a quarter tile, at most 128.
    `should_cancel` is asked before each tile batch.
    """
    return encode_moments_many(vae, [image], tile=tile, overlap=overlap, batch_size=batch_size, window=window,
                               should_cancel=should_cancel)[0]


@torch.no_grad()
def encode_moments_many(vae, images: list[torch.Tensor], *, tile: int = ENCODER_TILE, overlap: int | None = None,
                        batch_size: int = VAE_BATCH, window: str = DEFAULT_WINDOW,
                        should_cancel: Callable[[], bool] | None = None) -> list[torch.Tensor]:
    """`encode_moments` of several images, their tiles of one shape sharing forwards of `batch_size`."""
    factor = downsampling(vae)
    boxes = [_encoder_boxes(tuple(image.shape), tile, overlap, factor) for image in images]

    def run(crops: torch.Tensor, _tiles) -> torch.Tensor:
        _check_cancel(should_cancel, "encoding")
        x = (crops.to(vae.device, torch.float32) * 2 - 1).to(vae.dtype)  # official: encode(image*2-1)
        h = vae.encoder(x)
        return h if vae.quant_conv is None else vae.quant_conv(h)

    moments = tiled_map_many(run, images, boxes, scale=Fraction(1, factor), windows=window, batch_size=batch_size,
                             out_device=images[0].device)
    return [m.float() for m in moments]


@torch.no_grad()
def encode(
    vae,
    image: torch.Tensor,
    *,
    tile: int = ENCODER_TILE,
    overlap: int | None = None,
    generator: torch.Generator | None = None,
    mode: str = "sample",
    batch_size: int = VAE_BATCH,
    window: str = DEFAULT_WINDOW,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Latents (float32, already times scaling_factor) of an image in [0, 1] (B x 3 x H x W).

    mode "sample" (official LRE: `latent_dist.sample() * scaling_factor`) draws the
    noise once over the whole latent with `generator` (on the generator's device, so a
    CPU generator gives the same latents on every device); "mean" takes the mode.
    """
    return encode_many(vae, [image], tile=tile, overlap=overlap, generators=[generator], mode=mode,
                       batch_size=batch_size, window=window, should_cancel=should_cancel)[0]


@torch.no_grad()
def encode_many(vae, images: list[torch.Tensor], *, tile: int = ENCODER_TILE, overlap: int | None = None,
                generators: list[torch.Generator | None], mode: str = "sample", batch_size: int = VAE_BATCH,
                window: str = DEFAULT_WINDOW, should_cancel: Callable[[], bool] | None = None) -> list[torch.Tensor]:
    """`encode` of several images (tiles sharing forwards), each drawing its noise from its own generator."""
    if mode not in ("sample", "mean"):
        raise InternalError(f"VAE encode mode must be 'sample' or 'mean'; got {mode!r}")
    moments = encode_moments_many(vae, images, tile=tile, overlap=overlap, batch_size=batch_size, window=window,
                                  should_cancel=should_cancel)
    scaling, shift = _latent_scale(vae)
    out = []
    for image_moments, generator in zip(moments, generators):
        mean, logvar = image_moments.chunk(2, dim=1)
        latents = mean
        if mode == "sample":
            std = torch.exp(0.5 * logvar.clamp(*_LOGVAR_RANGE))
            noise_device = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=noise_device, dtype=torch.float32)
            latents = mean + std * noise.to(mean.device)
        out.append((latents - shift) * scaling)
    return out


@torch.no_grad()
def decode(
    vae,
    latents: torch.Tensor,
    *,
    tile: int = DECODER_TILE,
    overlap: int | None = None,
    batch_size: int = VAE_BATCH,
    window: str = DEFAULT_WINDOW,
    out_device: torch.device | str | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Image in [0, 1] (float32, B x 3 x 8h x 8w) from scaled latents (B x C x h x w).

    Official: `vae.decode(latents / scaling_factor)`, then `(x / 2 + 0.5).clamp(0, 1)`.
    tile and overlap are latent pixels; overlap None: a quarter tile, at most 32.
    `out_device` (default: the latents') holds the image buffer, e.g. the CPU for huge outputs.
    """
    return decode_many(vae, [latents], tile=tile, overlap=overlap, batch_size=batch_size, window=window,
                       out_device=out_device, should_cancel=should_cancel)[0]


@torch.no_grad()
def decode_many(vae, latents: list[torch.Tensor], *, tile: int = DECODER_TILE, overlap: int | None = None,
                batch_size: int = VAE_BATCH, window: str = DEFAULT_WINDOW, out_device: torch.device | str | None = None,
                should_cancel: Callable[[], bool] | None = None) -> list[torch.Tensor]:
    """`decode` of several latents, their tiles of one shape sharing forwards of `batch_size`."""
    if any(z.ndim != 4 for z in latents):
        raise InternalError(f"latents must be B x C x h x w; got {[tuple(z.shape) for z in latents]}")
    if overlap is None:
        overlap = _default_overlap(tile, DECODER_OVERLAP, 1)
    scaling, shift = _latent_scale(vae)
    zs = [z.float() / scaling + shift for z in latents]
    boxes = [plan_tiles(z.shape[-2], z.shape[-1], tile, overlap) for z in zs]

    def run(crops: torch.Tensor, _tiles) -> torch.Tensor:
        _check_cancel(should_cancel, "decoding")
        x = crops.to(vae.device, vae.dtype)
        if vae.post_quant_conv is not None:
            x = vae.post_quant_conv(x)
        return vae.decoder(x)

    images = tiled_map_many(run, zs, boxes, scale=downsampling(vae), windows=window, batch_size=batch_size,
                            out_device=out_device or latents[0].device)
    return [image.float().div_(2).add_(0.5).clamp_(0, 1) for image in images]


def _check_cancel(should_cancel: Callable[[], bool] | None, doing: str) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"stopped while {doing} VAE tiles")

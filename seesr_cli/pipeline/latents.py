"""The VAE stages: the LR embedding (tiled encode, then noised to t=999) and the tiled decode.

Out of memory, each retries itself with smaller tiles (the VAE batch is already 1); the
latents it was given are kept, so no earlier stage runs again.
"""

from __future__ import annotations

import torch

from seesr_cli.core.samplers import lre_start
from seesr_cli.pipeline import vae as vae_tiles
from seesr_cli.pipeline.plan import MIN_DECODER_TILE, MIN_ENCODER_TILE, Batching, shrink
from seesr_cli.pipeline.stage import StageRun


def encode_lr(run: StageRun, vae, control: torch.Tensor, noise: torch.Tensor, scheduler_config: dict,
              option: Batching, generator: torch.Generator) -> tuple[torch.Tensor, Batching]:
    """LRE start latents (SEESR.md 3.3) and the tiles that ran. `generator` draws the VAE's sample
    noise; a retry restores its state, so the fallback draws the same noise."""
    state = generator.get_state()
    extent = max(control.shape[-2:])

    def attempt(current: Batching) -> torch.Tensor:
        generator.set_state(state)
        return vae_tiles.encode(vae, control, tile=current.tile, batch_size=current.batch, generator=generator,
                                should_cancel=run.should_cancel)

    run.emit("encode", 0, 1)
    with run.timed("vae_encode"), run.placed("vae_encode"):
        lr_latents, used = run.retry(
            "the VAE encoder", option, attempt,
            lambda current: shrink(current, extent, minimum=MIN_ENCODER_TILE, step=8), unit="encoder tiles")
        latents = lre_start(lr_latents.float(), noise, scheduler_config)
    run.emit("encode", 1, 1)
    return latents, used


def decode(run: StageRun, vae, latents: torch.Tensor, option: Batching) -> tuple[torch.Tensor, Batching]:
    """The image in [0, 1] (1 x 3 x 8h x 8w, float32) and the tiles that ran."""
    extent = max(latents.shape[-2:])

    def attempt(current: Batching) -> torch.Tensor:
        return vae_tiles.decode(vae, latents.to(vae.dtype), tile=current.tile, batch_size=current.batch,
                                should_cancel=run.should_cancel)

    run.emit("decode", 0, 1)
    with run.timed("vae_decode"), run.placed("vae_decode"):
        image, used = run.retry(
            "the VAE decoder", option, attempt,
            lambda current: shrink(current, extent, minimum=MIN_DECODER_TILE, step=1), unit="decoder tiles")
    run.emit("decode", 1, 1)
    return image, used

"""The VAE stages: the LR embedding (tiled encode, then noised to t=999) and the tiled decode.

The images of a group go through together (their tiles of one shape share forwards). Out of
memory, each stage retries itself with a smaller batch, then smaller tiles; the latents it was
given are kept, so no earlier stage runs again.
"""

from __future__ import annotations

import torch

from seesr_cli.core.samplers import lre_start
from seesr_cli.pipeline import vae as vae_tiles
from seesr_cli.pipeline.plan import MIN_DECODER_TILE, MIN_ENCODER_TILE, Batching, shrink
from seesr_cli.pipeline.stage import StageRun


def _areas(tensors: list[torch.Tensor]) -> list[int]:
    return [t.shape[-2] * t.shape[-1] for t in tensors]


def encode_lr(run: StageRun, vae, controls: list[torch.Tensor], noises: list[torch.Tensor], scheduler_config: dict,
              option: Batching, generators: list[torch.Generator]) -> tuple[list[torch.Tensor], Batching]:
    """Each image's LRE start latents (SEESR.md 3.3) and the tiles that ran. Each image's
    generator draws its VAE sample noise; a retry restores their states, so the fallback draws
    the same noise."""
    states = [generator.get_state() for generator in generators]
    extent = max(max(control.shape[-2:]) for control in controls)

    def attempt(current: Batching) -> list[torch.Tensor]:
        for generator, state in zip(generators, states):
            generator.set_state(state)
        return vae_tiles.encode_many(vae, controls, tile=current.tile, batch_size=current.batch, generators=generators,
                                     should_cancel=run.should_cancel)

    run.emit("encode", 0, 1)
    with run.timed("vae_encode", _areas(controls)), run.placed("vae_encode"):
        lr_latents, used = run.retry(
            "the VAE encoder", option, attempt,
            lambda current: shrink(current, extent, minimum=MIN_ENCODER_TILE, step=8), unit="encoder tiles")
        latents = [lre_start(z.float(), noise, scheduler_config) for z, noise in zip(lr_latents, noises)]
    run.emit("encode", 1, 1)
    return latents, used


def decode(run: StageRun, vae, latents: list[torch.Tensor], option: Batching) -> tuple[list[torch.Tensor], Batching]:
    """Each image in [0, 1] (1 x 3 x 8h x 8w, float32) and the tiles that ran."""
    extent = max(max(z.shape[-2:]) for z in latents)

    def attempt(current: Batching) -> list[torch.Tensor]:
        return vae_tiles.decode_many(vae, [z.to(vae.dtype) for z in latents], tile=current.tile,
                                     batch_size=current.batch, should_cancel=run.should_cancel)

    run.emit("decode", 0, 1)
    with run.timed("vae_decode", _areas(latents)), run.placed("vae_decode"):
        images, used = run.retry(
            "the VAE decoder", option, attempt,
            lambda current: shrink(current, extent, minimum=MIN_DECODER_TILE, step=1), unit="decoder tiles")
    run.emit("decode", 1, 1)
    return images, used

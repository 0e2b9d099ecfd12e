"""The denoiser contract and the sampling loop.

One contract (after k-diffusion): a predictor is `predict(latents, t) -> noise`.
`GuidedDenoiser` is ControlNet + UNet with classifier-free guidance on a batch of
latent tiles; `tiled_predictor` wraps it so the whole latent is predicted by
blending overlapping tiles. The loop never knows whether it is tiled.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from seesr_cli.core.geometry import LATENT_FACTOR
from seesr_cli.core.tiling import DEFAULT_WINDOW, Box, tiled_map
from seesr_cli.errors import Cancelled

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileConditioning:
    """What conditions each latent tile; row i of the per-tile tensors belongs to tile i.

    With one row (global prompts) every tile uses row 0.
    """

    prompt_embeds: torch.Tensor  # T x 77 x D (positive prompts)
    image_embeds: torch.Tensor  # T x 145 x 512 (DAPE soft prompts)
    negative_embeds: torch.Tensor | None  # 1 x 77 x D, None without CFG
    control: torch.Tensor  # 1 x 3 x H x W (LATENT_FACTOR x the latent): the upscaled LR in [0, 1]

    def rows(self, tiles: list[int]) -> list[int]:
        return [0] * len(tiles) if self.prompt_embeds.shape[0] == 1 else tiles


def controlled_noise(unet, controlnet, sample, t, text, image, control, conditioning_scale: float) -> torch.Tensor:
    """One ControlNet pass whose residuals feed one UNet pass: the network of a SeeSR step.

    A plain function so `SeeSRPipeline.compile` can compile both networks as one graph.
    """
    down, mid = controlnet(
        sample,
        t,
        encoder_hidden_states=text,
        controlnet_cond=control,
        conditioning_scale=conditioning_scale,
        image_encoder_hidden_states=image,
        return_dict=False,
    )
    return unet(
        sample,
        t,
        encoder_hidden_states=text,
        image_encoder_hidden_states=image,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
        return_dict=False,
    )[0]


class GuidedDenoiser:
    """ControlNet + UNet noise prediction with classifier-free guidance in one batch."""

    def __init__(self, unet, controlnet, cond: TileConditioning, *, guidance: float, conditioning_scale: float,
                 forward: Callable = controlled_noise):
        self.unet = unet
        self.controlnet = controlnet
        self.cond = cond
        self.guidance = guidance
        self.conditioning_scale = conditioning_scale
        self.dtype = unet.dtype
        self.forward = forward
        self._embeds: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def _batch_embeds(self, tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and DAPE states of a tile batch, both CFG branches stacked: built once, reused every step."""
        key = tuple(tiles)
        if key not in self._embeds:
            cond = self.cond
            rows = cond.rows(tiles)
            text, image = cond.prompt_embeds[rows], cond.image_embeds[rows]
            if cond.negative_embeds is not None:
                # Unconditional branch first, as the official pipeline orders it; the soft
                # prompt is the same for both branches.
                text = torch.cat([cond.negative_embeds.expand(len(tiles), -1, -1), text])
                image = torch.cat([image, image])
            self._embeds[key] = (text, image)
        return self._embeds[key]

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, boxes: list[Box], tiles: list[int]) -> torch.Tensor:
        """Guided noise for a batch of latent crops (N x 4 x h x w), float32 out."""
        text, image = self._batch_embeds(tiles)
        control = torch.cat([_crop(self.cond.control, box.scaled(LATENT_FACTOR)) for box in boxes])
        sample = latents.to(self.dtype)
        if self.cond.negative_embeds is not None:
            control = torch.cat([control, control])
            sample = torch.cat([sample, sample])
        noise = self.forward(self.unet, self.controlnet, sample, t, text, image, control.to(self.dtype),
                             self.conditioning_scale).float()
        if self.cond.negative_embeds is None:
            return noise
        uncond, text_cond = noise.chunk(2)
        return uncond + self.guidance * (text_cond - uncond)


def tiled_predictor(
    denoiser: GuidedDenoiser,
    boxes: list[Box],
    *,
    batch_size: int,
    window: str = DEFAULT_WINDOW,
    on_tile: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Predictor:
    """Predict the whole latent by blending the guided predictions of overlapping tiles.

    Every forward runs `batch_size` tiles (a partial batch padded: `tiling.tiled_map`);
    `should_cancel` is asked before each of them."""

    def run_batch(t: torch.Tensor):
        def fn(crops: torch.Tensor, tiles: list[int]) -> torch.Tensor:
            if should_cancel is not None and should_cancel():
                raise Cancelled("stopped between tile batches")
            noise = denoiser(crops, t, [boxes[i] for i in tiles], tiles)
            if on_tile is not None:
                on_tile(len(set(tiles)))  # padding repeats the last tile: count each once
            return noise

        return fn

    def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return tiled_map(run_batch(t), latents, boxes, window=window, batch_size=batch_size)

    return predict


def _crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    rows, cols = box.slices
    return image[:, :, rows, cols]


def _step_kwargs(scheduler, generator: torch.Generator | None) -> dict:
    accepts = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in accepts else {}


def sample(
    predict: Predictor,
    scheduler,
    timesteps: torch.Tensor,
    latents: torch.Tensor,
    *,
    generator: torch.Generator | None,
    on_step: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Run the sampler from `latents` over `timesteps`; latents stay float32."""
    extra = _step_kwargs(scheduler, generator)
    latents = latents.float()
    for i, t in enumerate(timesteps):
        if should_cancel is not None and should_cancel():
            raise Cancelled("stopped between denoising steps")
        model_input = scheduler.scale_model_input(latents, t)
        noise = predict(model_input, t)
        latents = scheduler.step(noise, t, latents, return_dict=False, **extra)[0]
        if on_step is not None:
            on_step(i + 1)
    return latents

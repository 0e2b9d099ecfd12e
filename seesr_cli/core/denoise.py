"""The denoiser contract and the sampling loop.

One contract (after k-diffusion): a predictor is `predict(latents, t) -> noise`.
`GuidedDenoiser` is ControlNet + UNet with classifier-free guidance on a batch of
latent tiles; `tiled_predictor` wraps it so the whole latent is predicted by
blending overlapping tiles. The loop never knows whether it is tiled. A group of
images runs in lockstep (`sample_many`): one prediction of all their latents per
step, their tiles sharing forwards, each image stepped by its own scheduler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from seesr_cli.core.geometry import LATENT_FACTOR
from seesr_cli.core.tiling import DEFAULT_WINDOW, Box, Tile, tiled_map_many
from seesr_cli.errors import Cancelled, InternalError

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ManyPredictor = Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]  # a group's latents


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
    """ControlNet + UNet noise prediction with classifier-free guidance in one batch.

    `cond` is one image's conditioning, or one per image of a group: a batch's tiles are then
    (image, tile) pairs and may come from different images (same guidance for all)."""

    def __init__(self, unet, controlnet, cond: TileConditioning | Sequence[TileConditioning], *, guidance: float,
                 conditioning_scale: float, forward: Callable = controlled_noise):
        self.unet = unet
        self.controlnet = controlnet
        self.conds = [cond] if isinstance(cond, TileConditioning) else list(cond)
        if len({c.negative_embeds is None for c in self.conds}) > 1:
            raise InternalError("the images of one denoiser must all use guidance, or none")
        self.cond = self.conds[0]
        self.guided = self.cond.negative_embeds is not None
        self.guidance = guidance
        self.conditioning_scale = conditioning_scale
        self.dtype = unet.dtype
        self.forward = forward
        self._embeds: dict[tuple[Tile, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def _batch_embeds(self, tiles: list[Tile]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and DAPE states of a tile batch, both CFG branches stacked: built once, reused every step."""
        key = tuple(tiles)
        if key not in self._embeds:
            rows = [(self.conds[image], self.conds[image].rows([tile])) for image, tile in tiles]
            text = torch.cat([cond.prompt_embeds[r] for cond, r in rows])
            image = torch.cat([cond.image_embeds[r] for cond, r in rows])
            if self.guided:
                # Unconditional branch first, as the official pipeline orders it; the soft
                # prompt is the same for both branches.
                negative = torch.cat([cond.negative_embeds.expand(len(r), -1, -1) for cond, r in rows])
                text = torch.cat([negative, text])
                image = torch.cat([image, image])
            self._embeds[key] = (text, image)
        return self._embeds[key]

    @torch.no_grad()  # as every other stage: the hot loop records nothing for autograd
    def __call__(self, latents: torch.Tensor, t: torch.Tensor, boxes: list[Box],
                 tiles: Sequence[int] | Sequence[Tile]) -> torch.Tensor:
        """Guided noise for a batch of latent crops (N x 4 x h x w), float32 out. `tiles`: tile
        indices of the (first) image, or (image, tile) pairs."""
        pairs = [(0, tile) if isinstance(tile, int) else tuple(tile) for tile in tiles]
        text, image = self._batch_embeds(pairs)
        control = torch.cat([_crop(self.conds[i].control, box.scaled(LATENT_FACTOR)) for (i, _), box in zip(pairs, boxes)])
        sample = latents.to(self.dtype)
        if self.guided:
            control = torch.cat([control, control])
            sample = torch.cat([sample, sample])
        noise = self.forward(self.unet, self.controlnet, sample, t, text, image, control.to(self.dtype),
                             self.conditioning_scale).float()
        if not self.guided:
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
    many = tiled_predictor_many(denoiser, [boxes], batch_size=batch_size, windows=window, on_tile=on_tile,
                                should_cancel=should_cancel)
    return lambda latents, t: many([latents], t)[0]


def tiled_predictor_many(
    denoiser: GuidedDenoiser,
    boxes: Sequence[list[Box]],
    *,
    batch_size: int,
    windows: str | Sequence[str] = DEFAULT_WINDOW,
    on_tile: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ManyPredictor:
    """`tiled_predictor` for the images of a group (`boxes[i]`: image i's latent tiles): their
    tiles share the forwards (`tiling.tiled_map_many`), each image's prediction blended alone."""

    def run_batch(t: torch.Tensor):
        def fn(crops: torch.Tensor, tiles: list[Tile]) -> torch.Tensor:
            if should_cancel is not None and should_cancel():
                raise Cancelled("stopped between tile batches")
            noise = denoiser(crops, t, [boxes[i][k] for i, k in tiles], tiles)
            if on_tile is not None:
                on_tile(len(set(tiles)))  # padding repeats the last tile: count each once
            return noise

        return fn

    def predict(latents: list[torch.Tensor], t: torch.Tensor) -> list[torch.Tensor]:
        return tiled_map_many(run_batch(t), latents, boxes, windows=windows, batch_size=batch_size)

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
    return sample_many(lambda xs, t: [predict(xs[0], t)], [scheduler], timesteps, [latents], generators=[generator],
                       on_step=on_step, should_cancel=should_cancel)[0]


def sample_many(
    predict: ManyPredictor,
    schedulers: Sequence,
    timesteps: torch.Tensor,
    latents: Sequence[torch.Tensor],
    *,
    generators: Sequence[torch.Generator | None],
    on_step: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[torch.Tensor]:
    """`sample` for a group in lockstep: one prediction of all latents per step, then each image's
    own scheduler steps it with its own generator (so its noise is what it draws alone)."""
    extras = [_step_kwargs(scheduler, generator) for scheduler, generator in zip(schedulers, generators)]
    latents = [x.float() for x in latents]
    for i, t in enumerate(timesteps):
        if should_cancel is not None and should_cancel():
            raise Cancelled("stopped between denoising steps")
        inputs = [scheduler.scale_model_input(x, t) for scheduler, x in zip(schedulers, latents)]
        noises = predict(inputs, t)
        latents = [scheduler.step(noise, t, x, return_dict=False, **extra)[0]
                   for scheduler, noise, x, extra in zip(schedulers, noises, latents, extras)]
        if on_step is not None:
            on_step(i + 1)
    return latents

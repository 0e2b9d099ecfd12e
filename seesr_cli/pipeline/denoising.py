"""The denoise stage: the sampler over blended latent tiles, ControlNet+UNet at a fixed batch.

Out of memory, the stage starts over from the same start latents and generator state with
half the tiles per forward, then (at one tile per forward) with each tile split into
smaller ones that keep their tile's prompts: DAPE and the text encoder never run again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from seesr_cli.core.denoise import GuidedDenoiser, TileConditioning, sample, tiled_predictor
from seesr_cli.core.samplers import make_scheduler, timesteps_for
from seesr_cli.core.tiling import Box, plan_tiles
from seesr_cli.pipeline.plan import MIN_LATENT_TILE, Batching, RunPlan, shrink
from seesr_cli.pipeline.stage import StageRun
from seesr_cli.settings import UpscaleSettings


def split_tiles(boxes: list[Box], tile: int, overlap: int) -> tuple[list[Box], list[int]]:
    """Each box covered by tiles of at most `tile`; (the tiles, the index of each one's box)."""
    tiles, parents = [], []
    for index, box in enumerate(boxes):
        for part in plan_tiles(box.height, box.width, tile, min(overlap, tile - 1)):
            tiles.append(Box(box.top + part.top, box.left + part.left, part.height, part.width))
            parents.append(index)
    return tiles, parents


def _per_tile(cond: TileConditioning, parents: list[int]) -> TileConditioning:
    if cond.prompt_embeds.shape[0] == 1:  # one global prompt
        return cond
    return replace(cond, prompt_embeds=cond.prompt_embeds[parents], image_embeds=cond.image_embeds[parents])


def denoise(run: StageRun, models: dict, forward: Callable, latents: torch.Tensor, cond: TileConditioning,
            boxes: list[Box], settings: UpscaleSettings, plan: RunPlan,
            generator: torch.Generator) -> tuple[torch.Tensor, Batching]:
    """The denoised latents and the batching that ran (`tile` set only when tiles were split)."""
    state = generator.get_state()
    extent = max(max(box.height, box.width) for box in boxes)

    def attempt(option: Batching) -> torch.Tensor:
        generator.set_state(state)
        tiles, tile_cond = boxes, cond
        if option.tile is not None:
            tiles, parents = split_tiles(boxes, option.tile, plan.overlap)
            tile_cond = _per_tile(cond, parents)
        return _sample(run, models, forward, latents, tile_cond, tiles, settings, plan, option.batch, generator)

    with run.timed("denoise"), run.placed("denoise"):
        return run.retry("the denoise stage", Batching(plan.tile_batch), attempt,
                         lambda option: shrink(option, extent, minimum=MIN_LATENT_TILE, step=8),
                         unit="split into latent tiles of")


def _sample(run: StageRun, models: dict, forward: Callable, latents: torch.Tensor, cond: TileConditioning,
            boxes: list[Box], settings: UpscaleSettings, plan: RunPlan, batch: int,
            generator: torch.Generator) -> torch.Tensor:
    scheduler = make_scheduler(settings.sampler, models["scheduler_config"])
    timesteps = timesteps_for(scheduler, settings.steps, run.device)
    if settings.start == "noise":
        latents = latents * scheduler.init_noise_sigma
    denoiser = GuidedDenoiser(models["unet"], models["controlnet"], cond, guidance=settings.guidance,
                              conditioning_scale=settings.conditioning_scale, forward=forward)
    total, tiles = len(timesteps), len(boxes)
    progress = {"step": 0, "tile": 0}

    def on_tile(count: int) -> None:
        progress["tile"] += count
        run.emit("denoise", progress["step"], total, progress["tile"], tiles)

    def on_step(done: int) -> None:
        progress["step"], progress["tile"] = done, 0
        run.emit("denoise", done, total, 0, tiles)

    predict = tiled_predictor(denoiser, boxes, batch_size=batch, window=plan.window, on_tile=on_tile,
                              should_cancel=run.should_cancel)
    run.emit("denoise", 0, total, 0, tiles)
    return sample(predict, scheduler, timesteps, latents, generator=generator, on_step=on_step,
                  should_cancel=run.should_cancel)

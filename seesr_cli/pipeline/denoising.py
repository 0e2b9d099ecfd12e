"""The denoise stage: the sampler over blended latent tiles, ControlNet+UNet at a fixed batch.

The images of a group are stepped together: each step predicts all their latents, their tiles
sharing forwards, and each image's own scheduler and generator step its latents.
Out of memory, the stage starts over from the same start latents and generator states with
half the tiles per forward, then (at one tile per forward) with each tile split into
smaller ones that keep their tile's prompts: DAPE and the text encoder never run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch

from seesr_cli.core.denoise import GuidedDenoiser, TileConditioning, sample_many, tiled_predictor_many
from seesr_cli.core.samplers import make_scheduler, timesteps_for
from seesr_cli.core.tiling import Box, plan_tiles
from seesr_cli.errors import InternalError
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


def denoise(run: StageRun, models: dict, forward: Callable, latents: list[torch.Tensor],
            conds: list[TileConditioning], boxes: list[list[Box]], settings: list[UpscaleSettings], plan: RunPlan,
            generators: list[torch.Generator]) -> tuple[list[torch.Tensor], Batching]:
    """Each image's denoised latents and the batching that ran (`tile` set only when tiles were
    split). The group's images are stepped in lockstep (their tiles sharing forwards), each by its
    own scheduler with its own generator. `plan`: the group's batches; `settings`: each image's."""
    states = [generator.get_state() for generator in generators]
    extent = max(max(box.height, box.width) for image in boxes for box in image)

    def attempt(option: Batching) -> list[torch.Tensor]:
        for generator, state in zip(generators, states):
            generator.set_state(state)
        tiles, tile_conds = boxes, conds
        if option.tile is not None:
            split = [split_tiles(image, option.tile, s.tile_overlap) for image, s in zip(boxes, settings)]
            tiles = [image for image, _ in split]
            tile_conds = [_per_tile(cond, parents) for cond, (_, parents) in zip(conds, split)]
        return _sample(run, models, forward, latents, tile_conds, tiles, settings, option.batch, generators)

    with run.timed("denoise", [len(image) for image in boxes]), run.placed("denoise"):
        return run.retry("the denoise stage", Batching(plan.tile_batch), attempt,
                         lambda option: shrink(option, extent, minimum=MIN_LATENT_TILE, step=8),
                         unit="split into latent tiles of")


def announcing(forward: Callable, run: StageRun, rows_per_tile: int) -> Callable:
    """`forward`, saying in progress when a call compiles (a compiled forward's first call for a
    shape: `CompiledForward.compiles`) and how long that took; a plain forward as it is."""
    compiles = getattr(forward, "compiles", None)
    if compiles is None:
        return forward

    def call(unet, controlnet, sample, *rest):
        if not compiles(sample):
            return forward(unet, controlnet, sample, *rest)
        rows, _, height, width = sample.shape
        what = f"{height}x{width} tiles, batch {rows // rows_per_tile}"
        run.emit("compile", 0, 1, detail=f"compiling for {what} (once per shape)")
        start = time.perf_counter()
        out = forward(unet, controlnet, sample, *rest)
        run.emit("compile", 1, 1, detail=f"compiled for {what} in {time.perf_counter() - start:.1f} s")
        return out

    return call


def _sample(run: StageRun, models: dict, forward: Callable, latents: list[torch.Tensor],
            conds: list[TileConditioning], boxes: list[list[Box]], settings: list[UpscaleSettings], batch: int,
            generators: list[torch.Generator]) -> list[torch.Tensor]:
    first = settings[0]  # what the group shares (`plan.group_key`): sampler, steps, start, guidance
    schedulers = [make_scheduler(first.sampler, models["scheduler_config"]) for _ in latents]
    timesteps = [timesteps_for(scheduler, first.steps, run.device) for scheduler in schedulers]
    if any(not torch.equal(timesteps[0], other) for other in timesteps[1:]):
        raise InternalError("the images of a group must share their timesteps")
    if first.start == "noise":
        latents = [x * scheduler.init_noise_sigma for x, scheduler in zip(latents, schedulers)]
    denoiser = GuidedDenoiser(models["unet"], models["controlnet"], conds, guidance=first.guidance,
                              conditioning_scale=first.conditioning_scale,
                              forward=announcing(forward, run, 2 if first.use_cfg else 1))
    total, tiles = len(timesteps[0]), sum(len(image) for image in boxes)
    progress = {"step": 0, "tile": 0}

    def on_tile(count: int) -> None:
        progress["tile"] += count
        run.emit("denoise", progress["step"], total, progress["tile"], tiles)

    def on_step(done: int) -> None:
        progress["step"], progress["tile"] = done, 0
        run.emit("denoise", done, total, 0, tiles)

    predict = tiled_predictor_many(denoiser, boxes, batch_size=batch, windows=[s.tile_window for s in settings],
                                   on_tile=on_tile, should_cancel=run.should_cancel)
    run.emit("denoise", 0, total, 0, tiles)
    return sample_many(predict, schedulers, timesteps[0], latents, generators=generators, on_step=on_step,
                       should_cancel=run.should_cancel)

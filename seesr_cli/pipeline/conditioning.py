"""The prompt stages: DAPE on each tile's LR crop (or the whole image), then the text encoder.

Each stage runs its forwards at the plan's fixed batch and, out of memory, retries itself
with a smaller batch; a finished stage is never redone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from seesr_cli.core.denoise import TileConditioning
from seesr_cli.core.geometry import Geometry
from seesr_cli.core.prompts import compose_prompt, encode_prompts
from seesr_cli.core.tiling import Box
from seesr_cli.pipeline.plan import Batching, RunPlan, smaller_batch
from seesr_cli.pipeline.stage import StageRun
from seesr_cli.pipeline.tagging import analyse, lr_crops
from seesr_cli.settings import UpscaleSettings


@dataclass(frozen=True)
class Prompts:
    """Per DAPE crop (one per tile, or one for the image): its tags and the prompt built from them."""

    tags: list[list[str]]
    prompts: list[str]
    cond: TileConditioning
    dape_batch: int
    text_batch: int


def tag(run: StageRun, dape, crops: list[Image.Image], batch: int,
        threshold: float | None) -> tuple[torch.Tensor, list[list[str]], int]:
    """(soft prompts N x 145 x 512, the on-tags of each crop, the batch that ran)."""
    def attempt(option: Batching):
        return analyse(dape, crops, batch=option.batch, should_cancel=run.should_cancel)

    with run.timed("dape"), run.placed("dape"):
        (embeds, probs), used = run.retry("DAPE", Batching(batch), attempt, smaller_batch)
    tags = [[name for name, _ in row] for row in dape.tag_scores(probs, threshold)]
    return embeds, tags, used.batch


def encode_text(run: StageRun, tokenizer, text_encoder, prompts: list[str], batch: int) -> tuple[torch.Tensor, int]:
    """The text encoder's states of each prompt (N x 77 x D) and the batch that ran."""
    def attempt(option: Batching):
        return encode_prompts(tokenizer, text_encoder, prompts, batch_size=option.batch,
                              should_cancel=run.should_cancel)

    with run.timed("text"), run.placed("text"):
        states, used = run.retry("the text encoder", Batching(batch), attempt, smaller_batch)
    return states, used.batch


def conditioning(run: StageRun, parts: dict, image: Image.Image, geometry: Geometry, boxes: list[Box],
                 control: torch.Tensor, settings: UpscaleSettings, plan: RunPlan, dtype: torch.dtype) -> Prompts:
    """Hard + soft prompts per tile (or one global) and the text states of both guidance branches."""
    run.emit("prompts", 0, 1)
    crops = lr_crops(image, geometry, boxes, settings.tile_prompts)
    embeds, tags, dape_batch = tag(run, parts["dape"], crops, plan.dape_batch, settings.tag_threshold)
    prompts = [compose_prompt(", ".join(t), settings.prompt, settings.added_prompt) for t in tags]
    texts = prompts + ([settings.negative_prompt] if settings.use_cfg else [])
    states, text_batch = encode_text(run, parts["tokenizer"], parts["text_encoder"], texts, plan.text_batch)
    states = states.to(dtype)
    negative = states[len(prompts):] if settings.use_cfg else None
    cond = TileConditioning(states[: len(prompts)], embeds.to(dtype), negative, control)
    run.emit("prompts", 1, 1)
    return Prompts(tags, prompts, cond, dape_batch, text_batch)

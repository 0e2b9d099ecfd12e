"""The prompt stages: DAPE on each tile's LR crop (or the whole image), then the text encoder.

Each stage runs its forwards at the plan's fixed batch, the crops (prompts) of all the images
of a group in one stream, and, out of memory, retries itself with a smaller batch; a finished
stage is never redone.
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


def tag(run: StageRun, dape, crops: list[Image.Image], batch: int, work: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(soft prompts N x 145 x 512, tag probabilities, the batch that ran) of the group's crops in
    one stream of fixed-size batches; `work`: each image's number of crops."""
    def attempt(option: Batching):
        return analyse(dape, crops, batch=option.batch, should_cancel=run.should_cancel)

    with run.timed("dape", work), run.placed("dape"):
        (embeds, probs), used = run.retry("DAPE", Batching(batch), attempt, smaller_batch)
    return embeds, probs, used.batch


def encode_text(run: StageRun, tokenizer, text_encoder, prompts: list[str], batch: int,
                work: list[int] | None = None) -> tuple[torch.Tensor, int]:
    """The text encoder's states of each prompt (N x 77 x D) and the batch that ran."""
    def attempt(option: Batching):
        return encode_prompts(tokenizer, text_encoder, prompts, batch_size=option.batch,
                              should_cancel=run.should_cancel)

    with run.timed("text", work), run.placed("text"):
        states, used = run.retry("the text encoder", Batching(batch), attempt, smaller_batch)
    return states, used.batch


def _split(values: torch.Tensor | list, counts: list[int]) -> list:
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [values[start : start + count] for start, count in zip(starts, counts)]


def conditioning(run: StageRun, parts: dict, images: list[Image.Image], geometries: list[Geometry],
                 boxes: list[list[Box]], controls: list[torch.Tensor], settings: list[UpscaleSettings], plan: RunPlan,
                 dtype: torch.dtype) -> list[Prompts]:
    """Each image's hard + soft prompts per tile (or one global) and the text states of both guidance
    branches. The crops of all the group's images share DAPE's batches, their prompts the text
    encoder's (each distinct prompt encoded once); a row never depends on its batch-mates."""
    run.emit("prompts", 0, 1)
    crops = [lr_crops(image, geometry, tiles, s.tile_prompts)
             for image, geometry, tiles, s in zip(images, geometries, boxes, settings)]
    counts = [len(c) for c in crops]
    embeds, probs, dape_batch = tag(run, parts["dape"], [c for image in crops for c in image], plan.dape_batch, counts)
    tags = [[[name for name, _ in row] for row in parts["dape"].tag_scores(p, s.tag_threshold)]
            for p, s in zip(_split(probs, counts), settings)]
    prompts = [[compose_prompt(", ".join(t), s.prompt, s.added_prompt) for t in image_tags]
               for image_tags, s in zip(tags, settings)]
    texts = [p + ([s.negative_prompt] if s.use_cfg else []) for p, s in zip(prompts, settings)]
    text_counts = [len(t) for t in texts]
    states, text_batch = encode_text(run, parts["tokenizer"], parts["text_encoder"], [t for ts in texts for t in ts],
                                     plan.text_batch, text_counts)
    out = []
    for i, (image_states, image_embeds, s) in enumerate(zip(_split(states.to(dtype), text_counts),
                                                           _split(embeds, counts), settings)):
        count = len(prompts[i])
        negative = image_states[count:] if s.use_cfg else None
        cond = TileConditioning(image_states[:count], image_embeds.to(dtype), negative, controls[i])
        out.append(Prompts(tags[i], prompts[i], cond, dape_batch, text_batch))
    run.emit("prompts", 1, 1)
    return out

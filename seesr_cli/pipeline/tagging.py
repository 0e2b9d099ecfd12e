"""DAPE on an image and on the LR crop behind each latent tile: the upscale's prompts and `seesr tag`.

One place decides which LR pixels a tile's prompt comes from and runs DAPE over the crops
in batches; the upscale and the `tag` command both use it, so `seesr tag --per-tile` shows
exactly the tags an upscale with the same settings would use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from seesr_cli.core.geometry import Geometry, latent_tiles, lr_box, plan_geometry, tile_size_for
from seesr_cli.core.tiling import Box
from seesr_cli.errors import Cancelled
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings


def lr_crops(image: Image.Image, geometry: Geometry, boxes: list[Box], tile_prompts: str) -> list[Image.Image]:
    """The images DAPE sees: the whole LR image once ("global", or a single tile), else each tile's crop."""
    if tile_prompts == "global" or len(boxes) == 1:
        return [image]
    return [image.crop(pil_box(lr_box(box, geometry))) for box in boxes]


def dape_batch(dape) -> int:
    """Crops per DAPE forward: the fixed batch of the device kind DAPE runs on."""
    return DEVICE_BATCH.get(dape.image_proj.weight.device.type, 1)


@torch.inference_mode()
def analyse(dape, crops: list[Image.Image], *, batch: int | None = None,
            should_cancel: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(soft prompts N x 145 x 512, float32 tag probabilities N x tags) of the crops, on DAPE's device.

    Every forward runs exactly `batch` crops (default `dape_batch`; the last batch padded
    with its last crop, those rows dropped), so a crop's tags never depend on its batch-mates.
    """
    batch = batch or dape_batch(dape)
    weight = dape.image_proj.weight
    embeds, probs = [], []
    for first in range(0, len(crops), batch):
        if should_cancel is not None and should_cancel():
            raise Cancelled("stopped while tagging")
        group = crops[first : first + batch]
        real = len(group)
        x = dape.preprocess(group + [group[-1]] * (batch - real)).to(weight.device, weight.dtype)
        soft, p = dape.analyse(x)
        embeds.append(soft[:real])
        probs.append(p[:real])
    return torch.cat(embeds), torch.cat(probs)


def pil_box(box: Box) -> tuple[int, int, int, int]:
    return (box.left, box.top, box.left + box.width, box.top + box.height)


@dataclass(frozen=True)
class TileTags:
    box: Box  # LR pixels
    tags: list[tuple[str, float]]  # (tag, probability), vocabulary order


@dataclass(frozen=True)
class ImageTags:
    tags: list[tuple[str, float]]
    tiles: list[TileTags]  # empty unless asked for


class Tagger:
    """DAPE alone (what `seesr tag` needs): the image's tags and, on request, each tile's."""

    def __init__(self, dape):
        self.dape = dape

    @classmethod
    def load(cls, path: Path, device: torch.device) -> Tagger:
        from seesr_cli.models.dape import DAPE

        return cls(DAPE.load(path, device=device))

    def tag(self, image: Image.Image, settings: UpscaleSettings, *, per_tile: bool = False) -> ImageTags:
        """`settings` decide the tiles (scale, tile size and overlap) and the threshold."""
        image = image.convert("RGB")
        _, probs = analyse(self.dape, [image])
        whole = self.dape.tag_scores(probs, settings.tag_threshold)[0]
        if not per_tile:
            return ImageTags(whole, [])
        geometry = plan_geometry(*image.size, settings)
        boxes = latent_tiles(geometry, tile_size_for(settings), settings.tile_overlap)
        lr_boxes = [lr_box(box, geometry) for box in boxes]
        _, probs = analyse(self.dape, [image.crop(pil_box(box)) for box in lr_boxes])
        scores = self.dape.tag_scores(probs, settings.tag_threshold)
        return ImageTags(whole, [TileTags(box, tags) for box, tags in zip(lr_boxes, scores)])

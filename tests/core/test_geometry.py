"""Sizes through the pipeline (official test_seesr.py rules) and LR tile boxes."""

from __future__ import annotations

import pytest

from seesr_cli.core.geometry import latent_tiles, lr_box, plan_geometry, plan_lr_tiles
from seesr_cli.settings import UpscaleSettings


def test_official_sizes_x4():
    g = plan_geometry(128, 128, UpscaleSettings())
    assert g.enlarged == (128, 128) and g.work == (512, 512) and g.out == (512, 512)
    assert g.latent == (64, 64)
    # shorter side under 128 -> enlarged to 128 first (official process_size // upscale)
    g = plan_geometry(100, 50, UpscaleSettings())
    assert g.enlarged == (256, 128) and g.work == (1024, 512) and g.out == (400, 200)
    # non multiples of 8 are floored after the x4 resize
    g = plan_geometry(301, 203, UpscaleSettings())
    assert g.upscaled == (1204, 812) and g.work == (1200, 808) and g.out == (1204, 812)


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (300, 37), (2000, 1500), (5, 3000)])
@pytest.mark.parametrize("scale", [1, 2, 3.5, 4])
def test_sizes_are_valid(size, scale):
    g = plan_geometry(*size, UpscaleSettings(scale=scale))
    assert g.out == (round(size[0] * scale), round(size[1] * scale))
    assert all(side % 8 == 0 and side >= 8 for side in g.work)
    assert min(g.enlarged) >= min(size) and min(g.enlarged) >= min(512 // scale, min(size)) - 1


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (300, 37), (2000, 1500)])
def test_lr_boxes_cover_the_image(size):
    settings = UpscaleSettings(tile_size=32, tile_overlap=8)
    boxes = plan_lr_tiles(*size, settings)
    width, height = size
    covered = [[False] * width for _ in range(height)] if width * height <= 100_000 else None
    for box in boxes:
        assert 0 <= box.top and 0 <= box.left and box.height >= 1 and box.width >= 1
        assert box.top + box.height <= height and box.left + box.width <= width
        if covered is not None:
            for y in range(box.top, box.top + box.height):
                for x in range(box.left, box.left + box.width):
                    covered[y][x] = True
    if covered is not None:
        assert all(all(row) for row in covered)


def test_one_tile_is_the_whole_lr():
    g = plan_geometry(120, 80, UpscaleSettings())
    boxes = latent_tiles(g, 96, 16)
    assert len(boxes) == 1
    box = lr_box(boxes[0], g)
    assert (box.top, box.left, box.height, box.width) == (0, 0, 80, 120)

"""Tile geometry and blending: properties over many sizes (pure, CPU, fast)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from seesr_cli.core.tiling import Box, blend_window, plan_tiles, tile_batches, tiled_map
from seesr_cli.errors import InternalError

# (height, width, tile, overlap): tiny, edge-fitting, off-by-one and awkward cases.
PLANS = [
    (1, 1, 8, 0), (1, 37, 8, 3), (37, 1, 8, 7), (8, 8, 8, 4), (9, 8, 8, 4), (16, 24, 8, 0),
    (17, 33, 8, 2), (64, 64, 96, 16), (100, 7, 32, 31), (97, 131, 32, 8), (200, 130, 96, 4),
    (5, 300, 4, 1), (1, 2, 1, 0),
]
_rng = random.Random(1234)
for _ in range(40):
    _tile = _rng.randint(1, 40)
    PLANS.append((_rng.randint(1, 150), _rng.randint(1, 150), _tile, _rng.randint(0, _tile - 1)))


def _axis(boxes: list[Box], vertical: bool) -> list[tuple[int, int]]:
    spans = {(b.top, b.height) if vertical else (b.left, b.width) for b in boxes}
    return sorted(spans)


@pytest.mark.parametrize("height,width,tile,overlap", PLANS)
def test_plan_properties(height, width, tile, overlap):
    boxes = plan_tiles(height, width, tile, overlap)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for box in boxes:
        assert box.height == min(tile, height) and box.width == min(tile, width)
        assert box.top >= 0 and box.left >= 0 and box.bottom <= height and box.right <= width
        covered[box.slices] += 1
    assert bool((covered > 0).all()), "every pixel is covered"
    rows, cols = _axis(boxes, True), _axis(boxes, False)
    assert len(boxes) == len(rows) * len(cols)
    assert boxes == sorted(boxes, key=lambda b: (b.top, b.left)), "row-major order"
    for spans, length in ((rows, height), (cols, width)):
        assert spans[0][0] == 0 and sum(spans[-1]) == length, "first at 0, last flush with the edge"
        starts = [s for s, _ in spans]
        size = spans[0][1]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(size - gap >= overlap for gap in gaps), "every overlap is at least the requested one"
        assert not gaps or max(gaps) - min(gaps) <= 1, "evenly spaced"
        if length > tile:  # the official count: fewest tiles of stride tile-overlap that cover
            stride = tile - overlap
            assert (len(starts) - 2) * stride + tile < length <= (len(starts) - 1) * stride + tile


def test_fitting_image_is_one_tile():
    assert plan_tiles(64, 40, 96, 16) == [Box(0, 0, 64, 40)]
    assert plan_tiles(96, 96, 96, 95) == [Box(0, 0, 96, 96)]
    assert plan_tiles(1, 1, 1, 0) == [Box(0, 0, 1, 1)]


@pytest.mark.parametrize("overlap", [-1, 8, 9, 1.5])
def test_overlap_is_validated(overlap):
    with pytest.raises(InternalError, match=str(overlap)):
        plan_tiles(100, 100, 8, overlap)


@pytest.mark.parametrize("args", [(0, 5, 8, 0), (5, -1, 8, 0), (5, 5, 0, 0)])
def test_sizes_are_validated(args):
    with pytest.raises(InternalError):
        plan_tiles(*args)


def test_box_helpers():
    box = Box(2, 3, 4, 5)
    assert box.slices == (slice(2, 6), slice(3, 8))
    assert box.scaled(8) == Box(16, 24, 32, 40)
    assert Box(16, 24, 32, 40).scaled(Fraction(1, 8)) == box
    assert Box(16, 24, 32, 40).scaled(0.125) == box
    with pytest.raises(ValueError):
        Box(1, 0, 8, 8).scaled(0.5)


@pytest.mark.parametrize("kind", ["linear", "gaussian"])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (2, 3), (96, 96), (320, 17), (1024, 1024)])
def test_windows_are_positive_and_symmetric(kind, size):
    window = blend_window(*size, kind)
    assert window.shape == size and window.dtype == torch.float32
    assert bool((window > 0).all()) and bool(torch.isfinite(window).all())
    assert torch.allclose(window, window.flip(0)) and torch.allclose(window, window.flip(1))
    # normalisable: a tile's weights over the coverage count sum to a positive, finite value
    assert float(window.sum()) > 0


def test_linear_window_cross_fades_linearly_over_the_overlap():
    # two tiles of 10 overlapping by 4: the normalised weight of the first falls 7/8, 5/8, 3/8, 1/8
    boxes = plan_tiles(1, 16, 10, 4)
    assert [b.left for b in boxes] == [0, 6]
    first = tiled_map(lambda c, idx: torch.full_like(c, float(idx[0] == 0)), torch.zeros(1, 1, 1, 16), boxes)
    assert torch.allclose(first[0, 0, 0, 6:10], torch.tensor([7, 5, 3, 1]) / 8)
    assert torch.equal(first[0, 0, 0, :6], torch.ones(6)) and torch.equal(first[0, 0, 0, 10:], torch.zeros(6))


@pytest.mark.parametrize("tile,overlap,linear,gaussian", [(96, 16, 1 / 16, 0.21), (320, 4, 1 / 4, 0.39)])
def test_linear_window_has_smaller_steps_than_the_official_gaussian(tile, overlap, linear, gaussian):
    length = 2 * tile - overlap
    boxes = plan_tiles(1, length, tile, overlap)

    def largest_step(window: str) -> float:
        share = tiled_map(lambda c, idx: torch.full_like(c, float(idx[0] == 0)), torch.zeros(1, 1, 1, length),
                          boxes, window=window)[0, 0, 0]
        return float((share[1:] - share[:-1]).abs().max())

    assert largest_step("linear") == pytest.approx(linear, abs=1e-6)
    assert largest_step("gaussian") == pytest.approx(gaussian, abs=0.01)


def test_unknown_window():
    with pytest.raises(InternalError, match="triangle"):
        blend_window(4, 4, "triangle")
    with pytest.raises(InternalError, match="triangle"):
        tiled_map(lambda c, t: c, torch.zeros(1, 1, 4, 4), plan_tiles(4, 4, 2, 0), window="triangle")


def _pixelwise(crops: torch.Tensor, _tiles: list[int]) -> torch.Tensor:
    # a stand-in "model" whose prediction at a pixel depends only on that pixel
    return torch.cat([torch.sin(3 * crops) + crops**2, crops.mean(1, keepdim=True) * 0 + crops[:, :1].exp()], 1)


BLEND_CASES = [
    # (B, height, width, tile, overlap, batch_size, window)
    (1, 16, 24, 8, 2, 1, "gaussian"), (2, 16, 24, 8, 2, 3, "linear"), (1, 37, 53, 16, 5, 4, "linear"),
    (1, 37, 53, 16, 5, 2, "gaussian"), (3, 9, 70, 8, 7, 100, "linear"), (1, 1, 40, 8, 3, 2, "gaussian"),
    (1, 64, 64, 24, 0, 5, "linear"), (1, 100, 3, 10, 9, 7, "gaussian"), (1, 130, 150, 96, 4, 2, "gaussian"),
]


@pytest.mark.parametrize("batch,height,width,tile,overlap,batch_size,window", BLEND_CASES)
def test_blending_is_exact_for_a_pixelwise_model(batch, height, width, tile, overlap, batch_size, window):
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    boxes = plan_tiles(height, width, tile, overlap)
    assert len(boxes) > 1
    calls = []

    def fn(crops, tiles):
        calls.append(list(tiles))
        assert crops.shape[0] == batch * len(tiles) and len(tiles) == batch_size  # always one batch shape
        for k, i in enumerate(tiles):  # crops are the right tiles, tile-major
            rows, cols = boxes[i].slices
            assert torch.equal(crops[k * batch : (k + 1) * batch], x[:, :, rows, cols])
        return _pixelwise(crops, tiles)

    got = tiled_map(fn, x, boxes, window=window, batch_size=batch_size)
    # Each tile runs once, except the copies that pad a partial batch: only the last tile of a batch.
    assert sorted({i for c in calls for i in c}) == list(range(len(boxes))), "every tile runs"
    assert all(c[: len(set(c))] == list(dict.fromkeys(c)) and set(c[len(set(c)):]) <= {c[len(set(c)) - 1]}
               for c in calls), "padding repeats the last tile"
    assert sum(len(set(c)) for c in calls) == len(boxes), "no tile in two batches"
    assert got.shape == (batch, 4, height, width)
    assert (got - _pixelwise(x, [0])).abs().max() < 1e-5


def test_single_tile_is_bit_exact_and_untouched():
    x = torch.randn(2, 3, 17, 29)
    seen = []

    def fn(crops, tiles):
        seen.append((crops, tiles))
        return torch.sin(crops) * 1.7

    for tile in (29, 64, 1000):
        got = tiled_map(fn, x, plan_tiles(17, 29, tile, 0), window="gaussian", batch_size=1)
        assert torch.equal(got, torch.sin(x) * 1.7)
    assert all(crops is x and tiles == [0] for crops, tiles in seen)
    seen.clear()
    got = tiled_map(fn, x, plan_tiles(17, 29, 64, 0), batch_size=4)  # padded to the batch shape, no window
    assert torch.equal(got, torch.sin(x) * 1.7)
    assert [(tuple(crops.shape), tiles) for crops, tiles in seen] == [((8, 3, 17, 29), [0, 0, 0, 0])]


def test_a_partial_batch_is_padded_and_its_padding_dropped():
    x = torch.randn(2, 1, 8, 20)
    boxes = plan_tiles(8, 20, 8, 2)  # 3 tiles
    seen = []

    def fn(crops, tiles):
        seen.append(list(tiles))
        return crops * 2

    got = tiled_map(fn, x, boxes, batch_size=2)
    assert seen == [[0, 1], [2, 2]]
    assert torch.allclose(got, x * 2)


@pytest.mark.parametrize("overlap", [0, 3, 7])
def test_scale_8_upsampling(overlap):
    x = torch.randn(1, 4, 21, 34)
    boxes = plan_tiles(21, 34, 8, overlap)

    def up(crops, _tiles):
        return F.interpolate(crops * 2, scale_factor=8, mode="nearest")

    got = tiled_map(up, x, boxes, scale=8, batch_size=3)
    assert got.shape == (1, 4, 168, 272)
    assert (got - up(x, [0])).abs().max() < 1e-5


@pytest.mark.parametrize("scale", [Fraction(1, 8), 0.125])
def test_scale_one_eighth_pooling(scale):
    x = torch.randn(2, 3, 8 * 19, 8 * 13)
    boxes = [b.scaled(8) for b in plan_tiles(19, 13, 6, 2)]

    def down(crops, _tiles):
        return F.avg_pool2d(crops, 8)

    got = tiled_map(down, x, boxes, scale=scale, batch_size=2, out_device="cpu")
    assert got.shape == (2, 3, 19, 13)
    assert (got - down(x, [0])).abs().max() < 1e-5


def test_bad_tile_outputs_and_boxes_are_reported():
    x = torch.zeros(1, 1, 16, 16)
    boxes = plan_tiles(16, 16, 8, 0)
    with pytest.raises(ValueError, match="expected"):
        tiled_map(lambda c, t: c[..., :-1], x, boxes)
    with pytest.raises(ValueError, match="expected"):
        tiled_map(lambda c, t: c, x, boxes, out_channels=3)
    with pytest.raises(ValueError, match="uncovered"):
        tiled_map(lambda c, t: c, x, boxes[:-1])
    with pytest.raises(ValueError, match="inside"):
        tiled_map(lambda c, t: c, x, [Box(10, 10, 8, 8)])


def test_batches_group_equal_shapes():
    boxes = [Box(0, 0, 4, 4), Box(0, 4, 4, 3), Box(4, 0, 4, 4), Box(4, 4, 4, 3), Box(8, 0, 4, 4)]
    assert tile_batches(boxes, 2) == [[0, 2], [4], [1, 3]]
    assert tile_batches(boxes, 10) == [[0, 2, 4], [1, 3]]
    with pytest.raises(InternalError):
        tile_batches(boxes, 0)


def test_mixed_shapes_blend_exactly():
    x = torch.randn(1, 2, 12, 7)
    boxes = [Box(0, 0, 4, 4), Box(0, 3, 4, 4), Box(3, 0, 9, 7), Box(2, 2, 3, 3)]
    got = tiled_map(_pixelwise, x, boxes, batch_size=2)
    assert (got - _pixelwise(x, [0])).abs().max() < 1e-5

"""Tile geometry and blended tiled evaluation.

`Box`, `plan_tiles` and `blend_window` are pure functions of sizes. `tiled_map`
runs any per-tile function (the latent noise predictor, the VAE encoder or
decoder) over overlapping tiles and blends the results with a window,
normalised by the summed weights, so memory is the output buffer, one weight
plane and one batch of tiles.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import torch

from seesr_cli.errors import InternalError

WINDOWS = ("linear", "gaussian")
DEFAULT_WINDOW = "linear"
_GAUSSIAN_VARIANCE = 0.01  # of the tile size, as the official `_gaussian_weights`

Scale = int | float | Fraction
TileFn = Callable[[torch.Tensor, list[int]], torch.Tensor]


def as_fraction(scale: Scale) -> Fraction:
    """`scale` as an exact positive fraction (floats such as 0.125 or 1/3 are recovered)."""
    value = Fraction(scale) if not isinstance(scale, float) else Fraction(scale).limit_denominator(1 << 20)
    if value <= 0:
        raise ValueError(f"scale must be positive; got {scale!r}")
    return value


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in pixels: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) for indexing the last two dimensions of a tensor."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled(self, factor: Scale) -> Box:
        """The same region at `factor` times the resolution; every edge must land on a pixel."""
        f = as_fraction(factor)
        values = [v * f for v in (self.top, self.left, self.height, self.width)]
        if any(v.denominator != 1 for v in values):
            raise ValueError(f"{self} scaled by {f} does not land on whole pixels")
        return Box(*(int(v) for v in values))


def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: first at 0, last flush with the end, evenly spaced.

    The count is the official one (the fewest tiles whose stride tile-overlap covers
    `length`); spreading them evenly instead of pushing only the last one back means no
    thin sliver of overlap at the end, and every overlap is at least `overlap`.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(length - overlap) // stride)  # ceil; >= 2 because length > tile
    span, gaps = length - tile, count - 1
    # round(i * span / gaps) in integers (half up); each gap is <= ceil(span / gaps) <= stride
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(count)]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """Overlapping tiles of min(tile, side) covering a height x width image, row-major."""
    for name, value in (("height", height), ("width", width), ("tile size", tile)):
        if not isinstance(value, int) or value < 1:
            raise InternalError(f"{name} must be a positive integer; got {value!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise InternalError(f"tile overlap must be an integer in [0, tile size {tile}); got {overlap!r}")
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows = _axis_starts(height, tile, overlap)
    cols = _axis_starts(width, tile, overlap)
    return [Box(top, left, tile_h, tile_w) for top in rows for left in cols]


def _axis_window(n: int, kind: str) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    if kind == "linear":
        # Tent: distance of the pixel centre to the nearer tile edge.
        return torch.minimum(i + 0.5, n - i - 0.5) / (n / 2)
    if kind == "gaussian":
        # Official maths, but centred at (n-1)/2 on both axes (the official y centre is
        # n/2, which shifts the window by half a pixel).
        centre = (n - 1) / 2
        return torch.exp(-((i - centre) ** 2) / (n * n) / (2 * _GAUSSIAN_VARIANCE)) / math.sqrt(
            2 * math.pi * _GAUSSIAN_VARIANCE
        )
    raise InternalError(f"blend window must be one of {', '.join(WINDOWS)}; got {kind!r}")


def blend_window(
    height: int,
    width: int,
    kind: str = DEFAULT_WINDOW,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A strictly positive, separable height x width weight window (peak near 1).

    "linear" (default): a tent. Blending divides by the summed weights, so only the
    ratio of neighbouring windows matters: where two tiles overlap by o pixels the tent
    gives a linear cross-fade over exactly those o pixels, whatever o is. That is the
    flat-middle/ramp-across-the-overlap window without having to know the overlap.
    "gaussian": the official window (variance 0.01 of the tile size). Its edge weight is
    e^-12.5 of the peak, so the cross-fade uses only part of the overlap: the largest
    pixel-to-pixel change of one tile's share is 0.21 for tile 96 / overlap 16 (tent:
    0.06 = 1/16) and 0.39 for tile 320 / overlap 4 (tent: 0.25), hence not the default.
    Build weights in float32 or wider: the Gaussian's corners (~1e-10) underflow in float16.
    """
    if height < 1 or width < 1:
        raise ValueError(f"window size must be positive; got {height}x{width}")
    window = torch.outer(_axis_window(height, kind), _axis_window(width, kind))
    return window.to(device=device, dtype=dtype)


@lru_cache(maxsize=32)
def _cached_window(height: int, width: int, kind: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Shared between calls (the noise predictor runs every step): never modify in place.
    return blend_window(height, width, kind, device=device, dtype=dtype)


@lru_cache(maxsize=8)
def _check_boxes(boxes: tuple[Box, ...], height: int, width: int) -> None:
    """Every box inside the image and every pixel covered (cached: plans repeat per step).

    Coverage is checked on the grid of distinct box edges, not per pixel, so the cost
    does not grow with the image.
    """
    if not boxes:
        raise ValueError("no tiles to run")
    for box in boxes:
        if box.top < 0 or box.left < 0 or box.bottom > height or box.right > width or box.height < 1 or box.width < 1:
            raise ValueError(f"{box} does not lie inside the {height}x{width} image")
    ys = sorted({0, height, *(b.top for b in boxes), *(b.bottom for b in boxes)})
    xs = sorted({0, width, *(b.left for b in boxes), *(b.right for b in boxes)})
    covered = torch.zeros(len(ys) - 1, len(xs) - 1, dtype=torch.bool)
    for box in boxes:
        rows = slice(bisect_left(ys, box.top), bisect_left(ys, box.bottom))
        covered[rows, bisect_left(xs, box.left) : bisect_left(xs, box.right)] = True
    if not bool(covered.all()):
        raise ValueError(f"the tiles leave part of the {height}x{width} image uncovered")


def tile_batches(boxes: Sequence[Box], batch_size: int) -> list[list[int]]:
    """Tile indices grouped by tile shape (first-seen order) in chunks of at most batch_size."""
    if batch_size < 1:
        raise InternalError(f"tile batch size must be >= 1; got {batch_size!r}")
    groups: dict[tuple[int, int], list[int]] = {}
    for index, box in enumerate(boxes):
        groups.setdefault((box.height, box.width), []).append(index)
    return [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def tiled_map(
    fn: TileFn,
    x: torch.Tensor,
    boxes: Sequence[Box],
    *,
    scale: Scale = 1,
    window: str = DEFAULT_WINDOW,
    batch_size: int = 1,
    out_channels: int | None = None,
    out_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Evaluate `fn` tile by tile over x (B x C x H x W) and blend the outputs.

    `fn(crops, indices)` gets the crops of the tiles `indices` (into `boxes`) stacked
    tile-major along the batch dimension (k tiles -> k*B rows; rows i*B..(i+1)*B are
    tile indices[i]) and returns k*B x C' x (h*scale) x (w*scale). The result is
    B x C' x (H*scale) x (W*scale) in at least float32 on `out_device` (default: x's).
    Every call gets exactly `batch_size` tiles: a partial batch is padded with copies of
    its last tile, whose outputs are dropped. At one batch shape a tile's output does not
    depend on which tiles share its call (kernels pick their algorithm by shape).
    One box covering all of x runs fn on x (padded likewise) without any window maths:
    with batch_size 1, fn(x, [0]) untouched and bit-exact.
    `out_channels`, when given, is checked against what fn returns.
    """
    if window not in WINDOWS:
        raise InternalError(f"blend window must be one of {', '.join(WINDOWS)}; got {window!r}")
    height, width = x.shape[-2:]
    factor = as_fraction(scale)
    full = Box(0, 0, height, width)
    out_full = full.scaled(factor)
    _check_boxes(tuple(boxes), height, width)
    batches = tile_batches(boxes, batch_size)
    if len(boxes) == 1 and boxes[0] == full:
        out = _padded_call(fn, [x], [0], batch_size)
        _check_output(out, x.shape[0], full, out_full, out_channels)
        return out.to(device=out_device or out.device, dtype=torch.promote_types(out.dtype, torch.float32))

    batch = x.shape[0]
    device = torch.device(out_device) if out_device is not None else x.device
    acc: torch.Tensor | None = None
    weights = torch.zeros(out_full.height, out_full.width, device=device, dtype=torch.float32)
    for tiles in batches:
        first = boxes[tiles[0]]
        crops = [x[:, :, rows, cols] for rows, cols in (boxes[i].slices for i in tiles)]
        out = _padded_call(fn, crops, tiles, batch_size)
        _check_output(out, batch * len(tiles), first, first.scaled(factor), out_channels)
        if acc is None:
            dtype = torch.promote_types(out.dtype, torch.float32)
            acc = torch.zeros(batch, out.shape[1], out_full.height, out_full.width, device=device, dtype=dtype)
            weights = weights.to(dtype)
        out = out.to(device=device, dtype=acc.dtype)
        for k, index in enumerate(tiles):
            box = boxes[index].scaled(factor)
            win = _cached_window(box.height, box.width, window, device, acc.dtype)
            rows, cols = box.slices
            acc[:, :, rows, cols].addcmul_(out[k * batch : (k + 1) * batch], win)
            weights[rows, cols] += win
        del out
    assert acc is not None  # boxes is non-empty (checked)
    return acc.div_(weights)


def _padded_call(fn: TileFn, crops: list[torch.Tensor], tiles: list[int], batch_size: int) -> torch.Tensor:
    """fn on exactly batch_size tiles (the last one repeated); the outputs of the real ones."""
    pad = batch_size - len(tiles)
    if pad > 0:
        crops, tiles = crops + [crops[-1]] * pad, tiles + [tiles[-1]] * pad
    out = fn(crops[0] if len(crops) == 1 else torch.cat(crops), tiles)
    if pad <= 0:
        return out
    if out.ndim < 1 or out.shape[0] % len(tiles):
        raise ValueError(f"tile function returned {tuple(out.shape)} rows for {len(tiles)} tiles")
    return out[: out.shape[0] // len(tiles) * (len(tiles) - pad)]


def _check_output(out: torch.Tensor, rows: int, box: Box, want: Box, channels: int | None) -> None:
    shape = tuple(out.shape)
    ok = out.ndim == 4 and shape[0] == rows and shape[2:] == (want.height, want.width)
    if not ok or (channels is not None and shape[1] != channels):
        expected = f"{rows} x {channels or 'C'} x {want.height} x {want.width}"
        raise ValueError(f"tile function returned {shape} for a {box.height}x{box.width} tile; expected {expected}")

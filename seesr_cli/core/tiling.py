"""Tile geometry and blended tiled evaluation.

`Box`, `plan_tiles` and `blend_window` are pure functions of sizes. `tiled_map`
runs any per-tile function (the latent noise predictor, the VAE encoder or
decoder) over overlapping tiles and blends the results with a window,
normalised by the summed weights, so memory is the output buffer, one weight
plane and one batch of tiles. `tiled_map_many` does it for several inputs at once,
their tiles sharing calls (images of a group filling one batch).
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
Tile = tuple[int, int]  # (input, tile index) in `tiled_map_many`
ManyTileFn = Callable[[torch.Tensor, list[Tile]], torch.Tensor]


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
    def one(crops: torch.Tensor, tiles: list[Tile]) -> torch.Tensor:
        return fn(crops, [index for _, index in tiles])

    return tiled_map_many(one, [x], [boxes], scale=scale, windows=window, batch_size=batch_size,
                          out_channels=out_channels, out_device=out_device)[0]


def tiled_map_many(
    fn: ManyTileFn,
    xs: Sequence[torch.Tensor],
    boxes: Sequence[Sequence[Box]],
    *,
    scale: Scale = 1,
    windows: str | Sequence[str] = DEFAULT_WINDOW,
    batch_size: int = 1,
    out_channels: int | None = None,
    out_device: torch.device | str | None = None,
) -> list[torch.Tensor]:
    """`tiled_map` of several inputs at once (`boxes[i]` tiles `xs[i]`), their tiles sharing calls.

    The tiles of all inputs are grouped by shape (first seen, input by input) and cut into calls
    of exactly `batch_size` tiles, so the tiles of small inputs fill a batch together;
    `fn(crops, tiles)` names each tile as (input, index). Each input's output is blended in its
    own tile order, the one `tiled_map` of it alone uses: where a row of fn's output does not
    depend on its batch-mates (one batch shape), each output is bit-identical to the input's alone.
    Every input has the same B; `windows` is one blend window or one per input.
    """
    names = [windows] * len(xs) if isinstance(windows, str) else list(windows)
    for name in names:
        if name not in WINDOWS:
            raise InternalError(f"blend window must be one of {', '.join(WINDOWS)}; got {name!r}")
    if len(names) != len(xs) or len(boxes) != len(xs) or len({x.shape[0] for x in xs}) > 1:
        raise InternalError("tiled_map_many needs one box list and window per input, and one B for all inputs")
    factor = as_fraction(scale)
    blends = [_Blend(x, tuple(b), factor, name, out_device) for x, b, name in zip(xs, boxes, names)]
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for i, blend in enumerate(blends):
        for index in blend.order:
            box = blend.boxes[index]
            by_shape.setdefault((box.height, box.width), []).append((i, index))
    rows = xs[0].shape[0] if xs else 0
    for group in by_shape.values():
        for first in range(0, len(group), batch_size):
            tiles = group[first : first + batch_size]
            out = _padded_call(fn, [blends[i].crop(index) for i, index in tiles], tiles, batch_size)
            box = blends[tiles[0][0]].boxes[tiles[0][1]]
            _check_output(out, rows * len(tiles), box, box.scaled(factor), out_channels)
            for k, (i, index) in enumerate(tiles):
                blends[i].add(index, out[k * rows : (k + 1) * rows])
            del out
    return [blend.result() for blend in blends]


class _Blend:
    """One input's output: its tiles' outputs blended in its own order (shape groups as first seen,
    `tile_batches`'), whatever order they arrive in; a single full tile is the output itself."""

    def __init__(self, x: torch.Tensor, boxes: tuple[Box, ...], factor: Fraction, window: str,
                 out_device: torch.device | str | None):
        height, width = x.shape[-2:]
        _check_boxes(boxes, height, width)
        self.x, self.boxes, self.factor, self.window, self.out_device = x, boxes, factor, window, out_device
        self.full = len(boxes) == 1 and boxes[0] == Box(0, 0, height, width)
        self.size = Box(0, 0, height, width).scaled(factor)
        self.device = torch.device(out_device) if out_device is not None else x.device
        self.order = [index for group in tile_batches(boxes, len(boxes)) for index in group]
        self.pending: dict[int, torch.Tensor] = {}
        self.done = 0
        self.acc: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def crop(self, index: int) -> torch.Tensor:
        if self.full:
            return self.x
        rows, cols = self.boxes[index].slices
        return self.x[:, :, rows, cols]

    def add(self, index: int, out: torch.Tensor) -> None:
        self.pending[index] = out
        while self.done < len(self.order) and self.order[self.done] in self.pending:
            self._blend(self.order[self.done], self.pending.pop(self.order[self.done]))
            self.done += 1

    def _blend(self, index: int, out: torch.Tensor) -> None:
        dtype = torch.promote_types(out.dtype, torch.float32)
        if self.full:
            self.acc = out.to(device=self.out_device or out.device, dtype=dtype)
            return
        if self.acc is None:
            self.acc = torch.zeros(out.shape[0], out.shape[1], self.size.height, self.size.width, device=self.device,
                                   dtype=dtype)
            self.weights = torch.zeros(self.size.height, self.size.width, device=self.device, dtype=dtype)
        out = out.to(device=self.device, dtype=self.acc.dtype)
        box = self.boxes[index].scaled(self.factor)
        win = _cached_window(box.height, box.width, self.window, self.device, self.acc.dtype)
        rows, cols = box.slices
        self.acc[:, :, rows, cols].addcmul_(out, win)
        self.weights[rows, cols] += win

    def result(self) -> torch.Tensor:
        if self.acc is None or self.done != len(self.order):
            raise InternalError("a tiled input was left with tiles not run")
        return self.acc if self.full else self.acc.div_(self.weights)


def _padded_call(fn: ManyTileFn, crops: list[torch.Tensor], tiles: list[Tile], batch_size: int) -> torch.Tensor:
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

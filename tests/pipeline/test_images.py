"""The image at the pipeline's edges: 8-bit inputs keep the official maths, float inputs their precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seesr_cli.core.geometry import plan_geometry
from seesr_cli.errors import UsageError
from seesr_cli.pipeline.images import as_source, control_image, finish, resize_values
from seesr_cli.settings import UpscaleSettings

CPU = torch.device("cpu")


def noisy(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_8bit_control_image_is_the_official_chain():
    """Official: PIL bicubic enlarge (small inputs), x scale, to multiples of 8, each in 8 bits; then k/255."""
    pixels = noisy(21, 13)
    settings = UpscaleSettings(scale=3.5, process_size=64)
    geometry = plan_geometry(21, 13, settings)
    assert geometry.enlarged != geometry.lr and geometry.work != geometry.upscaled  # every resize runs
    want = Image.fromarray(pixels)
    for size in (geometry.enlarged, geometry.upscaled, geometry.work):
        want = want.resize(size, Image.BICUBIC)
    got = control_image(as_source(Image.fromarray(pixels)), geometry, CPU)
    assert torch.equal(got[0].permute(1, 2, 0), torch.from_numpy(np.asarray(want, np.float32) / 255.0))
    assert torch.equal(control_image(as_source(pixels), geometry, CPU), got)  # a uint8 array is the same input


@pytest.mark.parametrize("size, to", [((17, 11), (40, 26)), ((40, 26), (17, 11)), ((21, 13), (77, 45))])
def test_float_resize_is_pil_bicubic_without_rounding(size, to):
    """Noise overshoots a lot: clipping where Pillow's 8-bit passes clip is what keeps this close."""
    pixels = noisy(*size, seed=1)
    eight = np.asarray(Image.fromarray(pixels).resize(to, Image.BICUBIC), np.float32)
    floats = resize_values(pixels.astype(np.float32) / 255.0, to) * 255.0
    assert np.abs(floats - eight).max() <= 1.2  # Pillow also rounds between its two passes
    assert np.abs(floats - eight).mean() <= 0.35
    assert not np.array_equal(floats, np.round(floats))  # ... and ours was not rounded


def test_16bit_gradient_reaches_the_control_image_with_its_levels():
    ramp = np.linspace(0.0, 1.0, 4096, dtype=np.float32)[None, :, None].repeat(8, 0).repeat(3, 2)
    geometry = plan_geometry(4096, 8, UpscaleSettings(scale=1, process_size=8))
    control = control_image(as_source(ramp), geometry, CPU)
    assert len(torch.unique(control[0, 0])) > 4000  # 8 bits would give at most 256
    assert len(torch.unique(control_image(as_source(Image.fromarray((ramp * 255).round().astype(np.uint8))),
                                          geometry, CPU)[0, 0])) <= 256


def test_finish_gives_the_image_and_the_floats():
    values = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    float_source = as_source(np.zeros((4, 6, 3), np.float32))
    image, array = finish(values, float_source, (24, 16))
    assert np.array_equal(np.asarray(image), np.round(array * 255).astype(np.uint8))
    assert np.array_equal(array, values[0].permute(1, 2, 0).numpy())
    image, array = finish(values, as_source(Image.new("RGB", (4, 6))), (30, 20))  # 8-bit input, resized
    assert image.size == (30, 20) and array.shape == (20, 30, 3)
    rounded = Image.fromarray((values[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    assert np.array_equal(np.asarray(image), np.asarray(rounded.resize((30, 20), Image.BICUBIC)))  # official


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4), np.float32), "H x W x 3"),
    (np.zeros((4, 4, 4), np.float32), "H x W x 3"),
    (np.zeros((4, 4, 3), np.int32), "uint8 or float"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
])
def test_bad_arrays_are_refused(bad, message):
    with pytest.raises(UsageError, match=message):
        as_source(bad)

"""Tiled VAE encode/decode on a tiny random AutoencoderKL with the SD topology (8x)."""

from __future__ import annotations

import pytest
import torch

from seesr_cli.core.tiling import plan_tiles
from seesr_cli.errors import InternalError
from seesr_cli.pipeline import vae as tiled_vae


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    model = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16],  # 3 halvings: factor 8 like SD's VAE
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    return model.eval()


def _image(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_factor_is_eight(vae):
    assert tiled_vae.downsampling(vae) == 8


@torch.no_grad()
def test_one_tile_equals_diffusers_exactly(vae):
    x = _image(48, 72, batch=2)
    sf = vae.config.scaling_factor
    dist = vae.encode(x * 2 - 1).latent_dist
    for tile in (72, 1024):
        assert torch.equal(tiled_vae.encode(vae, x, tile=tile, mode="mean"), dist.mean * sf)
        ours = tiled_vae.encode(vae, x, tile=tile, generator=torch.Generator().manual_seed(7))
        assert torch.equal(ours, dist.sample(generator=torch.Generator().manual_seed(7)) * sf)
    z = torch.randn(2, 4, 6, 9)
    want = (vae.decode(z / sf).sample / 2 + 0.5).clamp(0, 1)
    for tile in (9, 224):
        assert torch.equal(tiled_vae.decode(vae, z, tile=tile), want)


@pytest.mark.parametrize("batch,height,width", [(1, 8, 8), (1, 8, 136), (2, 72, 40), (1, 96, 200)])
def test_tiled_shapes_and_finite(vae, batch, height, width):
    x = _image(height, width, batch)
    latents = tiled_vae.encode(vae, x, tile=32, overlap=8, generator=torch.Generator().manual_seed(1))
    assert latents.shape == (batch, 4, height // 8, width // 8) and latents.dtype == torch.float32
    image = tiled_vae.decode(vae, latents, tile=4, overlap=1, batch_size=3)
    assert image.shape == (batch, 3, height, width) and image.dtype == torch.float32
    assert bool(torch.isfinite(latents).all()) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_sampling_is_deterministic(vae):
    x = _image(64, 96)
    draw = lambda seed: tiled_vae.encode(vae, x, tile=32, overlap=16, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    mean = tiled_vae.encode(vae, x, tile=32, overlap=16, mode="mean")
    assert torch.equal(mean, tiled_vae.encode(vae, x, tile=32, overlap=16, mode="mean"))
    # the noise is drawn once over the whole latent: sample - mean = std * one N(0, 1) field
    moments = tiled_vae.encode_moments(vae, x, tile=32, overlap=16)
    std = torch.exp(0.5 * moments[:, 4:]) * vae.config.scaling_factor
    noise = (draw(3) - mean) / std
    assert torch.allclose(noise, torch.randn(noise.shape, generator=torch.Generator().manual_seed(3)), atol=1e-4)


def test_tiled_approaches_untiled_as_tiles_grow(vae):
    # GroupNorm statistics are per tile, so tiled is not exact: the error must shrink
    # with the tile and stay far below the distance between unrelated inputs.
    x, other = _image(64, 256, seed=0), _image(64, 256, seed=1)
    full = tiled_vae.encode(vae, x, mode="mean")
    unrelated = (tiled_vae.encode(vae, other, mode="mean") - full).abs().mean()
    errors = [
        (tiled_vae.encode(vae, x, tile=t, overlap=o, mode="mean") - full).abs().mean() for t, o in [(64, 32), (128, 64)]
    ]
    assert errors[1] < errors[0] and errors[1] < 0.15 * unrelated, (errors, unrelated)

    z = torch.randn(1, 4, 8, 32, generator=torch.Generator().manual_seed(2))
    image = tiled_vae.decode(vae, z)
    unrelated = (tiled_vae.decode(vae, torch.randn(1, 4, 8, 32)) - image).abs().mean()
    errors = [
        (tiled_vae.decode(vae, z, tile=t, overlap=o) - image).abs().mean() for t, o in [(8, 4), (16, 8), (24, 16)]
    ]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.15 * unrelated, (errors, unrelated)


def _column_steps(image: torch.Tensor) -> torch.Tensor:
    return (image[..., 1:] - image[..., :-1]).abs().amax(dim=(0, 1, 2))


@pytest.mark.parametrize("overlap,seamless", [(4, True), (6, True), (0, False)])
def test_constant_latent_decodes_without_a_step_at_tile_borders(vae, overlap, seamless):
    # With overlap 0 (hard stitching) the check must see the seam: it can fail.
    latents = torch.full((1, 4, 8, 48), 0.3)
    image = tiled_vae.decode(vae, latents, tile=16, overlap=overlap)
    steps = _column_steps(image)
    edges = {edge * 8 for box in plan_tiles(8, 48, 16, overlap) for edge in (box.left, box.right)}
    seam = max(float(steps[edge - 1]) for edge in edges if 0 < edge < image.shape[-1])
    typical = float(steps[32:-32].median())
    assert (seam <= 2 * typical) == seamless, (seam, typical)


@pytest.mark.parametrize("overlap,seamless", [(64, True), (0, False)])
def test_constant_image_encodes_without_a_step_at_tile_borders(vae, overlap, seamless):
    image = torch.full((1, 3, 64, 512), 0.6)
    latents = tiled_vae.encode(vae, image, tile=128, overlap=overlap, mode="mean")
    steps = _column_steps(latents)
    edges = {edge for box in plan_tiles(8, 64, 16, overlap // 8) for edge in (box.left, box.right)}
    seam = max(float(steps[edge - 1]) for edge in edges if 0 < edge < latents.shape[-1])
    typical = float(steps[4:-4].median())
    assert (seam <= 2 * typical) == seamless, (seam, typical)


def test_reduced_precision_tiles_blend_in_float32(vae):
    x = _image(64, 64)
    vae.to(torch.bfloat16)
    try:
        latents = tiled_vae.encode(vae, x, tile=32, overlap=8, mode="mean")
        image = tiled_vae.decode(vae, latents, tile=4, overlap=2)
        assert latents.dtype == image.dtype == torch.float32
        assert bool(torch.isfinite(latents).all()) and bool(torch.isfinite(image).all())
    finally:
        vae.to(torch.float32)
    want = tiled_vae.encode(vae, x, tile=32, overlap=8, mode="mean")
    assert (latents - want).abs().max() < 0.05 * want.abs().max() + 1e-3


def test_bad_inputs_are_usage_errors(vae):
    with pytest.raises(InternalError, match="multiples of 8"):
        tiled_vae.encode(vae, _image(20, 32))
    with pytest.raises(InternalError, match="100"):
        tiled_vae.encode(vae, _image(16, 32), tile=100)
    with pytest.raises(InternalError, match="overlap 64"):
        tiled_vae.encode(vae, _image(16, 32), tile=64, overlap=64)
    with pytest.raises(InternalError, match="mode"):
        tiled_vae.encode(vae, _image(16, 32), mode="median")
    with pytest.raises(InternalError):
        tiled_vae.decode(vae, torch.zeros(4, 8, 8))

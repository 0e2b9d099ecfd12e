"""Colour fix (adain, wavelet, none) against the official semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seesr_cli.core import colorfix
from seesr_cli.errors import InternalError


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _official_adain(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # The spec (utils/wavelet_color_fix.py calc_mean_std): unbiased variance + 1e-5.
    def stats(x):
        flat = x.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + 1e-5).sqrt()[..., None, None]

    (om, os), (rm, rs) = stats(out), stats(ref)
    return ((out - om) / os * rs + rm).clamp(0, 1)


def _shifted_sum_blur(x: torch.Tensor, d: int) -> torch.Tensor:
    # The 3x3 binomial taps written out as shifts of an edge-replicated image.
    h, w = x.shape[-2:]
    p = F.pad(x, (d, d, d, d), mode="replicate")
    taps = {-1: 1, 0: 2, 1: 1}
    total = torch.zeros_like(x)
    for dy, wy in taps.items():
        for dx, wx in taps.items():
            total += wy * wx * p[..., d + dy * d : d + dy * d + h, d + dx * d : d + dx * d + w]
    return total / 16


def _official_wavelet(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # Level-by-level decomposition: sum of high bands of out + the last low band of ref.
    def decompose(x):
        high = torch.zeros_like(x)
        for level in range(5):
            low = _shifted_sum_blur(x, 2**level)
            high += x - low
            x = low
        return high, low

    return (decompose(out)[0] + decompose(ref)[1]).clamp(0, 1)


def test_adain_matches_the_reference_statistics():
    out = 0.4 + 0.1 * _rand(2, 3, 40, 56, seed=1)  # low contrast: nothing gets clamped
    ref = 0.2 + 0.6 * _rand(2, 3, 40, 56, seed=2)
    got = colorfix.adain(out, ref, clamp=False)
    assert torch.allclose(got.mean((2, 3)), ref.mean((2, 3)), atol=1e-5)
    got_std, ref_std, out_std = (x.flatten(2).std(2) for x in (got, ref, out))
    # std matches up to the official eps (1e-5 added to both variances)
    assert torch.allclose(got_std, (ref_std**2 + 1e-5).sqrt() * out_std / (out_std**2 + 1e-5).sqrt(), rtol=1e-4)
    assert torch.allclose(got_std, ref_std, rtol=1e-2)
    assert got.shape == out.shape


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (64, 48)])
def test_adain_equals_the_official_formula(size):
    out, ref = _rand(1, 3, *size, seed=3), _rand(1, 3, *size, seed=4)
    got = colorfix.adain(out, ref)
    assert bool(torch.isfinite(got).all()) and got.shape == out.shape
    if size == (1, 1):  # the official unbiased variance is undefined here: the result is ref's colour
        assert torch.allclose(got, ref)
    else:
        assert torch.allclose(got, _official_adain(out, ref), atol=1e-6)


def test_adain_reference_may_have_another_size_and_batch_one():
    out, ref = _rand(2, 3, 32, 32, seed=5), _rand(1, 3, 8, 8, seed=6)
    got = colorfix.adain(out, ref, clamp=False)
    assert torch.allclose(got.mean((2, 3)), ref.mean((2, 3)).expand(2, 3), atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 1), (37, 70), (128, 96)])
def test_wavelet_equals_the_official_decomposition(size):
    out, ref = _rand(1, 3, *size, seed=7), _rand(1, 3, *size, seed=8)
    got = colorfix.wavelet(out, ref)
    assert got.shape == out.shape
    assert torch.allclose(got, _official_wavelet(out, ref), atol=1e-5)


def test_wavelet_of_identical_images_is_identity():
    x = _rand(2, 3, 70, 90, seed=9)
    assert torch.allclose(colorfix.wavelet(x, x), x, atol=1e-6)


def test_wavelet_takes_low_frequencies_from_the_reference():
    ref = _rand(1, 3, 96, 128, seed=10)
    # a colour cast is a pure low frequency: removed exactly
    cast = (ref + torch.tensor([0.1, -0.05, 0.2])[:, None, None]) * 0.7
    got = colorfix.wavelet(cast, ref, clamp=False)
    low = lambda x: F.avg_pool2d(colorfix.low_frequencies(x), 16)  # noqa: E731
    assert (low(got) - low(ref)).abs().max() < 0.02
    assert (low(cast) - low(ref)).abs().max() > 0.1
    # and the high frequencies are the output's
    high = lambda x: x - colorfix.low_frequencies(x)  # noqa: E731
    assert torch.allclose(high(got), high(cast), atol=0.02)


def test_one_pixel_wavelet_is_the_reference():
    out, ref = _rand(1, 3, 1, 1, seed=11), _rand(1, 3, 1, 1, seed=12)
    assert torch.allclose(colorfix.wavelet(out, ref), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kind", ["adain", "wavelet", "none"])
def test_dtype_and_shape_are_preserved(kind, dtype):
    out, ref = _rand(1, 3, 24, 40, seed=13).to(dtype), _rand(1, 3, 24, 40, seed=14).to(dtype)
    got = colorfix.apply(kind, out, ref)
    assert got.dtype == dtype and got.shape == out.shape
    assert 0 <= float(got.min()) and float(got.max()) <= 1


def test_none_is_identity():
    out = _rand(1, 3, 9, 9)
    assert colorfix.apply("none", out, _rand(1, 3, 9, 9, seed=1)) is out


def test_inputs_are_not_modified():
    out, ref = _rand(1, 3, 16, 16, seed=15), _rand(1, 3, 16, 16, seed=16)
    before = out.clone(), ref.clone()
    for kind in colorfix.COLOR_FIXES:
        colorfix.apply(kind, out, ref)
    assert torch.equal(out, before[0]) and torch.equal(ref, before[1])


def test_bad_arguments():
    out = _rand(1, 3, 8, 8)
    with pytest.raises(InternalError, match="sepia"):
        colorfix.apply("sepia", out, out)
    with pytest.raises(InternalError, match="does not match"):
        colorfix.wavelet(out, _rand(1, 3, 8, 9))
    with pytest.raises(InternalError, match="does not match"):
        colorfix.adain(out, _rand(1, 4, 8, 8))
    with pytest.raises(InternalError):
        colorfix.adain(out[0], out[0])

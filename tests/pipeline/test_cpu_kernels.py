"""CPU kernels (`LoadOptions.cpu_kernels`): oneDNN by default on the CPU in fp32, stock on request;
the same pixels within float noise, and every result records which ran."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seesr_cli.models import cpu_fast
from seesr_cli.models.cpu_fast import OneDNNLinear, PackedConv2d, onednn_available
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.settings import LoadOptions, UpscaleSettings

pytestmark = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN")

FAST = dict(steps=2, process_size=64, tile_size=32, tile_overlap=8)
# Float noise through the steps, the VAE and the colour fix, measured on these tiny models over
# five runs (2-5 steps, ddpm and dpmpp, tiled): float results within 0.0009/255, 84 of 1.1 M
# 8-bit values 1 level off (rounding that fell the other way), none more.
MAX_LSB = 1
MAX_ARRAY = 0.01 / 255


def lr_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.BILINEAR)


@pytest.fixture(scope="module")
def pipes(tiny_weight_paths):
    return {kind: SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", dtype="fp32", cpu_kernels=kind)
            for kind in ("onednn", "stock")}


def switched(pipe) -> set[type]:
    return {type(m) for model in (pipe.unet, pipe.controlnet) for m in model.modules()}


def test_onednn_is_the_cpu_fp32_default_and_stock_leaves_pytorch_modules(tiny_weight_paths, pipes):
    assert LoadOptions().cpu_kernels == "onednn"
    assert {OneDNNLinear, PackedConv2d} <= switched(pipes["onednn"])
    assert not {OneDNNLinear, PackedConv2d} & switched(pipes["stock"])
    # VAE, text encoder and DAPE keep PyTorch's modules.
    fast = pipes["onednn"]
    assert not any(isinstance(m, (OneDNNLinear, PackedConv2d))
                   for model in (fast.vae, fast.text_encoder, fast.dape) for m in model.modules())


@pytest.mark.parametrize("settings", [{}, {"sampler": "dpmpp", "seed": 3}])
def test_same_pixels_within_float_noise_and_recorded(pipes, settings):
    image = lr_image(40, 24, seed=5)
    out = {kind: pipe.upscale(image, UpscaleSettings(**{**FAST, **settings})) for kind, pipe in pipes.items()}
    assert out["onednn"].run["kernels"] == "onednn" and out["stock"].run["kernels"] == "stock"
    # The fast path really ran (the pipeline does not turn grad mode off; its models are frozen).
    assert "_onednn_weight" in pipes["onednn"].unet.conv_in.__dict__
    assert "_onednn_weight" not in pipes["stock"].unet.conv_in.__dict__
    fast, stock = (np.asarray(out[k].image, dtype=np.int16) for k in ("onednn", "stock"))
    assert fast.shape == stock.shape == (96, 160, 3)
    assert np.abs(fast - stock).max() <= MAX_LSB
    assert np.abs(out["onednn"].array - out["stock"].array).max() <= MAX_ARRAY
    # Everything but the kernels is the same run.
    assert {k: v for k, v in out["onednn"].run.items() if k != "kernels"} == \
        {k: v for k, v in out["stock"].run.items() if k != "kernels"}


def test_the_bound_catches_a_wrong_kernel(pipes, monkeypatch):
    """The comparison above fails for a real error: the fast GEMMs off by 1e-4 relative."""
    image = lr_image(40, 24, seed=5)
    want = pipes["stock"].upscale(image, UpscaleSettings(**FAST)).array
    linear = cpu_fast._linear
    monkeypatch.setattr(cpu_fast, "_linear", lambda *args, **kw: linear(*args, **kw) * (1 + 1e-4))
    got = pipes["onednn"].upscale(image, UpscaleSettings(**FAST)).array
    assert np.abs(got - want).max() > MAX_ARRAY


def test_other_dtypes_run_and_record_stock(tiny_weight_paths):
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", dtype="bf16")
    assert not {OneDNNLinear, PackedConv2d} & switched(pipe)
    assert pipe.upscale(lr_image(16, 16), UpscaleSettings(**FAST)).run["kernels"] == "stock"

"""The oneDNN CPU path (seesr_cli.models.cpu_fast) computes the same step as the stock modules."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from seesr_cli.core.denoise import controlled_noise
from seesr_cli.models import SeeSRControlNet, SeeSRUNet
from seesr_cli.models.cpu_fast import (
    OneDNNGEGLU,
    OneDNNLinear,
    PackedConv2d,
    onednn_available,
    use_onednn,
)

pytestmark = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN")

# Float noise: two GEMM/convolution kernels of the same float32 maths differ by a few ulps per
# op, ~1e-6 of max |output| through the tiny UNet; the fixtures' own tolerance is 1e-5.
REL = 1e-5


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    assert got.shape == want.shape
    return ((got - want).abs().max() / want.abs().max().clamp_min(1.0)).item()


@pytest.fixture(scope="module")
def models(reference_dir):
    root = reference_dir / "seesr_tiny"
    unet = SeeSRUNet.from_pretrained(root / "unet").eval()
    controlnet = SeeSRControlNet.from_pretrained(root / "controlnet").eval()
    fast_unet, fast_controlnet = copy.deepcopy(unet), copy.deepcopy(controlnet)
    switched = use_onednn(fast_unet, fast_controlnet)
    return {"eager": (unet, controlnet), "fast": (fast_unet, fast_controlnet), "switched": switched,
            "io": load_file(root / "io.safetensors")}


def step(pair, io, sample=None, control=None, t=None):
    sample = io["sample"] if sample is None else sample
    control = io["controlnet_cond"] if control is None else control
    t = io["t999.timestep"] if t is None else t
    batch = sample.shape[0]
    return controlled_noise(*pair, sample, t, io["encoder_hidden_states"][:batch],
                            io["image_encoder_hidden_states"][:batch], control, 1.0)


def test_every_linear_conv_and_geglu_is_switched(models):
    unet, controlnet = models["fast"]
    modules = [*unet.modules(), *controlnet.modules()]
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in modules)
    assert sum(isinstance(m, OneDNNLinear) for m in modules) > 100
    assert sum(isinstance(m, PackedConv2d) for m in modules) > 50
    assert any(isinstance(m, OneDNNGEGLU) for m in modules)
    assert use_onednn(unet, controlnet) == 0  # idempotent


def test_state_dict_is_untouched(models):
    for eager, fast in zip(models["eager"], models["fast"], strict=True):
        want, got = eager.state_dict(), fast.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[key], want[key]) for key in want)


@pytest.mark.parametrize("case", ["t999", "t500"])
def test_fast_step_equals_eager_and_the_official_output(models, case):
    io = models["io"]
    with torch.inference_mode():
        want = step(models["eager"], io, t=io[f"{case}.timestep"])
        got = step(models["fast"], io, t=io[f"{case}.timestep"])
    assert relative_difference(got, want) <= REL
    assert relative_difference(got, io[f"{case}.unet_out"]) <= REL


def test_another_shape_and_batch(models):
    """A second tile shape (odd sizes, one row) after the first: packed weights do not tie the shape."""
    io = models["io"]
    sample, control = io["sample"][:1, :, :13, :21], io["controlnet_cond"][:1, :, :104, :168]
    with torch.inference_mode():
        want = step(models["eager"], io, sample, control)
        got = step(models["fast"], io, sample, control)
    assert got.shape == sample.shape
    assert relative_difference(got, want) <= REL


def test_the_comparison_catches_a_wrong_weight_and_packing_follows_weight_changes(models):
    """A changed weight must change the fast output: the check compares real outputs, and the
    packed convolution weight is rebuilt from the new values rather than served stale."""
    io = models["io"]
    fast_unet = models["fast"][0]
    weight = fast_unet.conv_out.weight
    with torch.inference_mode():
        want = step(models["eager"], io)
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(1.001)  # bumps the version counter, as load_state_dict's copy_ does
        with torch.inference_mode():
            got = step(models["fast"], io)
        assert relative_difference(got, want) > 10 * REL
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    with torch.inference_mode():
        assert relative_difference(step(models["fast"], io), want) <= REL


def test_off_the_fast_path_the_stock_forward_runs(reference_dir, models):
    """With autograd on the switched modules run the stock forward, bit for bit. (Same model
    objects before and after switching: a copy's weights sit at other addresses, and MKL's
    results may then differ in the last bit.)"""
    root = reference_dir / "seesr_tiny"
    pair = (SeeSRUNet.from_pretrained(root / "unet").eval(), SeeSRControlNet.from_pretrained(root / "controlnet").eval())
    io = models["io"]
    sample, control = io["sample"][:1, :, :8, :8], io["controlnet_cond"][:1, :, :64, :64]
    want = step(pair, io, sample, control)
    assert use_onednn(*pair) > 0
    got = step(pair, io, sample, control)
    assert want.requires_grad and torch.equal(got, want)


def test_frozen_models_take_the_fast_path_with_grad_mode_on(reference_dir, models):
    """The pipeline freezes its models (`requires_grad_(False)`) but leaves grad mode on: nothing
    for autograd to record, so the oneDNN path runs (it packs the weights) and matches eager."""
    root = reference_dir / "seesr_tiny"
    pair = (SeeSRUNet.from_pretrained(root / "unet").eval().requires_grad_(False),
            SeeSRControlNet.from_pretrained(root / "controlnet").eval().requires_grad_(False))
    assert use_onednn(*pair) > 0
    io = models["io"]
    assert torch.is_grad_enabled()
    got = step(pair, io)
    assert not got.requires_grad and "_onednn_weight" in pair[0].conv_in.__dict__
    with torch.inference_mode():
        want = step(models["eager"], io)
    assert relative_difference(got, want) <= REL

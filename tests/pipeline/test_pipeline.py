"""The upscale pipeline end to end on tiny random models, loaded as a user's run loads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from seesr_cli.core.prompts import tokenize
from seesr_cli.errors import Cancelled
from seesr_cli.pipeline import ProgressEvent, SeeSRPipeline
from seesr_cli.pipeline import vae as vae_module
from seesr_cli.settings import UpscaleSettings

# Small work sizes keep the tiny models quick: a process size of 64 instead of 512
# (the official minimum-size rule still runs, at a smaller bound) and 32-latent-px tiles.
FAST = dict(steps=2, process_size=64, tile_size=32, tile_overlap=8)


def lr_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, height // 4 + 1), max(1, width // 4 + 1), 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.BILINEAR)


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


@pytest.fixture(scope="module")
def turbo_pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", turbo=True)


def run(pipe, image, **settings):
    return pipe.upscale(image, UpscaleSettings(**{**FAST, **settings}))


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def check_result(result, size: tuple[int, int]) -> None:
    """What every result must be: the 8-bit image and the float array of one picture, not flat."""
    assert result.image.size == size and result.image.mode == "RGB"
    array = result.array
    assert array.shape == (size[1], size[0], 3) and array.dtype == np.float32
    assert np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1
    pixels = np.asarray(result.image, dtype=np.float32)
    # The image is the array rounded (8-bit inputs: rounded before the final 8-bit resize).
    assert np.abs(pixels - array * 255).max() <= 3
    assert pixels.std() > 1  # not a flat image


@pytest.mark.parametrize(
    "size, scale",
    [((1, 1), 4), ((17, 9), 4), ((17, 9), 3.5), ((300, 37), 2), ((61, 45), 1), ((300, 37), 4)],
)
def test_sizes_and_scales(pipe, size, scale):
    image = lr_image(*size)
    result = run(pipe, image, scale=scale, seed=7)
    check_result(result, (round(size[0] * scale), round(size[1] * scale)))
    again = run(pipe, image, scale=scale, seed=7)
    assert same(result.image, again.image)


def test_large_image(pipe):
    """1280 x 960 (1.2 MP at scale 1): 12 blended tiles, tiled VAE; one step keeps it ~30 s on a core."""
    result = run(pipe, lr_image(1280, 960, seed=3), scale=1, steps=1, tile_size=48, tile_overlap=8)
    check_result(result, (1280, 960))
    assert len(result.prompts) == len(result.tiles) == 12  # latent 160 x 120: 4 x 3 tiles of 48, overlap 8
    covered = np.zeros((960, 1280), bool)
    for tile in result.tiles:
        left, top, width, height = tile["box"]
        covered[top : top + height, left : left + width] = True
    assert covered.all()  # the recorded boxes are output pixels and cover the output


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "unipc", "dpmpp"])
@pytest.mark.parametrize("color_fix", ["adain", "wavelet", "none"])
def test_samplers_and_colour_fixes(pipe, sampler, color_fix):
    image = lr_image(40, 24, seed=1)
    settings = dict(sampler=sampler, color_fix=color_fix, steps=3, seed=3)
    first = run(pipe, image, **settings)
    check_result(first, (160, 96))
    if color_fix == "adain":  # per-channel mean and std of the upscaled LR (before clamping)
        reference = np.asarray(image.resize((160, 96), Image.BICUBIC), dtype=np.float32)
        assert np.abs(first.array.mean((0, 1)) * 255 - reference.mean((0, 1))).max() < 8
    assert same(first.image, run(pipe, image, **settings).image)


def test_turbo(turbo_pipe):
    image = lr_image(33, 20, seed=2)
    settings = UpscaleSettings(seed=5, process_size=64)
    result = turbo_pipe.upscale(image, settings)
    assert result.image.size == (132, 80)
    assert same(result.image, turbo_pipe.upscale(image, settings).image)


def test_noise_start_and_seed_matter(pipe):
    image = lr_image(32, 32, seed=4)
    lre = run(pipe, image, seed=1).image
    assert not same(lre, run(pipe, image, seed=2).image)
    assert not same(lre, run(pipe, image, seed=1, start="noise").image)


def test_one_tile_is_independent_of_tile_setting(pipe):
    image = lr_image(30, 20, seed=5)  # enlarged to 48 x 32, x4: latent 24 x 16, one tile of 24 or more
    outputs = [run(pipe, image, process_size=128, tile_size=tile, seed=9).image for tile in (24, 32, 96)]
    assert all(same(outputs[0], other) for other in outputs[1:])


def test_per_tile_and_global_prompts(pipe):
    image = lr_image(64, 40, seed=6)
    tiled = run(pipe, image, tile_size=16, tile_overlap=4)
    assert len(tiled.prompts) > 1
    assert all(p.endswith(",clean, high-resolution, 8k") for p in tiled.prompts)
    single = run(pipe, image, tile_size=16, tile_overlap=4, tile_prompts="global")
    assert len(single.prompts) == 1


def test_progress_events_and_silence(pipe, capsys):
    events: list[ProgressEvent] = []
    settings = UpscaleSettings(**{**FAST, "tile_size": 16, "tile_overlap": 4})
    pipe.upscale(lr_image(64, 40), settings, on_progress=events.append)
    stages = [e.stage for e in events]
    for stage in ("prompts", "encode", "denoise", "decode", "colorfix"):
        assert stage in stages
    denoise = [e for e in events if e.stage == "denoise"]
    assert denoise[-1].done == denoise[-1].total == 2
    assert max(e.tile or 0 for e in denoise) == denoise[-1].tiles > 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_cancel_between_steps(pipe):
    calls = {"n": 0}

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        pipe.upscale(lr_image(20, 20), UpscaleSettings(**{**FAST, "steps": 3}), should_cancel=should_cancel)


def test_non_finite_reduced_precision_is_redone_in_fp32(tiny_weight_paths, monkeypatch):
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", dtype="bf16")
    real_decode = vae_module.decode_many

    def decode_many(vae, latents, **kw):
        out = real_decode(vae, latents, **kw)
        return [x * float("nan") for x in out] if vae.dtype != torch.float32 else out

    monkeypatch.setattr(vae_module, "decode_many", decode_many)
    result = pipe.upscale(lr_image(24, 24), UpscaleSettings(**FAST))
    assert result.notes == ["fallback: bf16 gave non-finite values; redone in fp32"]
    assert result.run["dtype"] == "fp32" and result.run["notes"] == result.notes  # what actually ran
    check_result(result, (96, 96))
    assert pipe.unet.dtype == torch.bfloat16 and pipe.dtype == torch.bfloat16


def test_the_loaded_tokenizer_gives_the_official_ids(pipe, reference_dir):
    """loading.py wires the official tokenizer: transformers 5's CLIPTokenizer gets 11 of these 23 right."""
    cases = json.loads((reference_dir / "step_tiny" / "tokenizer_cases.json").read_text(encoding="utf-8"))["cases"]
    ids = tokenize(pipe.tokenizer, [case["text"] for case in cases])
    assert ids.tolist() == [case["input_ids"] for case in cases]


def test_tile_window_setting_is_used_and_recorded(pipe):
    image = lr_image(64, 40, seed=6)
    linear = run(pipe, image, tile_size=16, tile_overlap=4, seed=1)
    gaussian = run(pipe, image, tile_size=16, tile_overlap=4, seed=1, tile_window="gaussian")
    assert not same(linear.image, gaussian.image)
    assert (linear.settings.tile_window, gaussian.settings.tile_window) == ("linear", "gaussian")


def test_float_input_reaches_the_model_at_full_precision(pipe):
    """A smooth 16-bit gradient: the result array keeps far more than 256 levels; the same image as
    8 bits gives the 8-bit path's pixels within a few levels."""
    x = np.linspace(0.2, 0.8, 48, dtype=np.float32)
    y = np.linspace(0.0, 0.3, 32, dtype=np.float32)
    gradient = np.stack([x[None, :] + 0 * y[:, None], y[:, None] + 0 * x[None, :], 0.5 * x[None, :] + y[:, None]], -1)
    result = pipe.upscale(gradient, UpscaleSettings(**{**FAST, "color_fix": "none"}))
    check_result(result, (192, 128))
    levels = [len(np.unique(np.round(result.array[..., c] * 65535))) for c in range(3)]
    assert min(levels) > 4 * 256, levels
    as8 = Image.fromarray(np.round(gradient * 255).astype(np.uint8))
    eight = pipe.upscale(as8, UpscaleSettings(**{**FAST, "color_fix": "none"}))
    assert np.abs(np.asarray(eight.image, np.float32) - result.array * 255).mean() < 2

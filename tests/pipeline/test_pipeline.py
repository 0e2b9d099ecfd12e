"""The upscale pipeline end to end on tiny random models, loaded as a user's run loads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seesr_cli.pipeline import seesr as pipeline_module
from seesr_cli.errors import Cancelled
from seesr_cli.pipeline import ProgressEvent, SeeSRPipeline
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


@pytest.mark.parametrize(
    "size, scale",
    [((1, 1), 4), ((17, 9), 4), ((17, 9), 3.5), ((300, 37), 2), ((61, 45), 1), ((300, 37), 4)],
)
def test_sizes_and_scales(pipe, size, scale):
    image = lr_image(*size)
    result = run(pipe, image, scale=scale, seed=7)
    assert result.image.size == (round(size[0] * scale), round(size[1] * scale))
    assert result.image.mode == "RGB"
    assert np.isfinite(np.asarray(result.image, dtype=np.float32)).all()
    again = run(pipe, image, scale=scale, seed=7)
    assert same(result.image, again.image)


def test_large_image(pipe):
    """2000 x 1500 (3 MP at scale 1): 20 blended tiles, tiled VAE; one step keeps it ~1 min on 2 cores."""
    result = run(pipe, lr_image(2000, 1500, seed=3), scale=1, steps=1, tile_size=64, tile_overlap=8)
    assert result.image.size == (2000, 1500)
    assert len(result.prompts) == 20
    assert np.isfinite(np.asarray(result.image, dtype=np.float32)).all()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "unipc", "dpmpp"])
@pytest.mark.parametrize("color_fix", ["adain", "wavelet", "none"])
def test_samplers_and_colour_fixes(pipe, sampler, color_fix):
    image = lr_image(40, 24, seed=1)
    settings = dict(sampler=sampler, color_fix=color_fix, steps=3, seed=3)
    first = run(pipe, image, **settings)
    assert first.image.size == (160, 96)
    assert np.isfinite(np.asarray(first.image, dtype=np.float32)).all()
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


def test_out_of_memory_retries_with_smaller_tiles(pipe, monkeypatch):
    image = lr_image(64, 40, seed=8)
    real_call = pipeline_module.GuidedDenoiser.__call__
    failures = {"left": 1}

    def flaky(self, latents, t, boxes, tiles):
        if failures["left"] and latents.shape[-1] > 16:
            failures["left"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_call(self, latents, t, boxes, tiles)

    monkeypatch.setattr(pipeline_module.GuidedDenoiser, "__call__", flaky)
    result = run(pipe, image, tile_size=32, tile_batch=2, seed=4)
    assert result.image.size == (256, 160)
    assert any("out of memory" in note for note in result.notes)
    assert failures["left"] == 0


def test_non_finite_reduced_precision_is_redone_in_fp32(tiny_weight_paths, monkeypatch):
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", dtype="bf16")
    real_decode = pipeline_module.vae_tiles.decode

    def decode(vae, latents, **kw):
        out = real_decode(vae, latents, **kw)
        return out * float("nan") if vae.dtype != torch.float32 else out

    monkeypatch.setattr(pipeline_module.vae_tiles, "decode", decode)
    result = pipe.upscale(lr_image(24, 24), UpscaleSettings(**FAST))
    assert any("redone in fp32" in note for note in result.notes)
    assert np.isfinite(np.asarray(result.image, dtype=np.float32)).all()
    assert pipe.unet.dtype == torch.bfloat16 and pipe.dtype == torch.bfloat16


def test_compiled_forward_is_the_same_network(tiny_weight_paths):
    """`compile` routes every step through one compiled ControlNet+UNet function (here the
    "eager" backend: the wiring, not Inductor, is under test) and changes no pixel."""
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")
    image = lr_image(24, 16, seed=9)
    plain = run(pipe, image, seed=2).image
    pipe.compile(mode=None, backend="eager")
    assert same(plain, run(pipe, image, seed=2).image)

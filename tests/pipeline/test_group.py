"""Cross-image batching (`SeeSRPipeline.upscale_many`, pipeline/group.py) on tiny models: the tiles
of a group's images share forwards, and each image's bytes and records are what it gets alone."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from seesr_cli.errors import NonFiniteOutput
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.pipeline import vae as vae_module
from seesr_cli.pipeline.plan import group_key
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

# Latent tiles of 16 (4 overlap): a 24x16 input is one tile (its own shape), 40x24 and 64x40 several.
FAST = {"steps": 2, "process_size": 64, "tile_size": 16, "tile_overlap": 4, "vae_encoder_tile": 128,
        "vae_decoder_tile": 16}
SIZES = [(24, 16), (64, 40), (40, 24), (16, 16), (64, 40)]


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


@pytest.fixture(autouse=True)
def batch_of_four(monkeypatch):
    """A GPU-like fixed batch on the CPU, so a group's tiles really share forwards."""
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 4)


def noisy(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def images() -> list[Image.Image]:
    return [noisy(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]


def settings(i: int, **changes) -> UpscaleSettings:
    return UpscaleSettings(**{**FAST, "seed": 100 + i, **changes})


def assert_same(alone, grouped) -> None:
    """Bytes, float array and every recorded field (timings are not the image's: `run` has none)."""
    assert np.asarray(alone.image).tobytes() == np.asarray(grouped.image).tobytes()
    assert np.array_equal(alone.array, grouped.array)
    assert alone.settings == grouped.settings and alone.seed == grouped.seed
    assert alone.prompts == grouped.prompts and alone.tiles == grouped.tiles
    assert alone.notes == grouped.notes and alone.run == grouped.run
    assert "timings" not in alone.run


def count_denoise(pipe, monkeypatch) -> Counter:
    calls: Counter = Counter()
    real = pipe._forward

    def forward(unet, controlnet, sample, *rest):
        calls[tuple(sample.shape)] += 1
        return real(unet, controlnet, sample, *rest)

    monkeypatch.setattr(pipe, "_forward", forward)
    return calls


def test_an_image_among_others_is_what_it_is_alone(pipe, monkeypatch):
    """Five images of four sizes, one group: each result equals its own `upscale`, and the group runs
    fewer ControlNet+UNet forwards than the images alone (small images' tiles fill a batch together)."""
    alone_calls = count_denoise(pipe, monkeypatch)
    alone = [pipe.upscale(image, settings(i)) for i, image in enumerate(images())]
    monkeypatch.undo()
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 4)
    group_calls = count_denoise(pipe, monkeypatch)
    grouped = pipe.upscale_many(images(), [settings(i) for i in range(len(SIZES))])
    for one, many in zip(alone, grouped):
        assert_same(one, many)
    assert all(shape[0] == 8 for shape in group_calls)  # 4 tiles x both guidance branches, padded
    assert sum(group_calls.values()) < sum(alone_calls.values())


def test_images_that_cannot_share_forwards_run_in_separate_groups(pipe):
    """Another step count (a different schedule) or tile size: its own group, every image still as alone."""
    items = [settings(0), settings(1, steps=3), settings(2), settings(3, tile_size=24, tile_overlap=8)]
    assert len({group_key(s.resolved(False, "cpu")) for s in items}) == 3
    pictures = images()[:4]
    grouped = pipe.upscale_many(pictures, items)
    for image, s, many in zip(pictures, items, grouped):
        assert_same(pipe.upscale(image, s), many)


def test_a_bad_image_fails_alone_and_a_failed_group_is_redone_image_by_image(pipe, monkeypatch):
    pictures = images()[:3]
    bad = np.zeros((8, 8), dtype=np.float32)  # not H x W x 3: that image's UsageError
    out = pipe.upscale_many([pictures[0], bad, pictures[1]], [settings(0), settings(1), settings(1)])
    assert isinstance(out[1], Exception) and not isinstance(out[0], Exception)
    assert_same(pipe.upscale(pictures[1], settings(1)), out[2])

    real = pipe._run
    runs = []

    def run(items, *args):
        runs.append(len(items))
        if len(items) > 1 or items[0][1].seed == 101:  # the group fails, then image 1 alone
            raise RuntimeError("broken (injected)")
        return real(items, *args)

    monkeypatch.setattr(pipe, "_run", run)
    out = pipe.upscale_many(pictures, [settings(i) for i in range(3)])
    assert runs == [3, 1, 1, 1]
    assert isinstance(out[1], RuntimeError)
    monkeypatch.setattr(pipe, "_run", real)
    assert_same(pipe.upscale(pictures[0], settings(0)), out[0])
    assert_same(pipe.upscale(pictures[2], settings(2)), out[2])


def test_non_finite_values_redo_only_their_image_in_fp32(tiny_weight_paths, monkeypatch):
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", dtype="bf16")
    real = vae_module.decode_many

    def decode_many(vae, latents, **kw):  # the second image of a group turns non-finite in bf16
        out = real(vae, latents, **kw)
        if vae.dtype != torch.float32 and len(out) > 1:
            out[1] = out[1] * float("nan")
        return out

    monkeypatch.setattr(vae_module, "decode_many", decode_many)
    pictures = images()[:3]
    out = pipe.upscale_many(pictures, [settings(i) for i in range(3)])
    assert [r.notes for r in out] == [[], ["fallback: bf16 gave non-finite values; redone in fp32"], []]
    assert [r.run["dtype"] for r in out] == ["bf16", "fp32", "bf16"]
    assert_same(pipe.upscale(pictures[0], settings(0)), out[0])  # alone: a group of one, never NaN here

    monkeypatch.setattr(vae_module, "decode_many", lambda vae, latents, **kw: [x * float("nan") for x in
                                                                                real(vae, latents, **kw)])
    out = pipe.upscale_many(pictures[:2], [settings(0), settings(1)])
    assert all(isinstance(r, NonFiniteOutput) for r in out)

"""The stages of one image on tiny models: each forward at one batch shape, out of memory handled
in the stage where it happens, cancellation at the next safe point, no input from free memory."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from seesr_cli.core.denoise import GuidedDenoiser, TileConditioning
from seesr_cli.core.tiling import Box
from seesr_cli.errors import Cancelled, DeviceOutOfMemory
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

STAGES = ("dape", "text", "vae_encode", "denoise", "vae_decode")
NAMES = {"dape": "DAPE", "text": "the text encoder", "vae_encode": "the VAE encoder",
         "denoise": "the denoise stage", "vae_decode": "the VAE decoder"}
# 64 x 40 -> x4 -> latent 32 x 20: six latent tiles, six VAE encoder tiles (128 px), six decoder tiles.
FAST = {"steps": 2, "process_size": 64, "tile_size": 16, "tile_overlap": 4, "vae_encoder_tile": 128,
        "vae_decoder_tile": 16, "seed": 3}


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


def noisy(width: int = 64, height: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def forwards(pipe) -> dict[str, tuple[object, str]]:
    """Each stage's network call, as (owner, attribute)."""
    return {"dape": (pipe.dape, "analyse"), "text": (pipe.text_encoder, "forward"),
            "vae_encode": (pipe.vae.encoder, "forward"), "denoise": (pipe, "_forward"),
            "vae_decode": (pipe.vae.decoder, "forward")}


def watch(pipe, monkeypatch, *, fail: str | None = None, fail_at: int = 1, after_first=None,
          shapes: dict | None = None) -> Counter:
    """Count each stage's forwards; `fail`: that stage's forward number `fail_at` raises out of memory;
    `after_first(stage)` runs after each stage's first forward; `shapes` collects input shapes."""
    calls: Counter = Counter()
    for stage, (owner, name) in forwards(pipe).items():
        real = getattr(owner, name)

        def wrapper(*args, _stage=stage, _real=real, **kwargs):
            calls[_stage] += 1
            if _stage == fail and calls[_stage] == fail_at:
                raise torch.OutOfMemoryError(f"out of memory in {_stage} (injected)")
            if shapes is not None:
                tensor = args[2] if _stage == "denoise" else args[0] if args else next(iter(kwargs.values()))
                shapes.setdefault(_stage, set()).add(tuple(tensor.shape))
            out = _real(*args, **kwargs)
            if after_first is not None and calls[_stage] == 1:
                after_first(_stage)
            return out

        monkeypatch.setattr(owner, name, wrapper)
    return calls


def bytes_of(result) -> bytes:
    return np.asarray(result.image).tobytes()


# ----------------------------------------------------------------------------- one batch shape


def test_every_forward_runs_at_the_fixed_batch_shape(pipe, monkeypatch):
    """Six tiles at batch 4: the second forward of each kind is padded to 4, never run at 2."""
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 4)
    shapes: dict = {}
    watch(pipe, monkeypatch, shapes=shapes)
    result = pipe.upscale(noisy(), UpscaleSettings(**FAST))
    assert result.settings.tile_batch == 4 and result.run["tile_batch"] == 4
    assert shapes["dape"] == {(4, 3, 384, 384)}
    assert len(shapes["text"]) == 1 and next(iter(shapes["text"]))[0] == 4
    assert {s[0] for s in shapes["denoise"]} == {8}  # 4 tiles, both guidance branches
    assert {s[0] for s in shapes["vae_encode"]} == {s[0] for s in shapes["vae_decode"]} == {1}


@pytest.mark.parametrize("kernels", ["onednn", "stock"])
def test_a_tile_does_not_depend_on_its_batch_mates(tiny_weight_paths, pipe, kernels):
    """At one batch shape a row's output is bit-identical whatever the other rows hold and wherever
    it sits, so padding a batch (or sharing it with other tiles) changes no tile. Both CPU kernels
    (`LoadOptions.cpu_kernels`)."""
    if kernels == "stock":
        pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", cpu_kernels="stock")
    g = torch.Generator().manual_seed(0)
    cond = TileConditioning(torch.randn(4, 77, 32, generator=g), torch.randn(4, 145, 512, generator=g),
                            torch.randn(1, 77, 32, generator=g), torch.rand(1, 3, 256, 256, generator=g))
    denoiser = GuidedDenoiser(pipe.unet, pipe.controlnet, cond, guidance=5.5, conditioning_scale=1.0)
    latents = torch.randn(4, 4, 16, 16, generator=g)
    boxes = [Box(0, 0, 16, 16), Box(0, 16, 16, 16), Box(16, 0, 16, 16), Box(16, 16, 16, 16)]

    def row(tiles: list[int], at: int) -> torch.Tensor:
        with torch.no_grad():
            return denoiser(latents[tiles], torch.tensor(981), [boxes[i] for i in tiles], tiles)[at]

    first = row([0, 1], 0)
    assert torch.equal(first, row([0, 3], 0)) and torch.equal(first, row([2, 0], 1))
    assert torch.equal(first, row([0, 0], 0))  # padded with a copy of itself
    if kernels == "stock":  # another batch shape: other rounding (so it is fixed). oneDNN's GEMMs
        # happen to round alike at these tiny shapes; nothing promises it at others.
        assert not torch.equal(first, row([0], 0))


def test_free_memory_has_no_say(pipe, monkeypatch):
    """What used to size tiles and batches (free memory, here 1 GiB vs 64 GiB) changes nothing."""
    real = os.sysconf
    results = []
    for gib in (1, 64):
        def sysconf(name, _gib=gib):
            if name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
                return _gib * (1 << 30) // real("SC_PAGE_SIZE")
            return real(name)

        monkeypatch.setattr(os, "sysconf", sysconf)
        results.append(pipe.upscale(noisy(96, 64, seed=4), UpscaleSettings(steps=2, process_size=64, seed=5)))
    small, large = results
    assert bytes_of(small) == bytes_of(large)
    assert small.settings == large.settings and small.tiles == large.tiles
    assert {**small.run, "timings": None} == {**large.run, "timings": None}
    assert (small.run["tile"], small.run["overlap"], small.run["tile_batch"]) == (96, 16, 1)


# ----------------------------------------------------------------------------- out of memory


@pytest.fixture(scope="module")
def baseline(pipe):
    """Forwards per stage of one clean run at batch 2 (so DAPE and text batches can halve)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(DEVICE_BATCH, "cpu", 2)
        calls = watch(pipe, patch)
        result = pipe.upscale(noisy(), UpscaleSettings(**OOM))
    return calls, result


# One VAE tile each (256 image px, 32 latent px) that a fallback can halve.
OOM = {**FAST, "vae_encoder_tile": 256, "vae_decoder_tile": 32}
EFFECTIVE = {"dape": {}, "text": {}, "vae_encode": {"vae_encoder_tile": 128}, "denoise": {"tile_batch": 1},
             "vae_decode": {"vae_decoder_tile": 16}}


@pytest.mark.parametrize("stage", STAGES)
def test_out_of_memory_is_handled_in_its_own_stage(pipe, monkeypatch, baseline, stage):
    clean_calls, clean = baseline
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 2)
    # Mid-stage: e.g. the first forward of the second denoising step, after the first step's
    # scheduler drew from the generator (the retry must restore its state).
    calls = watch(pipe, monkeypatch, fail=stage, fail_at=clean_calls[stage] // 2 + 1)
    result = pipe.upscale(noisy(), UpscaleSettings(**OOM))
    earlier = STAGES[: STAGES.index(stage)]
    assert {s: calls[s] for s in earlier} == {s: clean_calls[s] for s in earlier}  # finished stages ran once
    assert calls[stage] > clean_calls[stage]  # the failing stage ran again
    assert len(result.notes) == 1 and result.notes[0].startswith(f"fallback: out of memory in {NAMES[stage]} at ")
    assert result.run["notes"] == result.notes
    want = clean.settings.with_(**EFFECTIVE[stage])
    assert result.settings == want  # what ran is recorded, so --like reproduces the fallback
    assert {k: result.run[k] for k in ("tile_batch", "vae_encoder_tile", "vae_decoder_tile")} == {
        k: getattr(want, k) for k in ("tile_batch", "vae_encoder_tile", "vae_decoder_tile")}
    # The fallback's output is that of a clean run at what it fell back to (generator state restored).
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 1 if stage in ("dape", "text") else 2)
    again = pipe.upscale(noisy(), want.with_(tile_batch=2) if stage in ("dape", "text") else want)
    if stage in ("dape", "text"):
        assert result.prompts == again.prompts
    assert bytes_of(result) == bytes_of(again)


def test_out_of_memory_splits_denoise_tiles_at_batch_one(pipe, monkeypatch):
    calls = watch(pipe, monkeypatch, fail="denoise")
    result = pipe.upscale(noisy(), UpscaleSettings(**{**FAST, "tile_size": 32, "tile_overlap": 8}))
    assert result.notes == [("fallback: out of memory in the denoise stage at batch 1; "
                             "redone at batch 1, split into latent tiles of 16")]
    assert calls["dape"] == 1 and len(result.tiles) == 1  # one tile's prompt, kept for its parts


def test_out_of_memory_at_the_smallest_size_is_one_clear_error(pipe, monkeypatch):
    def always(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(pipe.vae.decoder, "forward", always)
    with pytest.raises(DeviceOutOfMemory, match="out of memory in the VAE decoder even at batch 1, decoder tiles"):
        pipe.upscale(noisy(), UpscaleSettings(**FAST))


# ----------------------------------------------------------------------------- stopping


@pytest.mark.parametrize("stage", STAGES)
def test_cancel_stops_inside_each_stage(pipe, monkeypatch, stage):
    """Asked to stop during a stage's first forward, the stage stops before its second one."""
    stop = {"now": False}

    def after_first(done: str) -> None:
        if done == stage:
            stop["now"] = True

    calls = watch(pipe, monkeypatch, after_first=after_first)
    with pytest.raises(Cancelled):
        pipe.upscale(noisy(), UpscaleSettings(**FAST), should_cancel=lambda: stop["now"])
    assert calls[stage] == 1
    assert all(calls[later] == 0 for later in STAGES[STAGES.index(stage) + 1:])


def test_cancel_before_the_colour_fix(pipe, monkeypatch):
    decoded = {"n": 0}
    total = 6  # decoder tiles of FAST

    def after(*_):
        decoded["n"] += 1

    real = pipe.vae.decoder.forward
    monkeypatch.setattr(pipe.vae.decoder, "forward", lambda *a, **k: (after(), real(*a, **k))[1])
    with pytest.raises(Cancelled, match="before the colour fix"):
        pipe.upscale(noisy(), UpscaleSettings(**FAST), should_cancel=lambda: decoded["n"] >= total)

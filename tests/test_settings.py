"""Settings: what an image gets (UpscaleSettings) apart from how the models load (LoadOptions)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from seesr_cli.errors import UsageError
from seesr_cli.settings import (
    DEFAULT_STEPS,
    DEFAULT_TILE,
    DEVICE_BATCH,
    TURBO_OVERLAP,
    TURBO_STEPS,
    LoadOptions,
    UpscaleSettings,
)


def test_load_time_fields_are_not_image_settings():
    names = {f.name for f in fields(UpscaleSettings)}
    assert not names & {"device", "dtype", "turbo", "compile"}
    with pytest.raises(TypeError):
        UpscaleSettings(dtype="fp32")  # not silently ignored: refused
    assert {f.name for f in fields(LoadOptions)} == {"device", "dtype", "turbo", "compile", "threads", "max_vram", "cpu_kernels"}


def test_resolved_fills_every_model_default():
    plain, turbo = UpscaleSettings().resolved(), UpscaleSettings().resolved(turbo=True)
    assert (plain.steps, plain.guidance, plain.tile_overlap) == (DEFAULT_STEPS["ddpm"], 5.5, 16)
    assert (turbo.steps, turbo.guidance, turbo.tile_overlap) == (TURBO_STEPS, 1.0, TURBO_OVERLAP)
    assert plain.use_cfg and not turbo.use_cfg
    mine = UpscaleSettings(steps=7, guidance=2.0, tile_overlap=8).resolved(turbo=True)
    assert (mine.steps, mine.guidance, mine.tile_overlap) == (7, 2.0, 8)


@pytest.mark.parametrize("device", sorted(DEVICE_BATCH))
def test_resolved_for_a_device_has_no_none_left_that_decides_pixels(device):
    resolved = UpscaleSettings().resolved(device=device)
    assert (resolved.tile_size, resolved.tile_overlap, resolved.tile_batch) == (DEFAULT_TILE, 16, DEVICE_BATCH[device])
    assert [f.name for f in fields(resolved) if getattr(resolved, f.name) is None] == ["tag_threshold"]  # per-class
    assert UpscaleSettings(tile_batch=3).resolved(device=device).tile_batch == 3  # --tile-batch wins
    assert resolved.resolved(device=device) == resolved  # resolving twice changes nothing


def test_default_overlap_stays_below_a_small_tile_and_an_explicit_one_is_checked():
    assert UpscaleSettings(tile_size=8).resolved().tile_overlap == 7
    assert UpscaleSettings(tile_size=8).resolved(turbo=True).tile_overlap == 7
    with pytest.raises(UsageError, match="tile_overlap .200. must be smaller than tile_size .96."):
        UpscaleSettings(tile_overlap=200).resolved()  # not silently lowered
    with pytest.raises(UsageError, match="device kind"):
        UpscaleSettings().resolved(device="tpu")


def test_tile_window_and_threads_are_validated():
    assert UpscaleSettings(tile_window="gaussian").to_dict()["tile_window"] == "gaussian"
    with pytest.raises(UsageError, match="tile_window"):
        UpscaleSettings(tile_window="box")
    assert LoadOptions(threads=3).threads == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="threads"):
            LoadOptions(threads=bad)


def test_load_options_are_validated():
    with pytest.raises(UsageError, match="fp8"):
        LoadOptions(dtype="fp8")
    with pytest.raises(UsageError, match="device"):
        LoadOptions(device="")
    assert LoadOptions(cpu_kernels="stock").cpu_kernels == "stock"
    with pytest.raises(UsageError, match="cpu_kernels must be one of onednn, stock; got 'mkl'"):
        LoadOptions(cpu_kernels="mkl")

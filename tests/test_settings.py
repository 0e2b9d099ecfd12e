"""Settings: what an image gets (UpscaleSettings) apart from how the models load (LoadOptions)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from seesr_cli.errors import UsageError
from seesr_cli.settings import DEFAULT_STEPS, TURBO_OVERLAP, TURBO_STEPS, LoadOptions, UpscaleSettings


def test_load_time_fields_are_not_image_settings():
    names = {f.name for f in fields(UpscaleSettings)}
    assert not names & {"device", "dtype", "turbo", "compile"}
    with pytest.raises(TypeError):
        UpscaleSettings(dtype="fp32")  # not silently ignored: refused
    assert {f.name for f in fields(LoadOptions)} == {"device", "dtype", "turbo", "compile"}


def test_resolved_fills_every_model_default():
    plain, turbo = UpscaleSettings().resolved(), UpscaleSettings().resolved(turbo=True)
    assert (plain.steps, plain.guidance, plain.tile_overlap) == (DEFAULT_STEPS["ddpm"], 5.5, 16)
    assert (turbo.steps, turbo.guidance, turbo.tile_overlap) == (TURBO_STEPS, 1.0, TURBO_OVERLAP)
    assert plain.use_cfg and not turbo.use_cfg
    mine = UpscaleSettings(steps=7, guidance=2.0, tile_overlap=8).resolved(turbo=True)
    assert (mine.steps, mine.guidance, mine.tile_overlap) == (7, 2.0, 8)


def test_load_options_are_validated():
    with pytest.raises(UsageError, match="fp8"):
        LoadOptions(dtype="fp8")
    with pytest.raises(UsageError, match="device"):
        LoadOptions(device="")

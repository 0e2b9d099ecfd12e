"""One job on tiny models: the metadata contract, 16-bit through the float path, no write once stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seesr_cli.batch import Job, upscale_job
from seesr_cli.errors import Cancelled
from seesr_cli.io import read_metadata
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.report import collect
from seesr_cli.settings import UpscaleSettings

FAST = UpscaleSettings(steps=2, process_size=64, scale=2, seed=11)
RUN_KEYS = {"format", "seesr_cli", "torch", "diffusers", "transformers", "device", "device_name", "dtype", "threads",
            "kernels", "compiled", "turbo", "tile", "overlap", "tile_batch", "vae_encoder_tile", "vae_decoder_tile", "input_size",
            "output_size", "weights", "notes"}
STAGES = {"dape", "text", "vae_encode", "denoise", "vae_decode", "colorfix"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


def job(src: Path, out: Path, seed: int = 5) -> Job:
    return Job(src, src.name, out, "png", seed, "run")


def nothing_unresolved(value) -> bool:
    if isinstance(value, dict):
        return all(nothing_unresolved(v) for v in value.values())
    if isinstance(value, list):
        return all(nothing_unresolved(v) for v in value)
    return value is not None and value != "auto"


def test_metadata_says_what_ran(pipe, tmp_path):
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src)
    done = upscale_job(job(src, tmp_path / "out" / "a.png"), pipeline=lambda: pipe, settings=FAST, quality=95)
    meta = read_metadata(tmp_path / "out" / "a.png")
    assert (meta["seesr:seed"], meta["seesr:base-seed"], meta["seesr:source"]) == ("5", "11", "a.png")
    assert meta["seesr:input"] == str(src.absolute())
    settings = json.loads(meta["seesr:settings"])
    assert UpscaleSettings.from_dict(settings).resolved(device="cpu").to_dict() == settings  # already resolved
    assert [k for k, v in settings.items() if v is None] == ["tag_threshold"]  # None there: per-class thresholds
    assert (settings["seed"], settings["tile_size"], settings["tile_overlap"], settings["tile_batch"]) == (5, 96, 16, 1)
    run = json.loads(meta["seesr:run"])
    assert set(run) == RUN_KEYS and nothing_unresolved(run)
    assert (run["format"], run["device"], run["dtype"], run["turbo"]) == (2, "cpu", "fp32", False)
    assert run["threads"] >= 1 and run["input_size"] == [30, 20] and run["output_size"] == [60, 40]
    assert set(done.timings) == STAGES and "timings" not in run  # seconds go to the report, not the file
    assert run["weights"] and "turbo" not in run["weights"]  # only the parts this pipeline loaded
    assert all("@" in v or v.startswith("sha256:") for v in run["weights"].values())
    tiles = json.loads(meta["seesr:tiles"])
    assert tiles and all(set(t) == {"box", "tags", "prompt"} for t in tiles)
    assert [t["prompt"] for t in tiles] == json.loads(meta["seesr:prompts"]) or len(json.loads(meta["seesr:prompts"])) == 1
    entry = collect(tmp_path / "out")[0]  # the report package reads this contract
    assert (entry.seed, entry.base_seed, entry.run["tile"], len(entry.tiles)) == (5, 11, 96, len(tiles))


def test_16bit_input_gives_16bit_levels(pipe, tmp_path):
    """A smooth 16-bit RGB ramp: each channel of the output has far more than 256 levels (8-bit data
    written as 16 bits, x 257, has at most 256)."""
    from seesr_cli.io.codecs import write_png16

    x, y = np.linspace(0.1, 0.9, 40), np.linspace(0.0, 0.05, 24)
    ramp = np.stack([x[None, :] + y[:, None], 0.5 * x[None, :] + 2 * y[:, None], 0.9 - x[None, :] + y[:, None]], -1)
    src = tmp_path / "ramp16.png"
    with open(src, "wb") as f:
        write_png16(f, np.round(ramp * 65535).astype(np.uint16), icc=None, text={"Software": "test"}, exif=None)
    out = tmp_path / "ramp16_x2.png"
    upscale_job(job(src, out), pipeline=lambda: pipe, settings=FAST.with_(color_fix="wavelet"), quality=95)
    with Image.open(out) as im:
        assert im.size == (80, 48)
    from seesr_cli.io import load_image

    written = load_image(out)
    assert written.bit_depth == 16 and not written.grayscale
    levels = [len(np.unique(np.round(written.float_rgb()[..., c] * 65535))) for c in range(3)]
    assert min(levels) > 1024, levels


def test_stopped_after_the_last_stage_writes_nothing(pipe, tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    stop = {"now": False}
    real = pipe.upscale

    def upscale(*args, **kwargs):
        result = real(*args, **kwargs)
        stop["now"] = True  # Ctrl-C right after the pipeline's last safe point
        return result

    monkeypatch.setattr(pipe, "upscale", upscale)
    with pytest.raises(Cancelled):
        upscale_job(job(src, tmp_path / "out.png"), pipeline=lambda: pipe, settings=FAST, quality=95,
                    should_cancel=lambda: stop["now"])
    assert not (tmp_path / "out.png").exists()


def test_two_runs_write_the_same_bytes(pipe, tmp_path):
    """An image's bytes depend only on the image, its settings and what ran: not on timing."""
    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src)
    for name in ("one", "two"):
        upscale_job(job(src, tmp_path / name / "a.png"), pipeline=lambda: pipe, settings=FAST, quality=95)
    assert (tmp_path / "one" / "a.png").read_bytes() == (tmp_path / "two" / "a.png").read_bytes()


def test_the_report_shows_the_seconds_of_the_run_that_wrote_a_result(pipe, tmp_path):
    from seesr_cli.batch import JobResult
    from seesr_cli.report import record_run

    src, out = tmp_path / "a.png", tmp_path / "out"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src)
    done = upscale_job(job(src, out / "a.png"), pipeline=lambda: pipe, settings=FAST, quality=95)
    record_run(out, [JobResult(job(src, out / "a.png"), "ok", timings=done.timings)], previews=False)
    assert set(collect(out)[0].run["timings"]) == STAGES
    (out / "a.png").write_bytes((out / "a.png").read_bytes())  # rewritten: those seconds no longer belong to it
    import os

    os.utime(out / "a.png", ns=(1, 1))
    assert "timings" not in collect(out)[0].run

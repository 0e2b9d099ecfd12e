"""Work is estimated from the header before anything loads (issue 10, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from seesr_cli.batch import FAIL, RUN, SKIP, Job
from seesr_cli.batch.estimate import WorkLimits, header_size, limit_work, refusal
from seesr_cli.errors import UsageError
from seesr_cli.settings import UpscaleSettings

LIMITS = WorkLimits()


def test_a_1x4000_strip_is_refused_at_the_defaults_by_its_working_size():
    """512 x 2,048,000 px working image and 3200 tiles for a 14 KB PNG: refused, naming the limit."""
    reason = refusal(1, 4000, UpscaleSettings(), LIMITS)
    assert reason.startswith("a 1 x 4000 px image is diffused at 512 x 2048000 px (1,049 MP")
    assert "over the limit of 64 MP" in reason and "--max-megapixels" in reason


def test_tiles_are_counted_with_the_settings_own_tile_and_overlap():
    # --process-size 64: 64 x 256000 px (16 MP, under 64) but 400 tiles (16 min per image in issue 10)
    narrow = UpscaleSettings(process_size=64)
    reason = refusal(1, 4000, narrow, LIMITS)
    assert reason.startswith("400 latent tiles of 96 px (overlap 16) for a 64 x 256000 px working image, "
                             "over the limit of 256")
    assert refusal(1, 4000, narrow, WorkLimits(max_tiles=400)) is None
    assert refusal(8000 // 4, 8000 // 4, UpscaleSettings(), LIMITS) is None  # 64 MP at the defaults: 169 tiles
    assert refusal(8000 // 4, 8000 // 4, UpscaleSettings(), LIMITS, turbo=True) is None  # overlap 32: 256 tiles
    # overlap 95 on 96 px tiles: 11025 tiles for a 400 x 400 px image (9 at the defaults)
    assert refusal(400, 400, UpscaleSettings(), LIMITS) is None
    assert refusal(400, 400, UpscaleSettings(tile_size=96, tile_overlap=95), LIMITS).startswith("11,025 latent tiles")


def test_the_result_size_is_limited_and_the_limit_can_be_raised():
    reason = refusal(2000, 2000, UpscaleSettings(scale=8), LIMITS)
    assert reason == ("the result would be 16000 x 16000 px (256.0 MP), over the limit of 64 MP; "
                      "lower --scale or raise --max-megapixels")
    assert refusal(2000, 2000, UpscaleSettings(scale=8), WorkLimits(max_megapixels=300, max_tiles=5000)) is None


def test_limits_are_validated():
    for bad in ({"max_megapixels": 0}, {"max_megapixels": float("nan")}, {"max_tiles": 0}):
        with pytest.raises(UsageError, match="--max-"):
            WorkLimits(**bad)


def test_limit_work_reads_only_headers_and_leaves_unreadable_files_to_loading(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (4000, 1)).save(wide)
    ok = tmp_path / "ok.png"
    Image.new("RGB", (24, 16)).save(ok)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert header_size(wide) == (4000, 1) and header_size(broken) is None and header_size(tmp_path) is None

    def job(path: Path, action: str = RUN) -> Job:
        return Job(path, path.name, tmp_path / "out" / path.name, "png", 0, action)

    jobs = limit_work([job(wide), job(ok), job(broken), job(wide, SKIP)], UpscaleSettings(), LIMITS)
    assert [j.action for j in jobs] == [FAIL, RUN, RUN, SKIP]
    assert "over the limit of 64 MP" in jobs[0].reason

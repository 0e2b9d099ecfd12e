"""`load_seconds` in the --json report counts the model loading even when every image fails (issue 10, item 10)."""

from __future__ import annotations

import json
import time

from PIL import Image
from typer.testing import CliRunner

from seesr_cli.batch import PipelineLoader
from seesr_cli.cli import app
from seesr_cli.errors import SeesrError


class _BrokenPipe:
    def upscale(self, *args, **kwargs):
        raise SeesrError("this image breaks the pipeline")


def test_load_seconds_is_reported_when_every_image_fails(monkeypatch, tmp_path):
    def load(self):
        if self._pipe is None:
            time.sleep(0.3)
            self.load_seconds += 0.3
            self._pipe = _BrokenPipe()
        return self._pipe

    monkeypatch.setattr(PipelineLoader, "__call__", load)
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (24, 16)).save(name)
    result = CliRunner().invoke(app, ["upscale", "a.png", "b.png", "--device", "cpu", "--json"],
                                catch_exceptions=False)
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert [r["status"] for r in report["images"]] == ["failed", "failed"]
    assert report["load_seconds"] >= 0.3

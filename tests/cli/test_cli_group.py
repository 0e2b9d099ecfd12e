"""`seesr upscale DIR --group N`: the folder's images run in groups and every output is the file a
one-by-one run writes; a bad file fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from seesr_cli.cli import app
from seesr_cli.io import read_metadata

FAST = ["--steps", "2", "--scale", "2", "--process-size", "64", "--device", "cpu", "--tile-size", "16",
        "--tile-overlap", "4", "--tile-batch", "4"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def pixels(path: Path) -> bytes:
    with Image.open(path) as im:
        return np.asarray(im).tobytes()


def test_grouped_outputs_are_the_one_by_one_outputs(offline, tmp_path):
    (tmp_path / "in").mkdir()
    for i, (w, h) in enumerate([(32, 24), (48, 32), (16, 16), (40, 40)]):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{i}.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    runs = {}
    for name, group in (("grouped", "3"), ("single", "1")):
        done = invoke("upscale", "in", "-o", name, *FAST, "--group", group, "--json", "--no-report")
        assert done.exit_code == 1, done.stderr  # the bad file
        runs[name] = {Path(r["input"]).name: r for r in json.loads(done.stdout)["images"]}
    assert {k: r["status"] for k, r in runs["grouped"].items()} == {k: r["status"] for k, r in runs["single"].items()}
    assert runs["grouped"]["bad.png"]["status"] == "failed"
    for i in range(4):
        grouped, single = tmp_path / "grouped" / f"{i}.png", tmp_path / "single" / f"{i}.png"
        assert pixels(grouped) == pixels(single) and read_metadata(grouped) == read_metadata(single)
        assert runs["grouped"][f"{i}.png"]["prompts"] == runs["single"][f"{i}.png"]["prompts"]


def test_group_is_refused_with_ray(offline, tmp_path):
    done = invoke("upscale", "in", "--group", "2", "--devices", "cpu,cpu", "--dry-run")
    assert done.exit_code == 2 and "--group" in done.stderr


def test_a_group_has_one_bar_named_after_its_first_image():
    import io

    from rich.console import Console

    from seesr_cli.batch import RUN, Job
    from seesr_cli.cli.progress import BatchProgress
    from seesr_cli.pipeline import ProgressEvent

    jobs = [Job(Path(f"in/{i}.png"), f"{i}.png", Path(f"out/{i}.png"), "png", i, RUN) for i in range(3)]
    with BatchProgress(Console(file=io.StringIO(), force_terminal=True, width=160)) as view:
        view.start(jobs)
        for index, job in enumerate(jobs):
            view.job_started(job, index, 3)
        view.group_started(jobs)
        view.pipeline_event(ProgressEvent("compile", 0, 1, detail="compiling for 16x16 tiles, batch 4 (once per shape)"))
        rows = [(task.description, task.fields.get("detail")) for task in view.progress.tasks]
    assert ("in/0.png (+2 in its group)", "compiling for 16x16 tiles, batch 4 (once per shape)") in rows

"""A batch run in groups (`--group`): several images per pipeline call, each claimed, written and
reported on its own; one bad image never fails its group-mates; the files are those of one-by-one runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seesr_cli.batch import FAILED, OK, RUN, SKIP, SKIPPED, Job, WorkDone, run_jobs, upscale_job, upscale_jobs
from seesr_cli.errors import InputImageError, WeightsError
from seesr_cli.io import read_metadata
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

FAST = UpscaleSettings(steps=2, process_size=64, scale=2, seed=11, tile_size=16, tile_overlap=4,
                       vae_decoder_tile=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(tmp_path / f"in{i}.png", f"in{i}.png", tmp_path / "out" / f"in{i}.png", "png", i, RUN)
            for i in range(n)]


def _write(job: Job) -> WorkDone:
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_bytes(b"done")
    return WorkDone((job.rel,), timings={"denoise": 1.0})


def test_groups_of_runnable_jobs_with_skips_riding_along(tmp_path):
    jobs = _jobs(tmp_path, 6)
    jobs[1] = Job(jobs[1].input, "in1.png", jobs[1].output, "png", 1, SKIP, "output exists")
    groups, alone = [], []

    def work_many(group):
        groups.append([job.rel for job in group])
        return [InputImageError(job.input, "truncated") if job.rel == "in2.png" else _write(job) for job in group]

    report = run_jobs(jobs, lambda job: alone.append(job.rel) or _write(job), group=2, work_many=work_many)
    assert groups == [["in0.png", "in2.png"], ["in3.png", "in4.png"]] and alone == ["in5.png"]
    assert [(r.job.rel, r.status) for r in report.results] == [
        ("in0.png", OK), ("in1.png", SKIPPED), ("in2.png", FAILED), ("in3.png", OK), ("in4.png", OK), ("in5.png", OK)]
    assert report.results[2].error == "truncated" and report.results[3].prompts == ("in3.png",)
    assert report.exit_code == 1


def test_a_group_that_fails_as_a_whole_is_redone_image_by_image(tmp_path):
    alone = []

    def work(job):
        alone.append(job.rel)
        if job.rel == "in1.png":
            raise RuntimeError("bad one")
        return _write(job)

    report = run_jobs(_jobs(tmp_path, 3), work, group=3, work_many=lambda group: 1 / 0)
    assert alone == ["in0.png", "in1.png", "in2.png"]
    assert [r.status for r in report.results] == [OK, FAILED, OK]
    assert report.results[1].error == "internal error: RuntimeError: bad one" and report.results[1].trace
    with pytest.raises(WeightsError):  # what fails every image alike still stops the batch
        run_jobs(_jobs(tmp_path / "w", 2), work, group=2,
                 work_many=lambda group: (_ for _ in ()).throw(WeightsError("missing weights")))


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


def test_grouped_files_are_the_files_of_one_by_one_runs(pipe, tmp_path, monkeypatch):
    """Four inputs of three sizes and an unreadable one, in one group at batch 4: each output has the
    pixels and metadata it gets alone; the bad file fails alone."""
    monkeypatch.setitem(DEVICE_BATCH, "cpu", 4)
    (tmp_path / "in").mkdir()
    sizes = [(30, 20), (16, 16), (48, 32), (30, 20)]
    jobs = []
    for i, (w, h) in enumerate(sizes):
        src = tmp_path / "in" / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src)
        jobs.append(Job(src, src.name, tmp_path / "group" / src.name, "png", 40 + i, RUN))
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not a png")
    jobs.insert(2, Job(broken, broken.name, tmp_path / "group" / broken.name, "png", 7, RUN))
    for job in jobs:
        job.output.parent.mkdir(exist_ok=True)
    done = upscale_jobs(jobs, pipeline=lambda: pipe, settings=FAST, quality=95)
    assert isinstance(done[2], InputImageError) and all(isinstance(d, WorkDone) for i, d in enumerate(done) if i != 2)
    for job in jobs[:2] + jobs[3:]:
        alone = Job(job.input, job.rel, tmp_path / "alone" / job.rel, "png", job.seed, RUN)
        alone.output.parent.mkdir(exist_ok=True)
        upscale_job(alone, pipeline=lambda: pipe, settings=FAST, quality=95)
        assert alone.output.read_bytes() == job.output.read_bytes()
        assert read_metadata(alone.output) == read_metadata(job.output)

"""seesr_cli.batch: input discovery, output paths, resume/skip, seeds, sharding and the runner loop.

Planning is pure file-system logic, so these tests build small trees of real (tiny) images and
check the plan; the runner is driven with plain work functions (its contract is "call work for
each job, classify what it raises"), no models.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from seesr_cli.batch import (
    FAIL,
    FAILED,
    OK,
    RUN,
    SKIP,
    SKIPPED,
    Job,
    OutputOptions,
    WorkDone,
    derive_seed,
    discover,
    plan_batch,
    run_jobs,
    shard_jobs,
)
from seesr_cli.errors import Cancelled, InputImageError, InternalError, UsageError, WeightsError


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """photos/{a.png, b.jpg, .hidden.png, notes.txt, sub/c.png, sub/deeper/d.webp}; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    for rel in ("photos/a.png", "photos/b.jpg", "photos/.hidden.png", "photos/sub/c.png", "photos/sub/deeper/d.webp"):
        _img(tmp_path / rel)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path


def _by_input(jobs):
    return {j.input.as_posix(): j for j in jobs}


# ----------------------------------------------------------------------------- discovery


def test_folder_discovery_skips_hidden_and_non_images_and_needs_recursive(tree):
    flat, problems = discover(["photos"])
    assert [f.rel for f in flat] == ["a.png", "b.jpg"] and problems == []
    deep, _ = discover(["photos"], recursive=True)
    assert [f.rel for f in deep] == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.webp"]
    assert all(f.root == Path("photos") for f in deep)


def test_globs_are_expanded_here_with_their_fixed_prefix_as_root(tree):
    found, problems = discover(["photos/*.png", "photos/**/*.webp"])
    assert [(f.path.as_posix(), f.root.as_posix(), f.rel) for f in found] == [
        ("photos/a.png", "photos", "a.png"),
        ("photos/sub/deeper/d.webp", "photos", "sub/deeper/d.webp"),
    ]
    assert problems == []
    _, problems = discover(["photos/*.gif"])
    assert problems == [("photos/*.gif", "no images match this pattern")]


def test_missing_and_empty_inputs_are_problems_not_crashes(tree):
    (tree / "empty").mkdir()
    (tree / "photos" / "sub2").mkdir()
    _img(tree / "photos" / "sub2" / "x.png")
    found, problems = discover(["missing.png", "empty", "photos/sub2", "photos/sub2/x.png"])
    assert [f.path.as_posix() for f in found] == ["photos/sub2/x.png"]  # given twice, kept once
    assert problems[0] == ("missing.png", "file not found")
    assert problems[1][0] == "empty" and "--recursive" in problems[1][1]


def test_explicit_files_are_taken_whatever_their_extension(tree):
    found, _ = discover(["photos/notes.txt"])
    assert [f.rel for f in found] == ["notes.txt"]  # loading it will say why it is not an image


# ----------------------------------------------------------------------------- output paths


def test_default_outputs_folder_beside_folder_and_name_beside_file(tree):
    jobs = plan_batch(["photos", "photos/sub/c.png"], OutputOptions(recursive=True))
    by = _by_input(jobs)
    assert by["photos/a.png"].output == Path("photos_x4/a.png")
    assert by["photos/sub/deeper/d.webp"].output == Path("photos_x4/sub/deeper/d.png")
    # c.png was also found in the folder: kept once, under the folder's plan
    assert len(jobs) == 4
    single = plan_batch(["photos/sub/c.png"], OutputOptions(scale=2.5))
    assert single[0].output == Path("photos/sub/c_x2.5.png")


def test_dot_folder_gets_its_real_name(tree, monkeypatch):
    monkeypatch.chdir(tree / "photos")
    jobs = plan_batch(["."], OutputOptions())
    assert jobs[0].output == tree / "photos_x4" / "a.png"


def test_output_folder_mirrors_subfolders_with_suffix_and_format(tree):
    jobs = plan_batch(["photos"], OutputOptions(out=Path("out"), fmt="jpg", suffix="_sr", recursive=True))
    assert [j.output.as_posix() for j in jobs] == ["out/a_sr.jpg", "out/b_sr.jpg", "out/sub/c_sr.jpg",
                                                  "out/sub/deeper/d_sr.jpg"]
    assert {j.fmt for j in jobs} == {"jpg"} and {j.action for j in jobs} == {RUN}


def test_format_same_keeps_writable_formats_and_their_extension(tree):
    _img(tree / "photos" / "e.gif")
    (tree / "photos" / "f.JPEG").write_bytes((tree / "photos" / "b.jpg").read_bytes())
    jobs = _by_input(plan_batch(["photos"], OutputOptions(out=Path("out"), fmt="same")))
    assert (jobs["photos/b.jpg"].output.name, jobs["photos/b.jpg"].fmt) == ("b.jpg", "jpg")
    assert (jobs["photos/e.gif"].output.name, jobs["photos/e.gif"].fmt) == ("e.png", "png")
    assert (jobs["photos/f.JPEG"].output.name, jobs["photos/f.JPEG"].fmt) == ("f.JPEG", "jpg")


def test_single_file_with_o_name_writes_exactly_that_file(tree):
    jobs = plan_batch(["photos/a.png"], OutputOptions(out=Path("result.jpg")))
    assert [(j.output, j.fmt, j.action) for j in jobs] == [(Path("result.jpg"), "jpg", RUN)]
    with pytest.raises(UsageError, match="names one file"):
        plan_batch(["photos"], OutputOptions(out=Path("result.jpg")))
    with pytest.raises(UsageError, match="names one file"):
        plan_batch(["photos/a.png", "photos/b.jpg"], OutputOptions(out=Path("result.jpg")))
    with pytest.raises(UsageError, match="contradicts"):
        plan_batch(["photos/a.png"], OutputOptions(out=Path("result.jpg"), fmt="png"))
    (tree / "folder.png").mkdir()  # an existing folder is a folder, whatever its name
    assert plan_batch(["photos/a.png"], OutputOptions(out=Path("folder.png")))[0].output == Path("folder.png/a.png")


def test_output_equal_to_its_input_is_refused(tree):
    jobs = plan_batch(["photos/a.png"], OutputOptions(suffix="", fmt="same"))
    assert jobs[0].action == FAIL and "overwrite the input" in jobs[0].reason
    jobs = plan_batch(["photos"], OutputOptions(out=Path("photos"), suffix="", fmt="same", overwrite=True))
    assert {j.action for j in jobs} == {FAIL}
    assert (tree / "photos" / "a.png").stat().st_size > 0


def test_two_inputs_never_share_an_output(tree):
    _img(tree / "photos" / "a.jpg")
    jobs = _by_input(plan_batch(["photos"], OutputOptions(out=Path("out"))))
    assert jobs["photos/a.jpg"].action == RUN  # first in order keeps the name
    assert jobs["photos/a.png"].action == FAIL and "already the output of" in jobs["photos/a.png"].reason
    outputs = [j.output for j in jobs.values() if j.action == RUN]
    assert len(outputs) == len(set(outputs))


def test_existing_outputs_are_skipped_unless_overwrite(tree):
    _img(tree / "out" / "a.png")
    jobs = _by_input(plan_batch(["photos"], OutputOptions(out=Path("out"))))
    assert (jobs["photos/a.png"].action, jobs["photos/a.png"].reason) == (SKIP, "output exists")
    assert jobs["photos/b.jpg"].action == RUN
    again = _by_input(plan_batch(["photos"], OutputOptions(out=Path("out"), overwrite=True)))
    assert again["photos/a.png"].action == RUN and again["photos/a.png"].overwrite


def test_earlier_results_beside_their_sources_are_not_upscaled_again(tree):
    _img(tree / "photos" / "a_x4.png")  # what `seesr upscale photos/*.png` wrote last time
    jobs = _by_input(plan_batch(["photos/*.png"], OutputOptions()))
    assert jobs["photos/a.png"].action == SKIP  # its output exists
    assert jobs["photos/a_x4.png"].action == SKIP and "output of photos/a.png" in jobs["photos/a_x4.png"].reason
    # --overwrite (issue 10, item 3): a.png is redone into a_x4.png; a_x4.png never becomes a_x4_x4.png
    for args in (["photos/*.png"], ["photos/a.png", "photos/a_x4.png"], ["photos/**/*.png"]):
        jobs = _by_input(plan_batch(args, OutputOptions(overwrite=True)))
        assert (jobs["photos/a.png"].action, jobs["photos/a.png"].output) == (RUN, Path("photos/a_x4.png"))
        assert jobs["photos/a_x4.png"].action == SKIP and "earlier result" in jobs["photos/a_x4.png"].reason
        assert "a_x4.png" not in [j.input.name for j in jobs.values() if j.action == RUN]


def test_output_folder_inside_the_input_folder_is_not_read_back(tree):
    _img(tree / "photos" / "up" / "a.png")  # a previous run with -o photos/up
    jobs = plan_batch(["photos"], OutputOptions(out=Path("photos/up"), recursive=True))
    assert not any("up/" in j.input.as_posix() for j in jobs)
    assert _by_input(jobs)["photos/a.png"].action == SKIP


def test_missing_inputs_become_failed_jobs(tree):
    jobs = plan_batch(["nope.png", "photos/a.png"], OutputOptions())
    assert (jobs[0].action, jobs[0].reason, jobs[0].output) == (FAIL, "file not found", None)
    assert jobs[1].action == RUN


# ----------------------------------------------------------------------------- seeds


def test_seed_depends_on_base_and_relative_path_only(tree):
    assert derive_seed(0, "a.png") == derive_seed(0, "a.png")
    assert len({derive_seed(0, "a.png"), derive_seed(1, "a.png"), derive_seed(0, "b.png")}) == 3
    assert all(0 <= derive_seed(s, r) < 2**63 for s in (0, 2**63 - 1) for r in ("a", "ü/ß.png"))
    forward = _by_input(plan_batch(["photos/a.png", "photos/b.jpg"], OutputOptions(out=Path("o"))))
    backward = _by_input(plan_batch(["photos/b.jpg", "photos/a.png"], OutputOptions(out=Path("o"))))
    assert {k: j.seed for k, j in forward.items()} == {k: j.seed for k, j in backward.items()}
    # the same image named alone or inside its folder: same relative path, same seed
    folder = _by_input(plan_batch(["photos"], OutputOptions(out=Path("o"), fmt="jpg")))
    assert folder["photos/a.png"].seed == forward["photos/a.png"].seed == derive_seed(0, "a.png")


# ----------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("count", [0, 1, 5, 7, 8])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_job_once_in_order(count, world):
    jobs = [Job(Path(f"{i}.png"), f"{i}.png", Path(f"o/{i}.png"), "png", i, RUN) for i in range(count)]
    shares = [shard_jobs(jobs, rank, world) for rank in range(world)]
    assert [j for share in shares for j in share] == jobs
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(InternalError):
        shard_jobs(jobs, world, world)


# ----------------------------------------------------------------------------- runner


def _jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(tmp_path / f"in{i}.png", f"in{i}.png", tmp_path / "out" / f"in{i}.png", "png", i, RUN)
            for i in range(n)]


class Recorder:
    def __init__(self):
        self.started, self.finished = [], []

    def job_started(self, job, index, total):
        self.started.append((job.rel, index, total))

    def job_finished(self, result, index, total):
        self.finished.append((result.job.rel, result.status))


def _writer(job: Job) -> WorkDone:
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_bytes(b"done")
    return WorkDone(("a prompt",))


def test_runner_goes_on_after_a_bad_image_and_reports_each(tmp_path):
    jobs = _jobs(tmp_path, 4)
    jobs[0] = Job(jobs[0].input, "in0.png", None, "", 0, FAIL, "file not found")
    jobs[1] = Job(jobs[1].input, "in1.png", jobs[1].output, "png", 1, SKIP, "output exists")

    def work(job):
        if job.rel == "in2.png":
            raise InputImageError(job.input, "truncated")
        return _writer(job)

    seen = Recorder()
    report = run_jobs(jobs, work, observer=seen)
    assert [(r.status, r.error) for r in report.results] == [
        (FAILED, "file not found"), (SKIPPED, "output exists"), (FAILED, "truncated"), (OK, "")]
    assert report.results[3].prompts == ("a prompt",)
    assert seen.finished == [("in0.png", FAILED), ("in1.png", SKIPPED), ("in2.png", FAILED), ("in3.png", OK)]
    assert report.exit_code == 1
    assert report.results[2].to_dict()["error"] == "truncated"


def test_runner_reports_unexpected_errors_and_stops_on_fatal_ones(tmp_path):
    jobs = _jobs(tmp_path, 3)
    report = run_jobs(jobs, lambda job: 1 / 0)
    assert {r.status for r in report.results} == {FAILED}
    assert report.results[0].error.startswith("internal error: ZeroDivisionError")
    with pytest.raises(WeightsError):
        run_jobs(jobs, lambda job: (_ for _ in ()).throw(WeightsError("missing weights")))


def test_runner_stops_cleanly_on_cancel(tmp_path):
    jobs = _jobs(tmp_path, 3)
    calls = []

    def work(job):
        calls.append(job.rel)
        if job.rel == "in1.png":
            raise Cancelled("stopped")
        return _writer(job)

    report = run_jobs(jobs, work)
    assert calls == ["in0.png", "in1.png"] and report.interrupted and report.exit_code == 130
    assert [r.status for r in report.results] == [OK]
    flag = iter([False, True])
    report = run_jobs(_jobs(tmp_path / "again", 3), _writer, should_cancel=lambda: next(flag))
    assert len(report.results) == 1 and report.interrupted


def test_runner_skips_outputs_written_meanwhile_and_clears_stale_temps(tmp_path):
    jobs = _jobs(tmp_path, 2)
    jobs[0].output.parent.mkdir(parents=True)
    jobs[0].output.write_bytes(b"another process")
    stale = jobs[1].output.with_name(f".{jobs[1].output.name}.tmp-0badc0de")  # no pid: an old writer's
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    report = run_jobs(jobs, _writer)
    assert [r.status for r in report.results] == [SKIPPED, OK]
    assert jobs[0].output.read_bytes() == b"another process"
    assert not stale.exists() and report.exit_code == 0
    overwrite = [Job(j.input, j.rel, j.output, j.fmt, j.seed, RUN, overwrite=True) for j in jobs]
    assert [r.status for r in run_jobs(overwrite, _writer).results] == [OK, OK]
    assert jobs[0].output.read_bytes() == b"done"

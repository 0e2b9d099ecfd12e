"""Claims and temporary files when runs share a folder (issue 10, item 2): an image is computed once,
a crashed run's claim is taken over, and only dead writers' temporary files are ever removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seesr_cli.batch import OK, RUN, SKIPPED, Job, WorkDone, run_jobs
from seesr_cli.batch.claim import Claim, Holder, claim, dead_temps, lock_path

pytestmark = pytest.mark.skipif(os.name == "nt", reason="pid checks are POSIX-only")


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _lock(output: Path, pid: int, host: str | None = None, age: float = 0.0) -> Path:
    from seesr_cli.batch import claim as claims

    lock = lock_path(output)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": host or claims._HOST, "started": 0.0, "token": "t"}))
    if age:
        os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def _jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(tmp_path / f"in{i}.png", f"in{i}.png", tmp_path / "out" / f"in{i}.png", "png", i, RUN)
            for i in range(n)]


def _writer(job: Job) -> WorkDone:
    job.output.write_bytes(b"done")
    return WorkDone()


def test_a_live_claim_makes_another_run_skip_the_image_naming_the_pid(tmp_path, live_pid):
    jobs = _jobs(tmp_path, 2)
    _lock(jobs[0].output, live_pid)
    computed = []
    report = run_jobs(jobs, lambda job: computed.append(job.rel) or _writer(job))
    assert computed == ["in1.png"]
    assert [(r.status, r.error) for r in report.results] == [
        (SKIPPED, f"being made by another run (pid {live_pid})"), (OK, "")]
    assert report.exit_code == 0
    assert lock_path(jobs[0].output).exists() and not lock_path(jobs[1].output).exists()  # ours released


def test_a_dead_runs_claim_is_taken_over(tmp_path, dead_pid):
    jobs = _jobs(tmp_path, 1)
    _lock(jobs[0].output, dead_pid)
    report = run_jobs(jobs, _writer)
    assert [r.status for r in report.results] == [OK] and not lock_path(jobs[0].output).exists()


def test_a_claim_from_another_host_is_taken_over_only_when_stale(tmp_path):
    output = tmp_path / "out" / "a.png"
    _lock(output, 1, host="elsewhere")
    held = claim(output)
    assert isinstance(held, Holder) and held.describe() == "being made by another run (pid 1 on elsewhere)"
    _lock(output, 1, host="elsewhere", age=3600)  # not refreshed for an hour: its run is gone
    mine = claim(output)
    assert isinstance(mine, Claim)
    mine.release()
    assert not lock_path(output).exists()


def test_release_never_removes_a_claim_taken_over_by_another_run(tmp_path, live_pid):
    output = tmp_path / "out" / "a.png"
    mine = claim(output)
    _lock(output, live_pid)  # judged stale by someone else and replaced
    mine.release()
    assert json.loads(lock_path(output).read_text())["pid"] == live_pid


def test_only_dead_writers_temps_are_removed(tmp_path, dead_pid, live_pid):
    jobs = _jobs(tmp_path, 2)
    out = jobs[0].output.parent
    out.mkdir()
    names = {"dead": f".in0.png.tmp-{dead_pid}-00aa", "live": f".in0.png.tmp-{live_pid}-00bb",
             "unknown": ".in0.png.tmp-0badc0de", "old": ".in0.png.tmp-0fdc0de0"}
    for name in names.values():
        (out / name).write_bytes(b"half")
    old = out / names["old"]
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert sorted(p.name for p in dead_temps(jobs[0].output, list(names.values()))) == sorted(
        [names["dead"], names["old"]])
    report = run_jobs(jobs, _writer)
    assert [r.status for r in report.results] == [OK, OK]
    assert sorted(p.name for p in out.iterdir()) == sorted(["in0.png", "in1.png", names["live"], names["unknown"]])


def test_a_stale_temp_beside_a_finished_output_is_removed(tmp_path, dead_pid):
    """Issue 10, item 10: leftovers beside finished outputs stayed forever."""
    jobs = _jobs(tmp_path, 1)
    jobs[0].output.parent.mkdir()
    jobs[0].output.write_bytes(b"finished")
    stale = jobs[0].output.with_name(f".in0.png.tmp-{dead_pid}-1234")
    stale.write_bytes(b"half")
    _lock(jobs[0].output, dead_pid)  # killed between writing and releasing its claim
    report = run_jobs(jobs, _writer)
    assert [(r.status, r.error) for r in report.results] == [(SKIPPED, "output exists")]
    assert sorted(p.name for p in jobs[0].output.parent.iterdir()) == ["in0.png"]


def test_a_failed_job_leaves_no_folder_made_for_its_claim(tmp_path):
    from seesr_cli.batch import FAILED
    from seesr_cli.errors import InputImageError

    jobs = _jobs(tmp_path / "deep", 1)

    def broken(job):
        raise InputImageError(job.input, "truncated")

    assert [r.status for r in run_jobs(jobs, broken).results] == [FAILED]
    assert not (tmp_path / "deep").exists()

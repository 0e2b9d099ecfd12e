"""The `seesr` command end to end: Typer's CliRunner in-process and `python -m seesr_cli` subprocesses.

Weights come from a fake Hugging Face cache of tiny official-format models with
HF_HUB_OFFLINE=1 (tests/fakehub.py), so the real download, verify, convert and load code
runs, and again from an official-layout `--weights DIR`. Runs are kept tiny (2 steps,
x2, process size 64: a 24 x 16 input diffuses on an 12 x 8 latent).
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from seesr_cli import __version__
from seesr_cli.batch import derive_seed
from seesr_cli.cli import app
from seesr_cli.io import read_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "2", "--scale", "2", "--process-size", "64", "--device", "cpu"]


# ----------------------------------------------------------------------------- fixtures and helpers


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def subprocess_env(env: dict) -> dict:
    """The checkout importable; one CPU thread (parallel test processes oversubscribe the cores badly)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def run_seesr(*args: str, env: dict, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m seesr_cli ARGS`: the real entry point in a fresh interpreter."""
    env = subprocess_env(env)
    return subprocess.run([sys.executable, "-m", "seesr_cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def lr(width: int = 24, height: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def rgb_png(path: Path, seed: int = 0, size=(24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lr(*size, seed=seed)).save(path)
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def results(folder: Path) -> dict[str, int]:
    """`mtimes` of the results alone: not the report, nor hidden files (its folder, a killed run's claims)."""
    return {name: t for name, t in mtimes(folder).items()
            if name != "seesr-report.html" and not Path(name).name.startswith(".")
            and not name.startswith(".seesr-report/")}


def report_items(page: Path) -> list[str]:
    """The results a report shows (its inline JSON; the browser test checks the cards themselves)."""
    text = page.read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL).group(1)
    return [item["name"] for item in json.loads(raw)["items"]]


def failures_shown(folder: Path) -> str:
    from seesr_cli.report import collect

    return " ".join(f"{e.source}: {e.error}" for e in collect(folder) if e.failed)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


def _bomb(path: Path) -> None:
    """A 20000 x 20000 PNG header over a few bytes of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def bad_inputs(folder: Path) -> dict[str, str]:
    """The bad-input matrix: file name -> the cause its error line must give."""
    folder.mkdir(parents=True, exist_ok=True)
    good = rgb_png(folder / "good_source.tmpimg.png")
    data = good.read_bytes()
    good.unlink()
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image at all\n")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    _bomb(folder / "bomb.png")
    Image.fromarray(np.full((4, 4), -5, np.int32)).save(folder / "signed.tif")
    return {"zero.png": "empty", "text.png": "not a recognised image", "corrupt.png": "",
            "truncated.png": "truncated", "bomb.png": "decompression bomb", "signed.tif": "unsupported pixel mode"}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# ----------------------------------------------------------------------------- no models needed


def test_version_and_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"seesr-cli {__version__}"
    for command in ("upscale", "tag", "download", "weights", "info", "report"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["upscale", "a.png", "--scale", "0.5"], "scale must be >= 1"),
    (["upscale", "a.png", "--steps", "0"], "steps must be >= 1"),
    (["upscale", "a.png", "--tile-size", "16", "--tile-overlap", "16"], "tile_overlap (16) must be smaller"),
    (["upscale", "a.png", "--quality", "0"], "--quality"),
    (["upscale", "a.png", "--format", "gif"], "--format"),
    (["upscale", "a.png", "--bogus"], "--bogus"),
    (["upscale", "a.png", "--weights", "no-such-folder"], "--weights no-such-folder: does not exist"),
    (["frobnicate"], "frobnicate"),
])
def test_usage_errors_exit_2_without_traceback(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    rgb_png(tmp_path / "a.png")
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_o_file_name_with_several_inputs_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rgb_png(tmp_path / "in" / "a.png")
    result = invoke("upscale", "in", "-o", "out.png")
    assert result.exit_code == 2 and "error: -o out.png names one file" in result.stderr


def test_dry_run_plans_without_loading_anything(tmp_path):
    """In a fresh interpreter: the plan is printed and neither torch nor any weights are touched."""
    for rel in ("in/a.png", "in/sub/b.png", "in/c.png"):
        rgb_png(tmp_path / rel)
    rgb_png(tmp_path / "in_x4" / "c.png")  # finished earlier
    code = ("import sys; from seesr_cli.cli import app; "
            "code = app(['upscale', 'in', '-r', '--dry-run', '--json', '--seed', '7'], standalone_mode=False); "
            "assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules, 'loaded models'; "
            "sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plan = {Path(p["input"]).as_posix(): p for p in json.loads(done.stdout)["plan"]}
    assert plan["in/a.png"] == {"input": str(Path("in/a.png")), "output": str(Path("in_x4/a.png")),
                                "action": "run", "reason": None, "seed": derive_seed(7, "a.png")}
    assert plan["in/sub/b.png"]["output"] == str(Path("in_x4/sub/b.png"))
    assert (plan["in/c.png"]["action"], plan["in/c.png"]["reason"]) == ("skip", "output exists")
    assert not (tmp_path / "in_x4" / "a.png").exists()


def test_missing_weights_offline_is_one_message_exit_1(tmp_path):
    rgb_png(tmp_path / "a.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEESR_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-home"), HF_HUB_CACHE=str(tmp_path / "empty-hub"))
    done = run_seesr("upscale", "a.png", *FAST, env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("error: ") == 1 and "missing weights" in done.stderr
    assert "go online" in done.stderr and "--weights DIR" in done.stderr and "`seesr weights --help`" in done.stderr
    assert "README" not in done.stderr and "docs/" not in done.stderr  # not in a pipx install
    assert not (tmp_path / "a_x2.png").exists()


def test_bad_inputs_each_get_one_line_and_exit_1(offline, tmp_path):
    """Every bad file is named with its cause; nothing is written; the models are never needed."""
    causes = bad_inputs(tmp_path / "bad")
    result = invoke("upscale", "bad", "nothing-here.png", "-o", "out", *FAST)
    assert result.exit_code == 1
    lines = error_lines(result.stderr)
    assert len(lines) == len(causes) + 1, result.stderr
    for name, cause in causes.items():
        [line] = [x for x in lines if f"{name}:" in x]
        assert cause in line
    assert "error: nothing-here.png: file not found" in lines
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_unreadable_input_is_reported(offline, tmp_path, monkeypatch):
    locked = rgb_png(tmp_path / "locked.png")
    if os.name != "nt" and os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads anything: make the permission check say no for this one file
        real_access = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode, **kw: False if Path(p).resolve() == locked else real_access(p, mode))
    result = invoke("upscale", "locked.png", *FAST)
    assert result.exit_code == 1
    assert error_lines(result.stderr) == ["error: locked.png: permission denied"]


# ----------------------------------------------------------------------------- tag, weights, download


def test_tag_text_json_and_per_tile(offline, tmp_path):
    rgb_png(tmp_path / "a.png", size=(40, 24))
    (tmp_path / "bad.png").write_text("no")
    text = invoke("tag", "a.png", "bad.png")
    assert text.exit_code == 1
    assert text.stdout.startswith("a.png: ") and len(text.stdout.splitlines()) == 1
    assert error_lines(text.stderr) == ["error: bad.png: not a recognised image format (or its header is damaged)"]

    data = invoke("tag", "a.png", "--json", "--per-tile", "--tag-threshold", "0.45")
    assert data.exit_code == 0, data.stderr
    [entry] = json.loads(data.stdout)["images"]
    assert entry["input"] == "a.png"
    assert all(t["probability"] >= 0.45 for t in entry["tags"])
    # 40 x 24 at x4: enlarged to 213 x 128, latent 106 x 64 -> two 96-tiles across
    boxes = [tile["box"] for tile in entry["tiles"]]
    assert len(boxes) == 2 and all(len(b) == 4 for b in boxes)
    assert min(b[0] for b in boxes) == 0 and max(b[0] + b[2] for b in boxes) == 40
    assert all(t["probability"] >= 0.45 for tile in entry["tiles"] for t in tile["tags"])
    # the text form of the same tags is the global hard prompt
    plain = invoke("tag", "a.png", "--threshold", "0.45")  # the old name, a hidden alias
    assert plain.stdout.strip() == "a.png: " + ", ".join(t["tag"] for t in entry["tags"])


def test_weights_table_and_json(offline):
    result = invoke("weights", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["device"], report["dtype"]) == ("cpu", "fp32")
    states = {row["part"]: row["state"] for row in report["weights"]}
    assert set(states) >= {"sd2", "unet", "controlnet", "dape_lora", "ram", "tags", "thresholds", "dape"}
    assert "missing" not in states.values()
    table = invoke("info", "--weights", offline.official, "--device", "cpu")
    assert table.exit_code == 0 and "a run would use device cpu, dtype fp32" in table.stdout
    assert str(offline.official) in table.stdout.replace("\n", "")


def test_weights_reports_missing_parts_with_exit_1(tmp_path, monkeypatch):
    for name in ("SEESR_WEIGHTS", "SEESR_CACHE", "SEESR_SOURCES", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    result = invoke("weights", "--json", "--device", "cpu")
    assert result.exit_code == 1
    assert {row["state"] for row in json.loads(result.stdout)["weights"]} <= {"missing", "not converted yet"}


def test_download_offline_with_everything_cached(offline):
    result = invoke("download", "--quiet")
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert set(lines) == {"sd2", "unet", "controlnet", "dape"} and Path(lines["dape"]).is_file()


# ----------------------------------------------------------------------------- upscaling (tiny models)


def mode_inputs(folder: Path) -> None:
    """RGBA, gray, 16-bit gray, an EXIF-rotated JPEG and, in a subfolder, plain RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = lr()
    alpha = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (16, 1))
    Image.fromarray(np.dstack([pixels, alpha])).save(folder / "rgba.png")
    Image.fromarray(pixels).convert("L").save(folder / "gray.png")
    Image.fromarray((np.asarray(Image.fromarray(pixels).convert("L"), np.uint16) * 257)).save(folder / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=95)
    rgb_png(folder / "sub" / "plain.png", seed=3)


def test_upscale_end_to_end_through_the_entry_point(offline, tmp_path):
    """`python -m seesr_cli upscale` against the fake Hub cache: modes kept, metadata stored,
    bad files reported while the batch goes on, a JSON report on stdout."""
    mode_inputs(tmp_path / "in")
    (tmp_path / "in" / "zero.png").write_bytes(b"")
    (tmp_path / "in" / "text.png").write_text("hello")
    done = run_seesr("upscale", "in", "-r", "-o", "out", "--json", "--seed", "11", *FAST,
                     env=offline.hub.environ(offline.home), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(error_lines(done.stderr)) == [
        f"error: {Path('in/text.png')}: not a recognised image format (or its header is damaged)",
        f"error: {Path('in/zero.png')}: file is empty (0 bytes)"]
    report = {Path(r["input"]).as_posix(): r for r in json.loads(done.stdout)["images"]}
    assert {k: r["status"] for k, r in report.items()} == {
        "in/deep.png": "ok", "in/gray.png": "ok", "in/rgba.png": "ok", "in/rotated.jpg": "ok",
        "in/text.png": "failed", "in/zero.png": "failed", "in/sub/plain.png": "ok"}
    assert "upscaled" in done.stderr  # the summary goes to stderr when stdout carries JSON
    out = tmp_path / "out"
    assert sorted(results(out)) == ["deep.png", "gray.png", "rgba.png", "rotated.png", "sub/plain.png"]
    assert json.loads(done.stdout)["reports"] == [str(Path("out") / "seesr-report.html")]
    items = report_items(out / "seesr-report.html")
    assert sorted(items) == ["deep.png", "gray.png", "rgba.png", "rotated.png", "sub/plain.png"]
    assert "text.png" in failures_shown(out) and "zero.png" in failures_shown(out)

    with Image.open(out / "rgba.png") as im:
        assert (im.mode, im.size) == ("RGBA", (48, 32))
        assert np.asarray(im)[..., 3][:, 0].max() < 40 and np.asarray(im)[..., 3][:, -1].min() > 215
    with Image.open(out / "gray.png") as im:
        assert (im.mode, im.size) == ("L", (48, 32))
    with Image.open(out / "deep.png") as im:
        assert im.mode.startswith("I") and im.size == (48, 32)
        assert int(np.asarray(im).max()) > 255  # 16-bit samples, not 8-bit ones
    with Image.open(out / "rotated.png") as im:
        assert im.size == (32, 48)  # upright: the EXIF rotation was applied
        assert im.getexif().get(0x0112, 1) == 1

    for rel in ("rgba.png", "sub/plain.png"):
        entry = report[f"in/{rel}"]
        meta = read_metadata(out / rel.replace(".jpg", ".png"))
        assert int(meta["seesr:seed"]) == entry["seed"] == derive_seed(11, rel)
        settings = json.loads(meta["seesr:settings"])
        assert (settings["seed"], settings["steps"], settings["scale"]) == (entry["seed"], 2, 2.0)
        assert json.loads(meta["seesr:prompts"]) == entry["prompts"] and entry["prompts"]
        assert meta["seesr:source"] == rel
    assert no_temp_files(tmp_path)


def test_weights_dir_single_file_and_overwrite_protection(weights_env, tmp_path, monkeypatch):
    """--weights DIR with an empty Hub cache; `-o name.jpg` writes exactly that file; a rerun skips
    it (nothing rewritten) unless --overwrite."""
    monkeypatch.chdir(tmp_path)
    for name in ("SEESR_WEIGHTS", "SEESR_CACHE", "SEESR_SOURCES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("SEESR_SOURCES", str(weights_env.hub.sources_json))  # the tiny pickles' sha256
    rgb_png(tmp_path / "photo.png")
    args = ["upscale", "photo.png", "-o", "result.jpg", "--weights", weights_env.official, "--json", *FAST]

    first = invoke(*args)
    assert first.exit_code == 0, first.stderr
    [entry] = json.loads(first.stdout)["images"]
    assert (entry["status"], entry["output"]) == ("ok", "result.jpg")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["photo.png", "result.jpg"]
    with Image.open(tmp_path / "result.jpg") as im:
        assert (im.format, im.size) == ("JPEG", (48, 32))
    stamp, first_pixels = (tmp_path / "result.jpg").stat().st_mtime_ns, np.asarray(Image.open(tmp_path / "result.jpg"))

    again = invoke(*args, "--quiet")
    assert again.exit_code == 0 and again.stderr == ""  # --quiet: no progress, no summary
    assert json.loads(again.stdout)["images"][0]["status"] == "skipped"
    assert (tmp_path / "result.jpg").stat().st_mtime_ns == stamp

    time.sleep(0.01)
    redo = invoke(*args, "--overwrite")
    assert redo.exit_code == 0 and json.loads(redo.stdout)["images"][0]["status"] == "ok"
    assert (tmp_path / "result.jpg").stat().st_mtime_ns != stamp
    # Same derived seed, same pixels (the file differs only in the seconds its metadata records).
    assert np.array_equal(np.asarray(Image.open(tmp_path / "result.jpg")), first_pixels)
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_batch_resumes_without_redoing_anything(offline, tmp_path, how):
    """Stop a real run after its first image; a rerun finishes the rest and touches no finished file."""
    for i in range(4):
        rgb_png(tmp_path / "in" / f"img{i}.png", seed=i, size=(48, 32))
    args = ["upscale", "in", "-o", "out", *FAST, "--steps", "6"]
    env = subprocess_env(offline.hub.environ(offline.home))
    proc = subprocess.Popen([sys.executable, "-m", "seesr_cli", *map(str, args)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a shared machine can be many times slower than usual
        while not (tmp_path / "out" / "img0.png").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "re-run the same command to resume" in stderr and "Traceback" not in stderr
        assert no_temp_files(tmp_path)
    else:
        assert proc.returncode == -signal.SIGKILL
    before = results(tmp_path / "out")
    assert 1 <= len(before) < 4, "not stopped mid-batch"
    if how == signal.SIGINT:  # a stopped run still writes the report of what it finished
        assert sorted(report_items(tmp_path / "out" / "seesr-report.html")) == sorted(before)

    rerun = invoke(*args, "--json")
    assert rerun.exit_code == 0, rerun.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in json.loads(rerun.stdout)["images"]}
    finished = set(before)
    assert statuses == {f"img{i}.png": "skipped" if f"img{i}.png" in finished else "ok" for i in range(4)}
    after = results(tmp_path / "out")
    assert {name: after[name] for name in finished} == {name: before[name] for name in finished}
    assert sorted(after) == [f"img{i}.png" for i in range(4)] and no_temp_files(tmp_path)
    # one report, complete: every image of both runs
    assert sorted(report_items(tmp_path / "out" / "seesr-report.html")) == sorted(after)
    for name in after:
        with Image.open(tmp_path / "out" / name) as im:
            im.load()
            assert im.size == (96, 64)


# ----------------------------------------------------------------------------- progress rendering


def _progress_run(console):
    from seesr_cli.batch import FAILED, OK, RUN, SKIP, SKIPPED, BatchReport, Job, JobResult
    from seesr_cli.cli.progress import BatchProgress
    from seesr_cli.cli.tables import summary_table
    from seesr_cli.pipeline import ProgressEvent
    from seesr_cli.weights import WeightsEvent

    jobs = [Job(Path(f"in/{i}.png"), f"{i}.png", Path(f"out/{i}.png"), "png", i, SKIP if i == 1 else RUN,
                "output exists" if i == 1 else "") for i in range(3)]
    outcomes = [(OK, ""), (SKIPPED, "output exists"), (FAILED, "truncated or corrupt image data")]
    report = BatchReport(seconds=3.0, setup_seconds=1.0)
    with BatchProgress(console) as view:
        view.start(jobs)
        view.status("loading models")
        view.weights_event(WeightsEvent("unet", "verify", 50.0, 100.0))
        for index, (job, (status, error)) in enumerate(zip(jobs, outcomes)):
            view.job_started(job, index, 3)
            for step in range(2):
                for tile in (1, 2):
                    view.pipeline_event(ProgressEvent("denoise", step, 2, tile, 2))
                view.pipeline_event(ProgressEvent("denoise", step + 1, 2, 2, 2))
            view.pipeline_event(ProgressEvent("decode", 0, 1))
            result = JobResult(job, status, error, 1.25 if status == OK else 0.0)
            report.results.append(result)
            view.job_finished(result, index, 3)
    console.print(summary_table(report))
    return console.file.getvalue()


def test_progress_bars_on_a_terminal_and_lines_elsewhere():
    import io

    from rich.console import Console

    live = _progress_run(Console(file=io.StringIO(), force_terminal=True, width=120))
    assert "images" in live and "2/2" in live and "in/2.png" in live  # the last frame drawn
    assert "error: in/2.png: truncated or corrupt image data" in live
    plain = _progress_run(Console(file=io.StringIO(), width=120))
    lines = plain.splitlines()
    assert lines[:5] == ["loading models", "verifying unet ...", "[1/3] ok in/0.png -> out/0.png (1.2 s)",
                         "[2/3] skipped in/1.png (output exists)",
                         "error: in/2.png: truncated or corrupt image data"]
    assert "\x1b[" not in plain
    assert lines[-1] == "seesr: 1 upscaled, 1 skipped, 1 failed in 3.0 s (loading the models: 1.0 s)"


def test_denoise_progress_counts_tile_passes():
    from seesr_cli.cli.progress import denoise_progress
    from seesr_cli.pipeline import ProgressEvent

    events = [ProgressEvent("denoise", 0, 3, 0, 2)]  # as the pipeline emits them: per tile, then per step
    for step in range(3):
        events += [ProgressEvent("denoise", step, 3, tile, 2) for tile in (1, 2)]
        events.append(ProgressEvent("denoise", step + 1, 3, 2, 2))
    seen, last = [], 0
    for event in events:
        seen.append(denoise_progress(event, last))
        last = seen[-1][0]
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 6 and {t for _, t, _ in seen} == {6}
    assert seen[1][2] == "step 1/3, tile 1/2" and seen[-1][2] == "step 3/3, tile 2/2"


def test_a_bug_fails_its_image_and_debug_prints_its_traceback(tmp_path, monkeypatch):
    """An unexpected error in one image is reported as an internal error (not blamed on the file),
    the batch goes on, and `--debug` shows where it happened."""
    import seesr_cli.cli.run as upscale_command
    from seesr_cli.batch import WorkDone

    def work(job, **_):
        if job.input.name == "a.png":
            raise ZeroDivisionError("a bug of ours")
        return WorkDone()

    monkeypatch.setattr(upscale_command, "upscale_job", work)
    rgb_png(tmp_path / "in" / "a.png")
    rgb_png(tmp_path / "in" / "b.png", seed=1)
    plain = CliRunner().invoke(app, ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert plain.exit_code == 1
    assert "a.png: internal error: ZeroDivisionError: a bug of ours" in plain.output
    assert "Traceback" not in plain.output and "1 upscaled, 0 skipped, 1 failed" in plain.output
    debug = CliRunner().invoke(app, ["--debug", "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out2")])
    assert debug.exit_code == 1
    assert "Traceback" in debug.output and "in work" in debug.output and "ZeroDivisionError" in debug.output

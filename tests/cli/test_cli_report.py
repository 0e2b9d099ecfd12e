"""The batch report as `seesr upscale` and `seesr report` write it, and `--accept-local-weights`.

Tiny models from the fake Hub cache (tests/fakehub.py), as in test_cli.py: the fixtures in
conftest.py, the helpers from test_cli.py. The page itself is tested in tests/report/ (and in a
real browser there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_cli import FAST, invoke, report_items, results, rgb_png

from seesr_cli.batch import OutputOptions, plan_batch
from seesr_cli.cli.run import report_folders
from seesr_cli.report import HIDDEN_DIR, REPORT_NAME, collect


def batch_in(folder: Path) -> None:
    rgb_png(folder / "a.png")
    rgb_png(folder / "sub" / "b.png", seed=1)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)


def test_a_run_writes_the_report_and_no_report_opts_out(offline, tmp_path):
    batch_in(tmp_path / "in")
    done = invoke("upscale", "in", "-r", "-o", "out", *FAST)
    assert done.exit_code == 1, done.stderr  # the broken input
    page = tmp_path / "out" / REPORT_NAME
    assert f"report: {Path('out') / REPORT_NAME}" in done.stderr.splitlines()
    assert sorted(report_items(page)) == ["a.png", "sub/b.png"]
    assert [(e.source, e.failed) for e in collect(tmp_path / "out") if e.failed] == [("broken.png", True)]
    assert "broken.png" in page.read_text(encoding="utf-8")

    quiet = invoke("upscale", "in", "-r", "-o", "out2", "--no-report", *FAST)
    assert quiet.exit_code == 1 and "report:" not in quiet.stderr
    assert sorted(results(tmp_path / "out2")) == ["a.png", "sub/b.png"]
    assert not (tmp_path / "out2" / REPORT_NAME).exists() and not (tmp_path / "out2" / HIDDEN_DIR).exists()


def test_seesr_report_rebuilds_it_from_the_outputs_alone(offline, tmp_path):
    batch_in(tmp_path / "in")
    assert invoke("upscale", "in", "-r", "-o", "out", *FAST).exit_code == 1
    out = tmp_path / "out"
    shutil.rmtree(out / HIDDEN_DIR)
    (out / REPORT_NAME).unlink()
    rgb_png(tmp_path / "in" / "c.png", seed=2)
    assert invoke("upscale", "in", "-o", "out", "--no-report", *FAST).exit_code == 1  # c.png added, no report

    rebuilt = invoke("report", "out")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == str(Path("out") / REPORT_NAME)
    assert sorted(report_items(out / REPORT_NAME)) == ["a.png", "c.png", "sub/b.png"]

    missing = invoke("report", "nowhere")
    assert missing.exit_code == 2 and "error: nowhere: no such folder" in missing.stderr


def test_a_report_that_cannot_be_written_is_a_warning(offline, tmp_path, monkeypatch):
    from seesr_cli import report

    def refuse(out_dir, **_):
        raise report.ReportError(f"{out_dir}: cannot write the report: No space left on device")

    monkeypatch.setattr(report, "write_report", refuse)
    rgb_png(tmp_path / "in" / "a.png")
    done = invoke("upscale", "in", "-o", "out", *FAST)
    assert done.exit_code == 0, done.stderr
    assert "warning: no report in out: out: cannot write the report: No space left on device" in done.stderr
    assert sorted(results(tmp_path / "out")) == ["a.png"]


def test_results_beside_their_inputs_or_one_named_file_get_no_report(offline, tmp_path):
    rgb_png(tmp_path / "a.png")
    assert invoke("upscale", "a.png", *FAST).exit_code == 0
    assert invoke("upscale", "a.png", "-o", "big.png", *FAST).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png", "big.png"]


def test_report_folders(tmp_path, monkeypatch):
    """-o OUT, and `D_x4/` for a named folder D; never the inputs' folder, never a single -o file."""
    monkeypatch.chdir(tmp_path)
    rgb_png(tmp_path / "photos" / "a.png")
    rgb_png(tmp_path / "photos" / "deep" / "b.png")
    rgb_png(tmp_path / "loose.png")

    def folders(args, out=None, **kw):
        out = None if out is None else Path(out)
        return report_folders(plan_batch(args, OutputOptions(out, recursive=True, **kw)), out)

    assert folders(["photos"], "big") == [Path("big")]
    assert folders(["photos", "loose.png"]) == [Path("photos_x4")]
    assert folders(["photos/*.png"]) == [] and folders(["loose.png"]) == []
    assert folders(["loose.png"], "one.png") == []
    assert folders(["photos/**/*.png"], "globbed") == [Path("globbed")]


# ----------------------------------------------------------------------------- your own DAPE.pth


@pytest.fixture
def own_weights(weights_env, tmp_path, monkeypatch):
    """The official layout holding the tiny DAPE/RAM pickles, which are not the release files: the
    manifest's real sha256 applies (no SEESR_SOURCES), so they are refused unless accepted."""
    monkeypatch.chdir(tmp_path)
    for name in ("SEESR_WEIGHTS", "SEESR_CACHE", "SEESR_SOURCES", "SEESR_ACCEPT_LOCAL_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    rgb_png(tmp_path / "a.png", size=(40, 24))
    return weights_env.official


def test_own_checkpoints_need_one_flag(own_weights):
    refused = invoke("tag", "a.png", "--weights", own_weights, "--device", "cpu")
    assert refused.exit_code == 1
    assert "not the official release file" in refused.stderr and "--accept-local-weights" in refused.stderr

    accepted = invoke("tag", "a.png", "--weights", own_weights, "--accept-local-weights", "--device", "cpu")
    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.stdout.startswith("a.png: ")
    assert "note: --accept-local-weights" in accepted.stderr and "tensors only" in accepted.stderr
    assert "SEESR_ACCEPT_LOCAL_WEIGHTS" not in os.environ  # for this command only

    listed = invoke("weights", "--weights", own_weights, "--accept-local-weights", "--device", "cpu")
    assert "sha256 mismatch" not in listed.stdout

    no_folder = invoke("tag", "a.png", "--accept-local-weights")
    assert no_folder.exit_code == 2 and "give --weights DIR" in no_folder.stderr


def test_accepted_checkpoints_still_never_unpickle_code(own_weights, tmp_path):
    import torch

    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("ram_swin_large_14m.pth", "ram_tag_list.txt", "ram_tag_list_threshold.txt"):
        (folder / name).symlink_to(own_weights / name)
    torch.save({"lora": os.system}, folder / "DAPE.pth")  # unpickling would import a callable
    done = invoke("tag", "a.png", "--weights", folder, "--accept-local-weights", "--device", "cpu")
    assert done.exit_code == 1
    assert "refused to load" in done.stderr and "system" in done.stderr

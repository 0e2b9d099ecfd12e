"""Odd inputs and outputs a careful user hits (issue 10): symlink loops under `**`, a link beside its
target, -o naming a file or an unwritable format, --suffix with a path in it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from seesr_cli.batch import RUN, SKIP, OutputOptions, discover, plan_batch
from seesr_cli.errors import UsageError

needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


def _within(seconds: float, fn, *args, **kwargs):
    """fn's result, or a test failure if it has not returned after `seconds` (a hang)."""
    box = {}

    def target():
        box["value"] = fn(*args, **kwargs)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} still running after {seconds} s"
    return box["value"]


@needs_symlinks
def test_double_star_glob_over_two_symlink_loops_terminates(tmp_path, monkeypatch):
    """Issue 10, item 4: glob.glob followed `tree/a/up -> tree` forever; -r and `**` now stop at loops."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "tree" / "top.png")
    _img(tmp_path / "tree" / "a" / "b" / "deep.png")
    os.symlink("../..", tmp_path / "tree" / "a" / "b" / "loop1")  # -> tree
    os.symlink("..", tmp_path / "tree" / "a" / "loop2")  # -> tree
    os.symlink(tmp_path / "elsewhere", tmp_path / "tree" / "linked")  # a linked folder is followed
    _img(tmp_path / "elsewhere" / "far.png")
    found, problems = _within(10, discover, ["tree/**/*.png"])
    assert problems == []
    assert sorted(f.rel for f in found) == ["a/b/deep.png", "linked/far.png", "top.png"]
    walked, _ = _within(10, discover, ["tree"], recursive=True)
    assert sorted(f.rel for f in walked) == ["a/b/deep.png", "linked/far.png", "top.png"]


@needs_symlinks
def test_a_link_beside_its_target_is_done_once_and_the_other_skipped_with_a_reason(tmp_path, monkeypatch):
    """Issue 10, item 5: the second path to one file was dropped without a word."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "in" / "a.png")
    os.symlink("a.png", tmp_path / "in" / "link.png")
    for args in (["in"], ["in/*.png"]):
        jobs = {j.input.name: j for j in plan_batch(args, OutputOptions(out=Path("out")))}
        assert jobs["a.png"].action == RUN
        assert jobs["link.png"].action == SKIP
        assert jobs["link.png"].reason == f"the same file as {Path('in/a.png')} (a link), done once"
    named_twice, _ = discover(["in/a.png", "in"])  # the same path twice: listed once, silently
    assert [f.path.name for f in named_twice] == ["a.png", "link.png"]


def test_o_naming_an_existing_file_for_a_folder_is_refused_naming_o(tmp_path, monkeypatch):
    """Issue 10, item 6: found only after loading models and computing, as a message about -o/a.png."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "notes").write_text("a file, not a folder")
    with pytest.raises(UsageError, match=r"^-o notes: an existing file, but the inputs can hold several images"):
        plan_batch(["in"], OutputOptions(out=Path("notes")))
    with pytest.raises(UsageError, match=r"^-o notes(/|\\)sub: notes is a file, not a folder"):
        plan_batch(["in"], OutputOptions(out=Path("notes/sub")))
    with pytest.raises(UsageError, match=r"^-o notes: seesr cannot write a file without an image extension"):
        plan_batch(["in/a.png"], OutputOptions(out=Path("notes")))


@pytest.mark.parametrize("name", ["x.gif", "x.bmp"])
def test_o_with_an_unwritable_image_format_is_refused_not_made_a_folder(tmp_path, monkeypatch, name):
    """Issue 10, item 9: `-o x.gif` for one file created a folder x.gif/."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "a.png")
    with pytest.raises(UsageError, match=rf"^-o {name}: seesr cannot write {name[2:].upper()} images; name a .png"):
        plan_batch(["a.png"], OutputOptions(out=Path(name)))
    assert not (tmp_path / name).exists()
    jobs = plan_batch(["a.png"], OutputOptions(out=Path("results.v2")))  # not an image extension: a folder
    assert jobs[0].output == Path("results.v2") / "a.png"


@pytest.mark.parametrize("suffix", ["../x", "/x", "a/b", "..", "x\\y"])
def test_suffix_with_a_path_in_it_is_a_usage_error(suffix):
    """Issue 10, item 9: `--suffix ../x` was "internal error: ValueError" with exit 1."""
    with pytest.raises(UsageError, match=r"^--suffix .*must be part of a file name"):
        OutputOptions(suffix=suffix)
    OutputOptions(suffix="_big.v2")  # dots inside a name are fine

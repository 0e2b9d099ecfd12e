"""seesr_cli.report: collecting results from metadata, recording runs, previews, the page.

Outputs are written with `imageio.save_image` exactly as `seesr upscale` writes them (png, jpg,
webp, 16-bit tiff), with the full metadata contract or only the five keys of older versions.
The "model" is a bicubic upscale with a colour twist, so before and after differ.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from seesr_cli.io import load_image, save_image
from seesr_cli.report import (
    HIDDEN_DIR,
    REPORT_NAME,
    Outcome,
    ReportError,
    _io,
    collect,
    previews,
    record_run,
    write_report,
)

SCALE = 4
TAGS = ["sky", "tree", "building", "road", "car", "person", "cloud", "grass", "window", "sign"]
SETTINGS = {"added_prompt": "clean, high-resolution, 8k", "color_fix": "adain", "device": "cpu",
            "dtype": "fp32", "process_size": 512, "sampler": "ddpm", "scale": 4.0, "steps": 50,
            "tile_size": 128, "tile_overlap": 64}


# ----------------------------------------------------------------------------- building a batch


def draw_input(path: Path, size=(48, 32), seed=0, mode="RGB") -> Path:
    """A small picture with shapes, so previews show something."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([60 + x * 150 / w, 70 + y * 120 / h, 160 - x * 60 / w], -1) + rng.integers(0, 20, (h, w, 3))
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(3, max(4, h // 3))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":  # 16-bit grayscale: a 16-bit source gives a 16-bit TIFF result
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
    im.save(path)
    return path


def tile_boxes(w: int, h: int, tile: int = 96, overlap: int = 48) -> list[list[int]]:
    def starts(n):
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, tile - overlap))
        return s + [n - tile]
    return [[x, y, min(tile, w), min(tile, h)] for y in starts(h) for x in starts(w)]


def contract_metadata(src: Path, rel: str, in_size, out_size, seed: int, *, notes=(), old=False) -> dict:
    """What the pipeline writes (issue 11); `old`: only the five keys of earlier versions."""
    boxes = tile_boxes(*out_size)
    tiles = [{"box": b, "tags": [TAGS[(i + seed) % len(TAGS)], TAGS[(i * 3 + 1) % len(TAGS)]],
              "prompt": f"{TAGS[(i + seed) % len(TAGS)]}, {TAGS[(i * 3 + 1) % len(TAGS)]}"}
             for i, b in enumerate(boxes)]
    meta = {"seesr:seed": str(seed), "seesr:base-seed": "0", "seesr:source": rel,
            "seesr:prompts": json.dumps([t["prompt"] for t in tiles]),
            "seesr:settings": json.dumps({**SETTINGS, "seed": seed}, sort_keys=True)}
    if old:
        return meta
    run = {"seesr_cli": "0.1.0", "torch": "2.5.1", "diffusers": "0.35.0", "transformers": "5.17.0",
           "device": "cpu", "dtype": "fp32", "threads": 2, "tile": 128, "overlap": 64, "tile_batch": 1,
           "vae_encoder_tile": 1024, "vae_decoder_tile": 224, "input_size": list(in_size),
           "output_size": list(out_size), "weights": {"unet": "sha256:1234abcd", "dape": "sha256:feed5678"},
           "timings": {"dape": 0.41 + seed / 100, "text": 0.08, "vae_encode": 0.9, "denoise": 12.5,
                       "vae_decode": 2.1, "colorfix": 0.05},
           "notes": list(notes)}
    meta.update({"seesr:input": str(src.absolute()), "seesr:run": json.dumps(run),
                 "seesr:tiles": json.dumps(tiles)})
    return meta


def make_output(src: Path, out_path: Path, rel: str, seed: int = 1, *, notes=(), old=False) -> Path:
    """`src` "upscaled" and written by save_image with the metadata contract."""
    loaded = load_image(src)
    w, h = loaded.size
    up = np.asarray(loaded.rgb.resize((w * SCALE, h * SCALE), Image.Resampling.BICUBIC)).astype(np.int16)
    result = np.clip(up[..., [1, 2, 0]] * 1.1 - 10, 0, 255).astype(np.uint8)  # visibly not bicubic
    meta = contract_metadata(src, rel, (w, h), (w * SCALE, h * SCALE), seed, notes=notes, old=old)
    return save_image(result, loaded, out_path, metadata=meta)


def make_batch(root: Path, *, input_size=(48, 32)) -> dict:
    """in/ with 4 good inputs and 1 broken one; out/ with png, jpg, webp and 16-bit tiff results;
    the run recorded with the broken input's failure. Returns the paths."""
    inp, out = root / "in", root / "out"
    specs = [("a.png", "a.png", "RGB", ()), ("sub/b.png", "sub/b.jpg", "RGB", ("EXIF orientation 6 applied",)),
             ("c.png", "c.webp", "RGB", ()), ("d16.png", "d16.tif", "I;16", ("VAE decoder tiles 224 -> 160 (memory)",))]
    outcomes, outputs = [], {}
    for i, (src_rel, out_rel, mode, notes) in enumerate(specs):
        src = draw_input(inp / src_rel, input_size, seed=i, mode=mode)
        outputs[out_rel] = make_output(src, out / out_rel, src_rel, seed=100 + i, notes=notes)
        outcomes.append(Outcome(src, outputs[out_rel], "ok", source=src_rel))
    bad = inp / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    outcomes.append(Outcome(bad, out / "broken.png", "failed", "truncated or corrupt image data (broken PNG file)",
                            source="broken.png"))
    record_run(out, outcomes, seconds=61.5)
    return {"in": inp, "out": out, "outputs": outputs, "bad": bad}


def report_data(report: Path) -> dict:
    text = report.read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL).group(1)
    return json.loads(raw)


@pytest.fixture
def batch(tmp_path):
    return make_batch(tmp_path)


# ----------------------------------------------------------------------------- collect


def test_collect_reads_every_format_and_the_failure(batch):
    entries = collect(batch["out"])
    ok = {e.rel: e for e in entries if not e.failed}
    assert sorted(ok) == ["a.png", "c.webp", "d16.tif", "sub/b.jpg"]
    assert {e.fmt for e in ok.values()} == {"PNG", "JPEG", "WEBP", "TIFF"}
    a = ok["a.png"]
    assert (a.seed, a.base_seed, a.source, a.size) == (100, 0, "a.png", (192, 128))
    assert a.input == batch["in"] / "a.png" and a.input_exists
    assert a.run["timings"]["denoise"] == 12.5 and a.settings["sampler"] == "ddpm"
    assert a.tiles[0] == {"box": [0, 0, 96, 96], "tags": ["sky", "tree"], "prompt": "sky, tree"}
    assert ok["sub/b.jpg"].run["notes"] == ["EXIF orientation 6 applied"]
    (failure,) = [e for e in entries if e.failed]
    assert failure.source == "broken.png" and "corrupt" in failure.error and failure.input == batch["bad"].absolute()


def test_collect_skips_foreign_images_hidden_folder_and_temp_files(batch):
    out = batch["out"]
    Image.new("RGB", (8, 8)).save(out / "not-ours.png")
    (out / ".a.png.tmp-1234").write_bytes((out / "a.png").read_bytes())
    (out / HIDDEN_DIR / "previews" / "x.png").write_bytes((out / "a.png").read_bytes())
    nested = out / "sub" / HIDDEN_DIR
    nested.mkdir()
    (nested / "y.png").write_bytes((out / "a.png").read_bytes())
    assert sorted(e.rel for e in collect(out) if not e.failed) == ["a.png", "c.webp", "d16.tif", "sub/b.jpg"]


def test_older_results_have_only_the_five_keys(tmp_path):
    src = draw_input(tmp_path / "in" / "old.png")
    make_output(src, tmp_path / "out" / "old.png", "old.png", seed=7, old=True)
    (entry,) = collect(tmp_path / "out")
    assert (entry.seed, entry.input, entry.run, entry.tiles) == (7, None, {}, ())
    assert len(entry.prompts) == 6 and entry.settings["seed"] == 7
    item = report_data(write_report(tmp_path / "out"))["items"][0]
    assert item["input"] is None and item["b"] is None and item["prompts"] and item["t"] == []


def test_record_run_gives_older_results_their_before_preview(tmp_path):
    src = draw_input(tmp_path / "in" / "old.png")
    out = make_output(src, tmp_path / "out" / "old.png", "old.png", old=True)
    record_run(tmp_path / "out", [Outcome(src, out, "ok")])
    item = report_data(write_report(tmp_path / "out"))["items"][0]
    assert item["b"] and item["B"]


# ----------------------------------------------------------------------------- failures and runs


def test_failure_disappears_once_the_input_succeeds(batch):
    out, bad = batch["out"], batch["bad"]
    record_run(out, [Outcome(batch["in"] / "a.png", out / "a.png", "skipped", "output exists")])
    assert [e.source for e in collect(out) if e.failed] == ["broken.png"]  # another input's success
    draw_input(bad)
    record_run(out, [Outcome(bad, out / "broken.png", "ok")])
    assert not [e for e in collect(out) if e.failed]
    assert json.loads((out / HIDDEN_DIR / "failures.json").read_text()) == {}


def test_failure_hidden_when_another_process_wrote_the_result(batch):
    out, bad = batch["out"], batch["bad"]
    draw_input(bad)
    make_output(bad, out / "broken.png", "broken.png")  # recorded by no run here
    assert not [e for e in collect(out) if e.failed]


def test_runs_are_logged_and_the_last_one_is_in_the_header(batch):
    out = batch["out"]
    record_run(out, [Outcome(batch["in"] / "a.png", out / "a.png", "skipped")], seconds=0.2, interrupted=True)
    runs = json.loads((out / HIDDEN_DIR / "runs.json").read_text())
    assert [(r["ok"], r["skipped"], r["failed"], r["interrupted"]) for r in runs] == [(4, 0, 1, False), (0, 1, 0, True)]
    page = write_report(out).read_text()
    assert "1 skipped" in page and "interrupted" in page


def test_record_run_takes_batch_job_results(tmp_path):
    from seesr_cli.batch import FAIL, Job, JobResult

    job = Job(tmp_path / "x.png", "x.png", tmp_path / "out" / "x.png", "png", 1, FAIL, "not an image")
    (tmp_path / "out").mkdir()
    record_run(tmp_path / "out", [JobResult(job, "failed", "not a recognised image format")])
    (failure,) = collect(tmp_path / "out")
    assert (failure.source, failure.error) == ("x.png", "not a recognised image format")


# ----------------------------------------------------------------------------- previews


def test_report_layout_and_previews(batch):
    out = batch["out"]
    report = write_report(out)
    assert report == out / REPORT_NAME
    data = report_data(report)
    items = {i["name"]: i for i in data["items"]}
    assert sorted(items) == ["a.png", "c.webp", "d16.tif", "sub/b.jpg"]
    for name, item in items.items():
        for key in ("a", "b", "A", "B", "href"):
            assert (out / item[key]).is_file(), (name, key)
        with Image.open(out / item["B"]) as before, Image.open(out / item["A"]) as after:
            assert before.size == after.size == (item["w"], item["h"]) == (192, 128)
        with Image.open(out / item["a"]) as a, Image.open(out / item["b"]) as b:
            assert a.size == b.size
    assert items["a.png"]["A"] == "a.png" and items["sub/b.jpg"]["A"] == "sub/b.jpg"
    assert items["d16.tif"]["A"].startswith(f"{HIDDEN_DIR}/previews/") and items["d16.tif"]["A"].endswith(".jpg")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_before_is_the_bicubic_upscale_of_the_input(batch):
    item = {i["name"]: i for i in report_data(write_report(batch["out"]))["items"]}["a.png"]
    expected = load_image(batch["in"] / "a.png").rgb.resize((192, 128), Image.Resampling.BICUBIC)
    with Image.open(batch["out"] / item["B"]) as before:
        diff = np.abs(np.asarray(before.convert("RGB"), np.int16) - np.asarray(expected, np.int16))
    assert diff.mean() < 3  # JPEG at quality 88


def test_previews_and_metadata_are_reused(batch, monkeypatch):
    out = batch["out"]
    write_report(out)
    calls = []
    monkeypatch.setattr(_io, "load_image", lambda *a, **k: calls.append(a) or load_image(*a, **k))
    monkeypatch.setattr(_io, "read_metadata", lambda *a, **k: calls.append(a) or {})
    before = {p.name: p.stat().st_mtime_ns for p in (out / HIDDEN_DIR / "previews").iterdir()}
    write_report(out)
    assert calls == []
    assert {p.name: p.stat().st_mtime_ns for p in (out / HIDDEN_DIR / "previews").iterdir()} == before


def test_missing_previews_are_made_again_while_the_input_exists(batch):
    out = batch["out"]
    write_report(out)
    for p in (out / HIDDEN_DIR / "previews").iterdir():
        p.unlink()
    items = report_data(write_report(out))["items"]
    assert all(i["b"] and (out / i["b"]).is_file() and (out / i["a"]).is_file() for i in items)


def test_input_gone_the_card_shows_the_result_and_says_so(batch):
    out = batch["out"]
    for p in (out / HIDDEN_DIR / "previews").iterdir():
        p.unlink()
    (batch["in"] / "c.png").unlink()
    item = {i["name"]: i for i in report_data(write_report(out))["items"]}["c.webp"]
    assert item["gone"] and item["b"] is None and item["B"] is None
    assert (out / item["a"]).is_file() and item["A"] == "c.webp"


def test_rewritten_output_gets_new_previews_and_old_ones_go(batch, monkeypatch):
    out = batch["out"]
    old = set((out / HIDDEN_DIR / "previews").iterdir())
    os.utime(out / "a.png", ns=(1, 1))
    monkeypatch.setattr(previews, "PRUNE_GRACE_SECONDS", -1.0)
    write_report(out)
    now = set((out / HIDDEN_DIR / "previews").iterdir())
    assert len(now - old) == 3 and len(old - now) == 3  # after-s, before-s, before of a.png


def test_prune_spares_recent_previews_of_other_processes(batch):
    out = batch["out"]
    n = len(list((out / HIDDEN_DIR / "previews").iterdir()))
    assert previews.prune(out, set()) == 0
    assert len(list((out / HIDDEN_DIR / "previews").iterdir())) == n


# ----------------------------------------------------------------------------- the page


def test_page_is_self_contained_and_escapes_names(tmp_path):
    src = draw_input(tmp_path / "in" / "x.png")
    make_output(src, tmp_path / "out" / "we</script><b>ird #1.png", "we</script><b>ird #1.png")
    page = write_report(tmp_path / "out").read_text(encoding="utf-8")
    assert page.count("</script>") == 2 and "<b>ird" not in page
    assert not re.search(r"(https?:)?//[a-z]", page.replace("file:", ""), re.IGNORECASE)  # no network reference
    assert not re.search(r"<(link|iframe|object|embed)\b|@import|url\(", page)
    item = report_data(tmp_path / "out" / REPORT_NAME)["items"][0]
    assert item["href"] == "we%3C/script%3E%3Cb%3Eird%20%231.png"


def test_settings_and_environment_are_stored_once(batch):
    data = report_data(write_report(batch["out"]))
    assert len(data["settings"]) == 1 and "seed" not in data["settings"][0]
    assert len(data["envs"]) == 1 and "timings" not in data["envs"][0]
    assert {i["set"] for i in data["items"]} == {0}


def test_report_of_an_empty_folder(tmp_path):
    data = report_data(write_report(tmp_path))
    assert data["items"] == []


def test_errors_are_typed(tmp_path):
    with pytest.raises(ReportError, match="no such folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReportError, match="not a folder"):
        record_run(tmp_path / "f", [])


def test_library_is_silent(batch, capsys):
    write_report(batch["out"])
    assert capsys.readouterr() == ("", "")


def test_report_imports_the_rest_of_seesr_cli_in_one_place():
    package = Path(__file__).resolve().parents[2] / "seesr_cli" / "report"
    for path in package.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+(seesr_cli\S*)", path.read_text(), re.MULTILINE)
        assert path.name == "_io.py" or not imports, (path.name, imports)

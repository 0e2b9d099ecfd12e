"""What people read: `--help` (metavars, glossary, one name per idea), the progress view's labels and
counters, the `seesr weights` table at 80 and 100 columns with its next step, and the one weights size
the docs and the help give. No models: these run in seconds.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from seesr_cli.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("upscale", "tag", "download", "weights", "report")


def help_text(*args: str, columns: int = 100) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns), "TERM": "dumb"},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_has_plain_metavars(command):
    text = help_text(*filter(None, [command]))
    assert "<bool>" not in text and "<list" not in text and "<int>" not in text and "<str>" not in text
    assert not re.search(r"\{\w+\}", text), "the usage line names arguments like INPUT..., not {inputs}"
    flag_rows = [line for line in text.splitlines() if re.search(r"│ --(help|json|quiet|recursive) ", line)]
    for row in flag_rows:  # nothing between a flag and its help text
        assert re.search(r"--[\w-]+(\s+-\w)?\s{2,}[A-Z]", row), row


def test_usage_lines_read_as_people_write_them():
    assert "Usage: seesr upscale [OPTIONS] INPUT..." in help_text("upscale")
    assert "Usage: seesr tag [OPTIONS] INPUT..." in help_text("tag")
    assert "Usage: seesr report [OPTIONS] OUT" in help_text("report")
    upscale = help_text("upscale", columns=200)
    for option, metavar in (("--output", "OUT"), ("--weights", "DIR"), ("--format", "png|jpg|webp|tiff|same"),
                            ("--steps", "INT"), ("--scale", "FLOAT"), ("--devices", "LIST")):
        assert re.search(rf"{option}\s.*?\s{re.escape(metavar)}\s", upscale), option


def test_root_help_explains_the_terms_in_one_glossary():
    text = help_text(columns=80)
    for term in ("DAPE", "LRE", "latent pixels"):
        assert re.search(rf"^\s+{term}\s{{2,}}\S", text, re.MULTILINE), term
    assert "8x8 output" in text and "--start lr" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "https://github.com/seesr-cli/seesr-cli" in text


def test_one_option_name_per_idea():
    upscale, tag = help_text("upscale", columns=200), help_text("tag", columns=200)
    assert "--tag-threshold" in upscale and "--tag-threshold" in tag
    assert "--threshold " not in tag.replace("--tag-threshold", "")  # the old name is hidden...
    runner = CliRunner()
    both = runner.invoke(app, ["tag", "x.png", "--threshold", "0.5", "--tag-threshold", "0.6"])
    assert both.exit_code == 2 and "contradicts" in both.stderr  # ...but still parsed
    assert "turbo" not in tag.lower()
    for option in ("--weights", "--device", "--json", "--scale", "--tile-size", "--tile-overlap",
                   "--accept-local-weights"):
        assert option in upscale and option in tag, option


def test_weights_help_carries_the_layout_a_message_points_to():
    text = help_text("weights", columns=120)
    for name in ("stable-diffusion-2-base/", "seesr/unet/", "seesr/controlnet/", "DAPE.pth",
                 "ram_swin_large_14m.pth", "--accept-local-weights", "13.8 GB"):
        assert name in text, name


def test_no_message_points_at_a_file_an_install_lacks():
    """A pipx install has the package, not the repository: no README or docs/ in messages or help."""
    package = REPO_ROOT / "seesr_cli"
    offenders = []
    for path in package.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            strings = re.findall(r"(['\"])(.*?)\1", code)
            if any(re.search(r"\bREADME\b|\bdocs/", text) and "/blob/main/" not in text for _, text in strings):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    # the source checkout test in weights/cache.py looks for the file; it tells nobody to read it
    offenders = [o for o in offenders if "is_file()" not in o]
    assert offenders == []


# ----------------------------------------------------------------------------- one weights size


def test_weights_size_is_the_manifests_sum_everywhere():
    from seesr_cli.cli.help import WEIGHTS_SIZE
    from seesr_cli.weights.manifest import SEESR_KEYS, SOURCES

    total = sum(s.size_bytes for s in SOURCES if s.key in SEESR_KEYS)
    assert WEIGHTS_SIZE == f"{total / 1e9:.1f} GB"
    for doc in ("README.md", "docs/CLI.md", "weights/README.md"):
        text = (REPO_ROOT / doc).read_text(encoding="utf-8")
        assert WEIGHTS_SIZE in text, doc
        flat = " ".join(text.split())
        sizes = set(re.findall(r"[Ww]eights\W[^.]{0,40}?(\d+(?:\.\d+)?) GB", flat))
        sizes |= set(re.findall(r"(\d+(?:\.\d+)?) GB[^.]{0,25}\Wweights", flat))
        assert sizes and sizes <= {WEIGHTS_SIZE.split()[0], "5.2"}, (doc, sizes)  # 5.2 GB: SD-Turbo
        assert not re.search(r"\b1[24] GB", flat), doc  # the two figures the docs gave before


def test_accept_local_is_passed_down_not_set_in_the_environment(monkeypatch):
    """--accept-local-weights reaches the weights as an argument; the command leaves os.environ alone."""
    from seesr_cli.cli.options import accept_local_weights
    from seesr_cli.weights.resolve import ACCEPT_LOCAL_ENV

    monkeypatch.delenv(ACCEPT_LOCAL_ENV, raising=False)
    assert accept_local_weights(True, Path("w"), note=False) is True and ACCEPT_LOCAL_ENV not in os.environ
    assert accept_local_weights(False, Path("w"), note=False) is False
    monkeypatch.setenv(ACCEPT_LOCAL_ENV, "1")  # the environment's spelling of the flag
    assert accept_local_weights(False, Path("w"), note=False) is True


# ----------------------------------------------------------------------------- progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shown(view) -> str:
    """The live display's rows as text, as a terminal would show them now."""
    progress = view.progress
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.file.getvalue()


def image_row(view) -> str:
    return next(line for line in shown(view).splitlines() if "in/" in line or "loading" in line)


def test_progress_labels_counters_and_eta_are_right():
    """The first image: "loading models" while they load, then its own name; the tile counter reaches
    n/n at the end of each step and of the image; the ETA appears after two tile passes, even when a
    pass takes longer than rich's default speed window (a CPU run)."""
    from seesr_cli.batch import RUN, Job
    from seesr_cli.cli.progress import BatchProgress
    from seesr_cli.pipeline import ProgressEvent

    clock = Clock()
    jobs = [Job(Path(f"in/{i}.png"), f"{i}.png", Path(f"out/{i}.png"), "png", i, RUN) for i in range(2)]
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    with BatchProgress(console, clock=clock) as view:
        view.start(jobs)
        view.job_started(jobs[0], 0, 2)
        assert "in/0.png" in image_row(view)
        view.status("loading models")  # the pipeline loads on first use, inside the first image
        assert "loading models" in image_row(view)
        view.pipeline_event(ProgressEvent("prompts", 0, 1))
        assert "in/0.png" in image_row(view) and "loading models" not in shown(view)
        view.pipeline_event(ProgressEvent("denoise", 0, 3, 0, 2))
        assert "step 1/3, tile 0/2" in image_row(view)
        seen = []
        for step in range(3):
            for tile in (1, 2):
                clock.now += 45.0  # one tile pass: longer than rich's 30 s default window
                view.pipeline_event(ProgressEvent("denoise", step, 3, tile, 2))
                seen.append(image_row(view))
            view.pipeline_event(ProgressEvent("denoise", step + 1, 3, 0, 2))  # the step is done
            seen.append(image_row(view))
        assert "step 1/3, tile 2/2" in seen[2] and "step 3/3, tile 2/2" in seen[-1]
        assert "step 2/3, tile 1/2" in seen[3]
        etas = [re.findall(r"\d+:\d\d:\d\d", row)[-1] for row in seen]
        assert etas[1] == "0:03:00"  # 4 passes left at 45 s each, known after the second pass
        assert etas[4] == "0:01:30"
        view.pipeline_event(ProgressEvent("decode", 0, 1))
        assert "decoding" in image_row(view)

        view.job_started(jobs[1], 1, 2)  # the next image: its own name, a fresh counter
        assert "in/1.png" in image_row(view) and "step" not in image_row(view)


def test_denoise_counter_reaches_n_of_n_with_one_tile():
    from seesr_cli.cli.progress import denoise_progress
    from seesr_cli.pipeline import ProgressEvent

    labels = [denoise_progress(ProgressEvent("denoise", done, 2, tile, 1))[2]
              for done, tile in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))]
    assert labels == ["step 1/2, tile 0/1", "step 1/2, tile 1/1", "step 1/2, tile 1/1", "step 2/2, tile 1/1",
                      "step 2/2, tile 1/1"]


# ----------------------------------------------------------------------------- seesr weights


def status(key, state, *, local=False, size=None, path=None, detail=""):
    from seesr_cli.weights import WeightStatus

    source = "local: /w" if local else f"org/{key}@main: {key}/"
    return WeightStatus(key, f"the {key} part", source, path, size, state, "Apache-2.0", detail)


SIZES = {"sd2": 1_700_000_000, "unet": 4_510_000_000, "ram": 5_630_000_000}


@pytest.mark.parametrize("rows, offline, expected", [
    ([status("sd2", "verified"), status("unet", "missing"), status("ram", "missing")], False,
     "run `seesr download` to fetch the 2 missing parts (10.1 GB)"),
    ([status("sd2", "verified"), status("unet", "missing")], True, "go online (unset HF_HUB_OFFLINE)"),
    ([status("ram", "sha256 mismatch", local=True)], False, "--accept-local-weights"),
    ([status("ram", "sha256 mismatch", path=Path("/c/ram.pth"))], False, "delete /c/ram.pth"),
    ([status("sd2", "not verified yet")], False, "`seesr weights --verify`"),
    ([status("sd2", "verified"), status("dape", "converted")], False, "all set"),
])
def test_weights_next_step(rows, offline, expected):
    from seesr_cli.cli.tables import weights_next_step

    assert expected in weights_next_step(rows, SIZES, offline=offline)


@pytest.mark.parametrize("columns", [80, 100])
def test_weights_table_fits_the_terminal(columns, tmp_path, monkeypatch):
    """`seesr weights` with nothing downloaded and a long cache path: every line within COLUMNS, each part
    named at the start of a line, and the next step last."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(deep))
    for name in ("SEESR_WEIGHTS", "SEESR_CACHE", "SEESR_SOURCES", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["weights", "--device", "cpu"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns, result.stdout
    starts = [line.split()[0] for line in lines if line[:1].strip()]
    assert starts[:8] == ["sd2", "unet", "controlnet", "dape_lora", "ram", "tags", "thresholds", "dape"]
    assert "next: go online" in result.stdout and "seesr download" in result.stdout
    assert "13.8 GB" in " ".join(" ".join(lines).split())


def test_weights_table_shows_the_path_whole_in_a_pipe(tmp_path):
    """Without COLUMNS (a pipe, a log): rows never fold, so a path can be copied."""
    from seesr_cli.cli.tables import weights_table

    path = tmp_path / ("x" * 150) / "model.safetensors"
    console = Console(file=io.StringIO(), width=4096)
    console.print(weights_table([status("unet", "verified", size=4_510_000_000, path=path)]))
    text = console.file.getvalue()
    assert f"at {path}" in text and "verified, 4.5 GB" in text


def test_sizes_read_like_the_docs():
    from seesr_cli.cli.tables import size_text

    assert [size_text(v) for v in (13_807_272_000, 7_200_000, 42_000, 12)] == ["13.8 GB", "7.2 MB", "42.0 kB", "12 B"]


def test_weights_dir_help_and_messages_name_no_json_file():
    """Accepting your own DAPE.pth is one flag, not a SEESR_SOURCES JSON file."""
    from seesr_cli.weights.hub import Located
    from seesr_cli.weights.manifest import sources
    from seesr_cli.weights.verify import _mismatch_message

    loc = Located(sources()["dape_lora"], Path("/w"), ("DAPE.pth",), local=True)
    message = _mismatch_message(loc, Path("/w/DAPE.pth"), "a" * 64, "b" * 64)
    assert "--accept-local-weights" in message and "SEESR_SOURCES" not in message


def test_the_urls_messages_give_are_the_projects():
    tomllib = pytest.importorskip("tomllib")
    from seesr_cli.cli.help import DOCS_URL, HOMEPAGE, ISSUES_URL

    urls = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert (urls["Homepage"], urls["Documentation"], urls["Issues"]) == (HOMEPAGE, DOCS_URL, ISSUES_URL)


def test_offline_download_does_not_send_you_back_to_itself(tmp_path, monkeypatch):
    for name in ("SEESR_WEIGHTS", "SEESR_CACHE", "SEESR_SOURCES", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["download", "--quiet"])
    assert result.exit_code == 1
    assert "go online (unset HF_HUB_OFFLINE)" in result.stderr and "--weights DIR" in result.stderr
    assert "seesr download" not in result.stderr and "README" not in result.stderr

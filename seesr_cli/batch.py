"""A batch: which files, where each result goes, what is skipped, each image's seed; then the run.

Planning is a pure function of the arguments and the file system: every process of a
multi-process run (issue 5) computes the same job list and takes its own share with
`shard_jobs`. A job's seed comes from the base seed and the image's path relative to
the folder the user named, never from its position or the process running it, so a
result does not depend on how the work was split. Each job has its own output path and
`imageio.save_image` writes atomically, so no two processes ever write one file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from seesr_cli.errors import Cancelled, InputImageError, SeesrError, UsageError, WeightsError
from seesr_cli.imageio import IMAGE_EXTENSIONS, OUTPUT_EXTENSIONS, OutputExistsError, output_format_for

RUN, SKIP, FAIL = "run", "skip", "fail"  # planned actions
OK, SKIPPED, FAILED = "ok", "skipped", "failed"  # outcomes
T = TypeVar("T")


# ----------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class InputFile:
    path: Path  # as the user can find it (not resolved)
    root: Path  # the folder the user named, the glob's fixed prefix, or a named file's folder
    rel: str  # POSIX path below root: names the output and derives the seed


def _is_glob(arg: str) -> bool:
    return any(ch in arg for ch in "*?[") and not os.path.lexists(arg)


def _glob_root(arg: str) -> Path:
    """The leading components of a pattern that hold no wildcard."""
    parts = Path(arg).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if _is_glob(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walk(folder: Path, recursive: bool, exclude: Path | None) -> Iterable[Path]:
    """Images in `folder` (and below when recursive), sorted; hidden entries and `exclude` skipped."""
    for base, dirs, files in os.walk(folder):
        here = Path(base)
        dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".")
                         and not (exclude is not None and _same(here / d, exclude)))
        yield from (here / name for name in sorted(files) if _is_image_name(name))


def _same(a: Path, b: Path) -> bool:
    return _key(a) == _key(b)


def _key(path: Path) -> str:
    """Identity of a path on this file system (case-insensitive where the OS is)."""
    return os.path.normcase(os.path.realpath(path))


def discover(args: Sequence[str], *, recursive: bool = False,
             exclude: Path | None = None) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Files, folders and glob patterns (expanded here too, for shells that do not) -> input files.

    Returns the files (each once, in argument order) and (argument, cause) for arguments that
    name nothing usable; the batch reports those and goes on.
    """
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    for arg in args:
        path = Path(arg)
        if _is_glob(arg):
            root = _glob_root(arg)
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_image_name(m.name)]
            for folder in (m for m in matches if m.is_dir()):
                files += list(_walk(folder, recursive, exclude))
            if not files:
                problems.append((arg, "no images match this pattern"))
            found += [InputFile(f, root, f.relative_to(root).as_posix()) for f in files]
        elif path.is_dir():
            files = list(_walk(path, recursive, exclude))
            if not files:
                hint = "" if recursive else " (use --recursive to include subfolders)"
                problems.append((arg, f"no images found in this folder{hint}"))
            found += [InputFile(f, path, f.relative_to(path).as_posix()) for f in files]
        elif os.path.lexists(path):
            found.append(InputFile(path, path.parent, path.name))
        else:
            problems.append((arg, "file not found"))
    unique: dict[str, InputFile] = {}
    for item in found:
        unique.setdefault(_key(item.path), item)
    return list(unique.values()), problems


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class OutputOptions:
    """Where results go. `out` None: `<folder>_x4/` beside a named folder, `<name>_x4.png` beside a file."""

    out: Path | None = None
    fmt: str | None = None  # png | jpg | webp | tiff | same; None: png, or -o's extension
    suffix: str | None = None  # None: "" inside an output folder, "_x<scale>" beside the input
    scale: float = 4.0
    overwrite: bool = False
    recursive: bool = False


@dataclass(frozen=True)
class Job:
    input: Path
    rel: str
    output: Path | None
    fmt: str
    seed: int
    action: str  # run | skip | fail
    reason: str = ""
    overwrite: bool = False


def derive_seed(base: int, rel: str) -> int:
    """A 63-bit seed from the base seed and the image's relative path (never its order or rank)."""
    digest = hashlib.sha256(f"{base}:{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def scale_label(scale: float) -> str:
    return f"x{scale:g}"


def _format_for(options: OutputOptions, src: Path) -> tuple[str, str]:
    """(format, extension): "same" keeps a writable source format and its spelling of the extension."""
    wanted = options.fmt or "png"
    if wanted != "same":
        fmt = output_format_for(wanted)
        return fmt, OUTPUT_EXTENSIONS[fmt]
    try:
        fmt = output_format_for(src.suffix)
    except UsageError:  # GIF, BMP, ...: not written by us
        return "png", OUTPUT_EXTENSIONS["png"]
    return fmt, src.suffix


def _single_file_target(args: Sequence[str], options: OutputOptions) -> bool:
    """`-o name.ext` for one named file writes exactly that file."""
    out = options.out
    if out is None or out.is_dir() or not out.suffix:
        return False
    try:
        output_format_for(out.suffix)
    except UsageError:
        return False
    if len(args) == 1 and not _is_glob(args[0]) and not Path(args[0]).is_dir():
        return True
    raise UsageError(f"-o {out} names one file, but the inputs can hold several images: give a folder")


def _output_path(item: InputFile, options: OutputOptions, named_folders: set[str]) -> tuple[Path, str]:
    out = options.out
    rel = Path(item.rel)
    label = scale_label(options.scale)
    in_folder = out is not None or _key(item.root) in named_folders
    suffix = options.suffix if options.suffix is not None else ("" if in_folder else f"_{label}")
    fmt, ext = _format_for(options, item.path)
    name = rel.with_name(rel.stem + suffix + ext)
    if out is not None:
        return out / name, fmt
    if _key(item.root) in named_folders:
        root = Path(os.path.normpath(item.root))
        if root.name in ("", ".", ".."):  # `seesr upscale .`: name the folder by its real name
            root = Path(os.path.abspath(root))
        if not root.name:
            raise UsageError(f"{item.root}: cannot make an output folder beside it; give -o")
        return root.parent / f"{root.name}_{label}" / name, fmt
    return item.path.parent / (rel.stem + suffix + ext), fmt


def plan_batch(args: Sequence[str], options: OutputOptions, *, base_seed: int = 0) -> list[Job]:
    """Every job of `seesr upscale ARGS`, in a deterministic order. Raises UsageError for bad options."""
    files, problems = discover(args, recursive=options.recursive, exclude=options.out)
    jobs = [Job(Path(arg), Path(arg).name, None, "", 0, FAIL, cause) for arg, cause in problems]
    if _single_file_target(args, options):
        fmt = output_format_for(options.out.suffix)
        if options.fmt not in (None, "same") and output_format_for(options.fmt) != fmt:
            raise UsageError(f"--format {options.fmt} contradicts -o {options.out} ({fmt})")
        targets = [(options.out, fmt)] * len(files)
    else:
        named = {_key(Path(a)) for a in args if not _is_glob(a) and Path(a).is_dir()}
        targets = [_output_path(item, options, named) for item in files]
    inputs = {_key(item.path): item for item in files}
    claimed: dict[str, Path] = {}
    for item, (output, fmt) in zip(files, targets):
        seed = derive_seed(base_seed, item.rel)
        job = Job(item.path, item.rel, output, fmt, seed, RUN, overwrite=options.overwrite)
        jobs.append(replace(job, **_check(job, inputs, claimed)))
    return _drop_outputs_of_others(jobs)


def _check(job: Job, inputs: dict[str, InputFile], claimed: dict[str, Path]) -> dict:
    """Refusals and skips for one job (its output path is already decided). Inputs are never written."""
    key = _key(job.output)
    if key == _key(job.input):
        return {"action": FAIL, "reason": "the output would overwrite the input (choose -o, --suffix or --format)"}
    if key in claimed:
        return {"action": FAIL, "reason": f"{job.output} is already the output of {claimed[key]}"}
    claimed[key] = job.input
    if key in inputs and job.overwrite:
        return {"action": FAIL, "reason": f"the output would overwrite the input {inputs[key].path}"}
    if job.output.is_dir():
        return {"action": FAIL, "reason": f"the output {job.output} is a folder"}
    if os.path.lexists(job.output) and not job.overwrite:
        return {"action": SKIP, "reason": "output exists"}
    return {}


def _drop_outputs_of_others(jobs: list[Job]) -> list[Job]:
    """An input that is another job's existing output (an earlier run's result beside its source)
    is not upscaled again: `seesr upscale *.png` twice must not turn a_x4.png into a_x4_x4.png."""
    outputs = {_key(j.output): j.input for j in jobs if j.output is not None and j.action != FAIL}
    kept = []
    for job in jobs:
        source = outputs.get(_key(job.input)) if job.output is not None else None
        if source is not None and source != job.input:
            job = replace(job, action=SKIP, reason=f"it is the output of {source}")
        kept.append(job)
    return kept


def shard_jobs(jobs: Sequence[T], rank: int = 0, world: int = 1) -> list[T]:
    """This process's contiguous share, as accelerate's `split_between_processes` splits a list:
    the first `len % world` processes take one job more. Every job lands in exactly one share.
    (Any sequence: distributed.py splits the jobs' indices.)"""
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"bad shard {rank}/{world}")
    size, extra = divmod(len(jobs), world)
    start = rank * size + min(rank, extra)
    return list(jobs[start:start + size + (1 if rank < extra else 0)])


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # ok | skipped | failed
    error: str = ""
    seconds: float = 0.0
    prompts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        job = self.job
        return {"input": str(job.input), "output": None if job.output is None else str(job.output),
                "status": self.status, "error": self.error or None, "seconds": round(self.seconds, 3),
                "seed": job.seed if job.output is not None else None, "prompts": list(self.prompts),
                "notes": list(self.notes)}


@dataclass
class BatchReport:
    results: list[JobResult] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    setup_seconds: float = 0.0  # model loading, counted apart from every image

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 1 if any input failed, else 0 (skipped counts as done)."""
        return 130 if self.interrupted else (1 if self.count(FAILED) else 0)


@dataclass(frozen=True)
class WorkDone:
    """What the per-image work hands back to the runner."""

    prompts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    setup_seconds: float = 0.0  # loading the models on first use: not this image's time


class BatchObserver(Protocol):
    def job_started(self, job: Job, index: int, total: int) -> None: ...

    def job_finished(self, result: JobResult, index: int, total: int) -> None: ...


class ModelLoadError(SeesrError):
    """The models could not be loaded: every image would fail alike, so the batch stops."""


# Raised by the work for one image: reported, and the batch goes on. Anything that would fail
# every image alike (missing weights, models that do not load, bad settings) stops the batch.
_FATAL = (WeightsError, ModelLoadError, UsageError, Cancelled)


def run_jobs(jobs: Sequence[Job], work: Callable[[Job], WorkDone], *, observer: BatchObserver | None = None,
             should_cancel: Callable[[], bool] | None = None) -> BatchReport:
    """Run (or report) each job in order. A bad image fails alone; Ctrl-C stops between jobs or steps."""
    report, start, total = BatchReport(), time.perf_counter(), len(jobs)
    for index, job in enumerate(jobs):
        if should_cancel is not None and should_cancel():
            report.interrupted = True
            break
        if observer is not None:
            observer.job_started(job, index, total)
        try:
            result, setup = _run_one(job, work)
        except (Cancelled, KeyboardInterrupt):  # nothing of this image was written
            report.interrupted = True
            break
        report.results.append(result)
        report.setup_seconds += setup
        if observer is not None:
            observer.job_finished(result, index, total)
    report.seconds = time.perf_counter() - start
    return report


def _run_one(job: Job, work: Callable[[Job], WorkDone]) -> tuple[JobResult, float]:
    """The job's result and the seconds spent loading models on its way."""
    if job.action == FAIL:
        return JobResult(job, FAILED, job.reason), 0.0
    if job.action == SKIP:
        return JobResult(job, SKIPPED, job.reason), 0.0
    if not job.overwrite and os.path.lexists(job.output):  # done meanwhile by another process
        return JobResult(job, SKIPPED, "output exists"), 0.0
    _remove_stale_temps(job.output)
    start = time.perf_counter()
    try:
        done = work(job)
    except OutputExistsError:
        return JobResult(job, SKIPPED, "output exists", time.perf_counter() - start), 0.0
    except InputImageError as exc:
        return JobResult(job, FAILED, exc.cause, time.perf_counter() - start), 0.0
    except _FATAL:
        raise
    except SeesrError as exc:
        return JobResult(job, FAILED, str(exc), time.perf_counter() - start), 0.0
    except Exception as exc:  # noqa: BLE001 - one image's unexpected failure must not end a long batch
        cause = f"internal error: {type(exc).__name__}: {exc}"
        return JobResult(job, FAILED, cause, time.perf_counter() - start), 0.0
    seconds = time.perf_counter() - start - done.setup_seconds
    return JobResult(job, OK, "", seconds, done.prompts, done.notes), done.setup_seconds


def _remove_stale_temps(output: Path) -> None:
    """A process killed mid-write leaves `.name.tmp-XXXX` (imageio's atomic write); only this job
    ever writes this name, so its leftovers can go."""
    for stale in output.parent.glob(f".{glob.escape(output.name)}.tmp-*"):
        try:
            stale.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------- one image


def image_metadata(job: Job, settings, prompts: Sequence[str], base_seed: int) -> dict[str, str]:
    """What a result needs to be reproduced: settings (with this image's seed), prompts, provenance."""
    return {
        "seesr:seed": str(job.seed),
        "seesr:base-seed": str(base_seed),
        "seesr:source": job.rel,
        "seesr:prompts": json.dumps(list(prompts), ensure_ascii=False),
        "seesr:settings": json.dumps(settings.to_dict(), sort_keys=True),
    }


def upscale_job(job: Job, *, pipeline: Callable[[], object], settings, quality: int,
                on_progress=None, should_cancel=None) -> WorkDone:
    """Load one input, upscale it with its own seed, write the result with its metadata.

    `pipeline` is called only once an image has loaded: a batch of unreadable files never loads
    the models. The pipeline raises `Cancelled` between steps, before anything is written.
    """
    from seesr_cli.imageio import load_image, save_image
    from seesr_cli.runtime import dtype_name

    loaded = load_image(job.input)
    start = time.perf_counter()
    try:
        pipe = pipeline()
    except (SeesrError, KeyboardInterrupt):
        raise
    except Exception as exc:  # an environment or install problem, not this image's
        raise ModelLoadError(f"cannot load the models: {type(exc).__name__}: {exc}") from exc
    setup = time.perf_counter() - start
    run_settings = settings.with_(seed=job.seed)
    result = pipe.upscale(loaded.rgb, run_settings, on_progress=on_progress, should_cancel=should_cancel)
    # Record what actually ran ("cuda", "fp16"), not "auto": a result made with --devices or
    # under accelerate then carries the same bytes as a one-process run on that device kind.
    ran = run_settings.with_(device=pipe.device.type, dtype=dtype_name(pipe.dtype))
    metadata = image_metadata(job, ran, result.prompts, settings.seed)
    save_image(result.image, loaded, job.output, fmt=job.fmt, quality=quality, metadata=metadata,
               overwrite=job.overwrite)
    return WorkDone(tuple(result.prompts), tuple(loaded.notes) + tuple(result.notes), setup)

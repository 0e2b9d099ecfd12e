"""Planning a batch: where each result goes, what is skipped or refused, each image's seed.

Planning is a pure function of the arguments and the file system, so planning twice gives
the same jobs. A job's seed comes from the base seed and the image's path relative to the
folder the user named, never from its position or the worker running it, so a result does
not depend on how the work was split. Each job has its own output path and the atomic
write never lets two writers share one file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from seesr_cli.batch.discover import InputFile, discover, is_glob, path_key
from seesr_cli.errors import InternalError, UsageError
from seesr_cli.io import OUTPUT_EXTENSIONS, output_format_for

RUN, SKIP, FAIL = "run", "skip", "fail"  # planned actions
T = TypeVar("T")


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
    if len(args) == 1 and not is_glob(args[0]) and not Path(args[0]).is_dir():
        return True
    raise UsageError(f"-o {out} names one file, but the inputs can hold several images: give a folder")


def _output_path(item: InputFile, options: OutputOptions, named_folders: set[str]) -> tuple[Path, str]:
    out = options.out
    rel = Path(item.rel)
    label = scale_label(options.scale)
    in_folder = out is not None or path_key(item.root) in named_folders
    suffix = options.suffix if options.suffix is not None else ("" if in_folder else f"_{label}")
    fmt, ext = _format_for(options, item.path)
    name = rel.with_name(rel.stem + suffix + ext)
    if out is not None:
        return out / name, fmt
    if path_key(item.root) in named_folders:
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
        named = {path_key(Path(a)) for a in args if not is_glob(a) and Path(a).is_dir()}
        targets = [_output_path(item, options, named) for item in files]
    inputs = {path_key(item.path): item for item in files}
    claimed: dict[str, Path] = {}
    for item, (output, fmt) in zip(files, targets):
        seed = derive_seed(base_seed, item.rel)
        job = Job(item.path, item.rel, output, fmt, seed, RUN, overwrite=options.overwrite)
        jobs.append(replace(job, **_check(job, inputs, claimed)))
    return _drop_outputs_of_others(jobs)


def _check(job: Job, inputs: dict[str, InputFile], claimed: dict[str, Path]) -> dict:
    """Refusals and skips for one job (its output path is already decided). Inputs are never written."""
    key = path_key(job.output)
    if key == path_key(job.input):
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
    outputs = {path_key(j.output): j.input for j in jobs if j.output is not None and j.action != FAIL}
    kept = []
    for job in jobs:
        source = outputs.get(path_key(job.input)) if job.output is not None else None
        if source is not None and source != job.input:
            job = replace(job, action=SKIP, reason=f"it is the output of {source}")
        kept.append(job)
    return kept


def shard_jobs(jobs: Sequence[T], rank: int = 0, world: int = 1) -> list[T]:
    """This process's contiguous share, as accelerate's `split_between_processes` splits a list:
    the first `len % world` processes take one job more. Every job lands in exactly one share.
    (Any sequence: distributed.py splits the jobs' indices.)"""
    if world < 1 or not 0 <= rank < world:
        raise InternalError(f"bad shard {rank}/{world}")
    size, extra = divmod(len(jobs), world)
    start = rank * size + min(rank, extra)
    return list(jobs[start:start + size + (1 if rank < extra else 0)])

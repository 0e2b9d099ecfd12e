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
from seesr_cli.io import IMAGE_EXTENSIONS, OUTPUT_EXTENSIONS, output_format_for

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

    def __post_init__(self) -> None:
        suffix = self.suffix or ""
        if any(sep and sep in suffix for sep in ("/", "\\", os.sep, os.altsep)) or ".." in suffix or "\0" in suffix:
            raise UsageError(f"--suffix {suffix!r}: must be part of a file name (no /, \\ or ..); "
                             "choose the folder with -o")


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
    """`-o name.ext` for one named file writes exactly that file; any other -o is a folder.

    Refused here, before anything loads: an -o under an existing file, an existing file (or
    an image name) as -o for inputs that can hold several images, and an image format we
    cannot write (`-o x.gif` would otherwise become a folder `x.gif/`)."""
    out = options.out
    if out is None:
        return False
    blocker = next((p for p in out.parents if os.path.lexists(p) and not p.is_dir()), None)
    if blocker is not None:
        raise UsageError(f"-o {out}: {blocker} is a file, not a folder")
    if out.is_dir():
        return False
    one_file = len(args) == 1 and not is_glob(args[0]) and not Path(args[0]).is_dir()
    exists = os.path.lexists(out)
    if exists and not one_file:
        raise UsageError(f"-o {out}: an existing file, but the inputs can hold several images: give a folder")
    try:
        fmt = output_format_for(out.suffix) if out.suffix else None
    except UsageError:
        fmt = None
    if fmt is None:
        if exists or out.suffix.lower() in IMAGE_EXTENSIONS:
            kind = f"{out.suffix[1:].upper()} images" if out.suffix else "a file without an image extension"
            raise UsageError(f"-o {out}: seesr cannot write {kind}; name a .png, .jpg, .webp or .tif file, "
                             "or a folder")
        return False  # a folder to be made (`-o results`, `-o run.v2`)
    if one_file:
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
    single = _single_file_target(args, options)  # -o is checked before the inputs are walked
    files, problems = discover(args, recursive=options.recursive, exclude=options.out)
    jobs = [Job(Path(arg), Path(arg).name, None, "", 0, FAIL, cause) for arg, cause in problems]
    if single:
        fmt = output_format_for(options.out.suffix)
        if options.fmt not in (None, "same") and output_format_for(options.fmt) != fmt:
            raise UsageError(f"--format {options.fmt} contradicts -o {options.out} ({fmt})")
        targets = [(options.out, fmt)] * len(files)
    else:
        named = {path_key(Path(a)) for a in args if not is_glob(a) and Path(a).is_dir()}
        targets = [_output_path(item, options, named) for item in files]
    earlier = _earlier_results(files, targets)
    inputs = {path_key(item.path): item for item in files if path_key(item.path) not in earlier}
    claimed: dict[str, Path] = {}
    for item, (output, fmt) in zip(files, targets):
        seed = derive_seed(base_seed, item.rel)
        job = Job(item.path, item.rel, output, fmt, seed, RUN, overwrite=options.overwrite)
        source = earlier.get(path_key(item.path))
        if source is not None:  # `seesr upscale *.png` twice, --overwrite or not: a_x4.png is a result
            job = replace(job, action=SKIP, reason=f"it is the output of {source} (an earlier result)")
        elif item.same_as is not None:
            job = replace(job, action=SKIP, reason=f"the same file as {item.same_as} (a link), done once")
        else:
            job = replace(job, **_check(job, inputs, claimed))
        jobs.append(job)
    return jobs


def _earlier_results(files: list[InputFile], targets: list[tuple[Path, str]]) -> dict[str, Path]:
    """Inputs that are another input's output (an earlier run's result beside its source): their
    path key -> that source. Never upscaled again, so a_x4.png never becomes a_x4_x4.png."""
    outputs = {path_key(out): item.path for item, (out, _) in zip(files, targets) if item.same_as is None}
    found = {}
    for item in files:
        source = outputs.get(path_key(item.path))
        if source is not None and path_key(source) != path_key(item.path):
            found[path_key(item.path)] = source
    return found


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


def shard_jobs(jobs: Sequence[T], rank: int = 0, world: int = 1) -> list[T]:
    """This process's contiguous share, as accelerate's `split_between_processes` splits a list:
    the first `len % world` processes take one job more. Every job lands in exactly one share.
    (Any sequence: distributed.py splits the jobs' indices.)"""
    if world < 1 or not 0 <= rank < world:
        raise InternalError(f"bad shard {rank}/{world}")
    size, extra = divmod(len(jobs), world)
    start = rank * size + min(rank, extra)
    return list(jobs[start:start + size + (1 if rank < extra else 0)])

"""`seesr upscale --like RESULT`: run again as RESULT was made, from its metadata.

From RESULT: its settings (every default resolved, fallbacks included), the seed (RESULT's
own for one input image, else its base seed, each image's seed derived from its path), the
dtype, the turbo base, the CPU thread count, `--compile` if RESULT's ControlNet+UNet was
compiled, and, for a CPU result, its kernels (a CPU result without "kernels" predates
`seesr_cli.models.cpu_fast`: stock). Options given on the command line win.
On the same device kind with the same library versions this writes the same pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from seesr_cli.errors import SeesrError, UsageError, one_line
from seesr_cli.settings import LoadOptions, UpscaleSettings

LIKE_FORMAT = 2  # pipeline.record.RUN_FORMAT: the first with "seesr:run" (imported lazily there: torch)
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")  # ParameterSource names (Typer may bring its own click)


@dataclass(frozen=True)
class LikeRecord:
    path: Path
    settings: UpscaleSettings  # as RESULT ran, with RESULT's own seed
    seed: int
    base_seed: int
    dtype: str
    threads: int
    turbo: bool
    cpu_kernels: str | None = None  # a CPU result's kernels; None: RESULT ran elsewhere
    compiled: bool = False  # RESULT's ControlNet+UNet ran under torch.compile (--compile)


def read_like(path: Path) -> LikeRecord:
    """RESULT's record, or a one-line UsageError (exit 2) naming what is wrong with it."""
    from seesr_cli.io import read_metadata

    where = f"--like {path}"
    try:
        meta = read_metadata(path)
    except SeesrError as exc:
        raise UsageError(f"{where}: cannot read it ({one_line(exc)})") from None
    if not {"seesr:seed", "seesr:base-seed", "seesr:settings"} <= meta.keys():
        raise UsageError(f"{where}: no seesr metadata in it (not a seesr-cli result, or its metadata was stripped)")
    run = _json_object(meta.get("seesr:run", "{}"))
    if run.get("format") != LIKE_FORMAT:
        found = run.get("format", 1)
        raise UsageError(f"{where}: metadata format {found} from another seesr-cli version; "
                         f"--like reads format {LIKE_FORMAT} (results of seesr-cli 0.1 with `seesr:run`)")
    try:
        settings = UpscaleSettings.from_dict(_json_object(meta["seesr:settings"]))
        record = LikeRecord(path, settings, int(meta["seesr:seed"]), int(meta["seesr:base-seed"]),
                            str(run["dtype"]), int(run["threads"]), bool(run["turbo"]),
                            str(run.get("kernels", "stock")) if run.get("device") == "cpu" else None,
                            str(run.get("compiled", "no")) != "no")
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        raise UsageError(f"{where}: damaged seesr metadata ({one_line(exc)})") from None
    # The same checks as options given here.
    LoadOptions(dtype=record.dtype, threads=record.threads, cpu_kernels=record.cpu_kernels or "onednn")
    return record


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def given_options(ctx) -> set[str]:
    """The parameters given on the command line (or by environment), not left at their defaults."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items() if source is not None and source.name in _GIVEN}


def apply_like(record: LikeRecord, ctx, settings: UpscaleSettings,
               load: LoadOptions) -> tuple[UpscaleSettings, LoadOptions]:
    """RESULT's settings and load options, except those given on the command line."""
    given = given_options(ctx)
    values = {**record.settings.to_dict(), "seed": record.base_seed}
    values.update({name: value for name, value in settings.to_dict().items() if name in given})
    changes = {"dtype": record.dtype, "threads": record.threads, "turbo": record.turbo, "compile": record.compiled}
    if record.cpu_kernels is not None:
        changes["cpu_kernels"] = record.cpu_kernels
    load = replace(load, **{name: value for name, value in changes.items() if name not in given})
    return UpscaleSettings.from_dict(values), load


def like_jobs(record: LikeRecord, ctx, jobs: list) -> list:
    """One input image gets RESULT's own seed (unless --seed was given); several keep their derived seeds."""
    if len(jobs) != 1 or "seed" in given_options(ctx):
        return jobs
    return [replace(jobs[0], seed=record.seed)]

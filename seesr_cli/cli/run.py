"""Running an upscale batch in this process: live progress, signals, the report, the summary, --json,
the exit code."""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePath

from rich.console import Console

from seesr_cli.batch import FAIL, RUN, BatchReport, Job, JobResult, PipelineLoader, run_jobs, upscale_job, upscale_jobs
from seesr_cli.cli.app import print_json
from seesr_cli.cli.errors import BUG_HINT, RESUME_HINT
from seesr_cli.cli.progress import BatchProgress, counting
from seesr_cli.cli.scale import run_on_ray
from seesr_cli.cli.signals import cancel_on_signals, check_after, stop_verifying
from seesr_cli.cli.tables import note_line, plan_table, summary_table, table_console
from seesr_cli.core import FALLBACK_NOTE
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings


def show_plan(jobs, json_out: bool) -> int:
    if json_out:
        plan = [{"input": str(j.input), "output": None if j.output is None else str(j.output),
                 "action": j.action, "reason": j.reason or None, "seed": j.seed if j.output else None} for j in jobs]
        print_json({"plan": plan})
    else:
        table_console().print(plan_table(jobs))
    return 1 if any(j.action == FAIL for j in jobs) else 0


def run_upscale(jobs, loader: PipelineLoader, settings: UpscaleSettings, quality: int, *,
                 json_out: bool, quiet: bool, debug: bool = False, reports: Sequence[Path] = (),
                 ray=None, group: int | None = None) -> int:
    """Run the jobs with live progress; the HTML report in each folder of `reports` (`report_folders`),
    summary, JSON and exit code. `ray` (a scaleout.RayPlan from --devices / --ray): on Ray's workers
    instead of this process (cli/scale.py). `group` (--group): images per pipeline run here
    (`group_size`)."""
    err = Console(stderr=True)
    if ray is not None:
        outcome = run_on_ray(ray, jobs, loader, settings, quality, quiet=quiet, debug=debug)
    else:
        with BatchProgress(err, quiet=quiet, debug=debug) as view, \
                cancel_on_signals(say=partial(note_line, view.console)) as cancelled:
            loader.on_status, loader.on_weights = view.status, stop_verifying(view.weights_event, cancelled)
            view.start(jobs)
            pipeline = partial(check_after, loader, cancelled)  # a stop during loading: no image is started
            work = partial(upscale_job, pipeline=pipeline, settings=settings, quality=quality,
                           on_progress=view.pipeline_event, should_cancel=cancelled)
            work_many = partial(upscale_jobs, pipeline=pipeline, settings=settings, quality=quality,
                                on_progress=view.pipeline_event, should_cancel=cancelled)
            outcome = run_jobs(jobs, work, observer=view, should_cancel=cancelled, work_many=work_many,
                               group=group_size(group, settings, loader.load, jobs))
        outcome.setup_seconds = max(outcome.setup_seconds, loader.load_seconds)  # also when every image failed
    pages = write_reports(reports, outcome, err, quiet=quiet, debug=debug)
    if json_out:
        print_json({"images": [r.to_dict() for r in outcome.results], "interrupted": outcome.interrupted,
                     "seconds": round(outcome.seconds, 3), "load_seconds": round(outcome.setup_seconds, 3),
                     "reports": [str(p) for p in pages], "exit_code": outcome.exit_code})
    if not quiet:
        table_console(stderr=json_out).print(summary_table(outcome))
        fallbacks = sum(any(note.startswith(FALLBACK_NOTE) for note in r.notes) for r in outcome.results)
        if fallbacks:
            note_line(err, f"{fallbacks} output(s) needed a fallback (out of memory or a precision rerun; see their "
                           "notes): they may differ from an unconstrained run")
        for page in pages:
            note_line(err, f"report: {page}")
    if outcome.interrupted:
        note_line(err, f"interrupted after {len(outcome.results)} of {len(jobs)} images: {RESUME_HINT}")
    return outcome.exit_code


def group_size(group: int | None, settings: UpscaleSettings, load, jobs: Sequence[Job]) -> int:
    """Images per pipeline run: --group, else the tile batch (--tile-batch, else the device kind's:
    a group of one-tile images then fills one forward). 1 when at most one image runs."""
    if group is not None or sum(job.action == RUN for job in jobs) < 2:
        return group or 1
    if settings.tile_batch is not None:
        return settings.tile_batch
    from seesr_cli.core.device import resolve_device

    return DEVICE_BATCH.get(resolve_device(load.device).type, 1)


def report_folders(jobs: Sequence[Job], out: Path | None) -> list[Path]:
    """The output folders of a batch, where its report goes: `-o OUT` when it is a folder, `D_x4/` for
    each folder D named without -o. None for a single `-o` file or results written beside their inputs."""
    outputs = [job for job in jobs if job.output is not None]
    if out is not None:
        return [] if not outputs or all(job.output == out for job in outputs) else [out]
    folders: dict[str, Path] = {}
    for job in outputs:
        root = job.output
        for _ in PurePath(job.rel).parts:
            root = root.parent
        if not _inside(job.input, root):  # beside the inputs: their folder is not ours to fill
            folders.setdefault(os.path.normcase(os.path.abspath(root)), root)
    return list(folders.values())


def write_reports(folders: Sequence[Path], outcome: BatchReport, err: Console, *, quiet: bool = False,
                  debug: bool = False) -> list[Path]:
    """Record this run in each output folder and rewrite its OUT/seesr-report.html from everything there.
    A report that cannot be written is a warning: the images are done, the exit code stays theirs."""
    if not folders:
        return []
    from seesr_cli.report import ReportError, record_run, write_report

    folders = [f for f in folders if f.is_dir()]  # a folder never made: nothing was written there
    pages = []
    for folder in folders:
        mine = [r for r in outcome.results if _belongs(r, folder, alone=len(folders) == 1)]
        try:
            with counting(err, f"report {folder}", quiet=quiet) as tick:
                record_run(folder, mine, seconds=outcome.seconds, interrupted=outcome.interrupted, on_progress=tick)
                pages.append(write_report(folder, on_progress=tick))
        except (ReportError, OSError) as exc:
            note_line(err, f"warning: no report in {folder}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug in the report must not fail a finished batch
            note_line(err, f"warning: no report in {folder}: internal error: {type(exc).__name__}: {exc} "
                           f"({BUG_HINT})")
            if debug:
                err.print(traceback.format_exc(), markup=False, highlight=False, soft_wrap=True, end="")
    return pages


def _inside(path: Path, folder: Path) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def _belongs(result: JobResult, folder: Path, *, alone: bool) -> bool:
    """A result goes to the folder that holds its output; one without output (not found, refused) to
    the only folder, if there is one."""
    output = result.job.output
    return alone if output is None else _inside(output, folder)

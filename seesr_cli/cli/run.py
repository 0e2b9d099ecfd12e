"""Running an upscale batch in this process: live progress, signals, the summary, --json, the exit code."""

from __future__ import annotations

from functools import partial

from rich.console import Console

from seesr_cli.batch import FAIL, PipelineLoader, upscale_job
from seesr_cli.cli.app import print_json
from seesr_cli.cli.errors import RESUME_HINT
from seesr_cli.cli.progress import BatchProgress
from seesr_cli.cli.signals import cancel_on_signals
from seesr_cli.cli.tables import note_line, plan_table, summary_table, table_console
from seesr_cli.core import FALLBACK_NOTE
from seesr_cli.scaleout.shared import share_batch
from seesr_cli.settings import UpscaleSettings


def show_plan(jobs, json_out: bool) -> int:
    if json_out:
        plan = [{"input": str(j.input), "output": None if j.output is None else str(j.output),
                 "action": j.action, "reason": j.reason or None, "seed": j.seed if j.output else None} for j in jobs]
        print_json({"plan": plan})
    else:
        table_console().print(plan_table(jobs))
    return 1 if any(j.action == FAIL for j in jobs) else 0


def run_upscale(jobs, loader: PipelineLoader, settings: UpscaleSettings, quality: int, *,
                 json_out: bool, quiet: bool, team=None, debug: bool = False) -> int:
    """Run this process's share of the jobs with live progress; summary, JSON and exit code.
    With several processes only the main one draws and reports, for all (scaleout/shared.py)."""
    err = Console(stderr=True)
    main = team is None or team.is_main
    with BatchProgress(err, quiet=quiet or not main, debug=debug) as view, \
            cancel_on_signals(announce=main) as cancelled:
        loader.on_status, loader.on_weights = view.status, view.weights_event
        batch = share_batch(jobs, team, view)
        view.start(jobs)
        work = partial(upscale_job, pipeline=loader, settings=settings, quality=quality,
                       on_progress=batch.pipeline_event, should_cancel=cancelled)
        report = batch.run(work, should_cancel=cancelled)
    if report is None:  # another process reports
        return 0
    if json_out:
        print_json({"images": [r.to_dict() for r in report.results], "interrupted": report.interrupted,
                     "seconds": round(report.seconds, 3), "load_seconds": round(report.setup_seconds, 3),
                     "exit_code": report.exit_code})
    if not quiet:
        table_console(stderr=json_out).print(summary_table(report))
        fallbacks = sum(any(note.startswith(FALLBACK_NOTE) for note in r.notes) for r in report.results)
        if fallbacks:
            note_line(err, f"{fallbacks} output(s) needed a fallback (out of memory or a precision rerun; see their "
                           "notes): they may differ from an unconstrained run")
    if report.interrupted:
        note_line(err, f"interrupted after {len(report.results)} of {len(jobs)} images: {RESUME_HINT}")
    return report.exit_code

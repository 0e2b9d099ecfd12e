"""Running an upscale batch in this process: live progress, signals, the summary, --json, the exit code."""

from __future__ import annotations

from functools import partial

from rich.console import Console

from seesr_cli.batch import FAIL, PipelineLoader, run_jobs, upscale_job
from seesr_cli.cli.app import print_json
from seesr_cli.cli.errors import RESUME_HINT
from seesr_cli.cli.progress import BatchProgress
from seesr_cli.cli.scale import run_on_ray
from seesr_cli.cli.signals import cancel_on_signals
from seesr_cli.cli.tables import note_line, plan_table, summary_table, table_console
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
                 json_out: bool, quiet: bool, debug: bool = False, ray=None) -> int:
    """Run the jobs with live progress; summary, JSON and exit code. `ray` (a scaleout.RayPlan
    from --devices / --ray): on Ray's workers instead of this process (cli/scale.py)."""
    err = Console(stderr=True)
    if ray is not None:
        report = run_on_ray(ray, jobs, loader, settings, quality, quiet=quiet, debug=debug)
    else:
        with BatchProgress(err, quiet=quiet, debug=debug) as view, cancel_on_signals() as cancelled:
            loader.on_status, loader.on_weights = view.status, view.weights_event
            view.start(jobs)
            work = partial(upscale_job, pipeline=loader, settings=settings, quality=quality,
                           on_progress=view.pipeline_event, should_cancel=cancelled)
            report = run_jobs(jobs, work, observer=view, should_cancel=cancelled)
    if json_out:
        print_json({"images": [r.to_dict() for r in report.results], "interrupted": report.interrupted,
                     "seconds": round(report.seconds, 3), "load_seconds": round(report.setup_seconds, 3),
                     "exit_code": report.exit_code})
    if not quiet:
        table_console(stderr=json_out).print(summary_table(report))
    if report.interrupted:
        note_line(err, f"interrupted after {len(report.results)} of {len(jobs)} images: {RESUME_HINT}")
    return report.exit_code

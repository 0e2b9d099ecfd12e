"""What the CLI prints: one-line errors and notes, the summary, the plan, tags, the weights table."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from seesr_cli.batch import FAIL, FAILED, OK, RUN, SKIPPED, BatchReport, Job, JobResult

_PER_IMAGE_ROWS = 20  # larger batches get counts only in the summary


def table_console(*, stderr: bool = False) -> Console:
    """A console for tables: on a terminal its width; in a pipe or file, rows never fold."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=4096)
    return console


def error_line(console: Console, subject: str, cause: str) -> None:
    """`error: <file>: <cause>`, one line whatever the terminal width."""
    console.print(f"error: {subject}: {cause}", markup=False, highlight=False, soft_wrap=True)


def note_line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def seconds_text(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else time.strftime("%H:%M:%S", time.gmtime(value))


def summary_table(report: BatchReport, *, per_image: int = _PER_IMAGE_ROWS) -> Group:
    """One row per image for small batches; counts and the failures for large ones; then the totals."""
    results = report.results
    line = f"seesr: {report.count(OK)} upscaled, {report.count(SKIPPED)} skipped, {report.count(FAILED)} failed"
    line += f" in {seconds_text(report.seconds)}"
    if report.setup_seconds:
        line += f" (loading the models: {seconds_text(report.setup_seconds)})"
    line += " (interrupted)" if report.interrupted else ""
    return Group(_summary_rows(results, per_image, report), Text(line))


def _summary_rows(results: Sequence[JobResult], per_image: int, report: BatchReport) -> Table:
    table = Table(show_edge=False)
    if len(results) <= per_image:
        for name in ("input", "status", "output / cause", "time"):
            table.add_column(name, overflow="fold", justify="right" if name == "time" else "left")
        for r in results:
            detail = str(r.job.output) if r.status == OK else r.error
            table.add_row(str(r.job.input), r.status, detail, seconds_text(r.seconds) if r.status == OK else "")
        return table
    table.add_column("status")
    table.add_column("images", justify="right")
    table.add_column("time", justify="right")
    for status in (OK, SKIPPED, FAILED):
        seconds = sum(r.seconds for r in results if r.status == status)
        table.add_row(status, str(report.count(status)), seconds_text(seconds) if status == OK else "")
    for r in results:
        if r.status == FAILED:
            table.add_row(f"  {r.job.input}", "failed", r.error)
    return table


def plan_table(jobs: Sequence[Job]) -> Table:
    """`--dry-run`: what would happen to each input."""
    table = Table(title=f"plan: {len(jobs)} input(s)", title_justify="left", show_edge=False)
    for name in ("action", "input", "output", "seed / reason"):
        table.add_column(name, overflow="fold")
    for job in jobs:
        action = {RUN: "upscale", FAIL: "refuse"}.get(job.action, job.action)
        detail = str(job.seed) if job.action == RUN else job.reason
        table.add_row(action, str(job.input), "" if job.output is None else str(job.output), detail)
    return table


def tag_lines(path, entry: dict) -> str:
    """`seesr tag`: `path: tag, tag`, then one indented line per tile."""
    lines = [f"{path}: {', '.join(t['tag'] for t in entry['tags'])}"]
    for i, tile in enumerate(entry.get("tiles", []), 1):
        left, top, width, height = tile["box"]
        lines.append(f"  tile {i} ({width}x{height} at {left},{top}): {', '.join(t['tag'] for t in tile['tags'])}")
    return "\n".join(lines)


def weights_row(row) -> dict:
    """One `weights.WeightStatus` for `seesr weights --json`."""
    return {"part": row.key, "what": row.what, "source": row.source,
            "path": None if row.path is None else str(row.path), "size_bytes": row.size_bytes,
            "state": row.state, "licence": row.licence, "detail": row.detail or None}


def weights_table(rows) -> Table:
    table = Table(show_edge=False)
    for name in ("part", "source", "local path", "size", "state"):
        table.add_column(name, overflow="fold", justify="right" if name == "size" else "left")
    for r in rows:
        size = "" if r.size_bytes is None else f"{r.size_bytes / 1e6:,.1f} MB"
        state = r.state if not r.detail else f"{r.state}: {r.detail}"
        table.add_row(r.key, r.source, "" if r.path is None else str(r.path), size, state)
    return table

"""What the CLI prints: one-line errors and notes, the summary, the plan, tags, the weights table."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from seesr_cli.batch import FAIL, FAILED, OK, RUN, SKIPPED, BatchReport, Job, JobResult

_PER_IMAGE_ROWS = 20  # larger batches get counts only in the summary


def table_console(*, stderr: bool = False) -> Console:
    """A console for tables: on a terminal its width; in a pipe or file, rows never fold (unless
    COLUMNS says how wide)."""
    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
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


def size_text(size_bytes: float) -> str:
    """Decimal units, as the Hub and the docs count weights: 13.8 GB, 7.2 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:,.1f} {unit}"
    return f"{size_bytes:.0f} B"


def weights_table(rows) -> Table:
    """`seesr weights`: one block per part (state and size, what it is, where from, where it is), in two
    columns so that it reads at 80 columns as well as at 200; long paths fold inside their column."""
    table = Table.grid(padding=(0, 2))
    table.add_column("part", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    for r in rows:
        detail = r.detail.removeprefix(f"{r.source}: ")  # a lookup's message repeats the source
        head = r.state if r.size_bytes is None else f"{r.state}, {size_text(r.size_bytes)}"
        head += f" ({detail})" if detail and "\n" not in detail and len(detail) < 40 else ""
        lines = [head, r.what]
        if not r.source.startswith(("local:", "converted")):
            lines.append(f"from {r.source}")
        if r.path is not None:
            lines.append(f"at {r.path}")
        if detail and detail not in head:
            lines.append(detail)
        table.add_row(Text(r.key, style="bold"), Text("\n".join(lines)))
    return table


_BAD = ("missing", "sha256 mismatch")


def weights_next_step(rows, sizes: Mapping[str, int], *, offline: bool) -> str:
    """The one thing to do next after `seesr weights`, or "all set". `sizes`: the manifest's bytes per part."""
    mismatched = [r for r in rows if r.state == "sha256 mismatch"]
    if mismatched:
        r = mismatched[0]
        if r.source.startswith("local:"):
            return (f"next: {r.key} in your --weights folder is not the release file: replace it, or pass "
                    "--accept-local-weights to use it as your own (unchecked) file")
        return f"next: delete {r.path} (a damaged download); the next run fetches it again"
    missing = [r for r in rows if r.state == "missing"]
    if missing:
        size = size_text(sum(sizes.get(r.key, 0) for r in missing))
        parts = f"{len(missing)} missing part{'s' if len(missing) > 1 else ''} ({size})"
        if offline:
            return (f"next: go online (unset HF_HUB_OFFLINE) and run `seesr download` to fetch the {parts}, "
                    "or pass --weights DIR (the layout: `seesr weights --help`)")
        return f"next: run `seesr download` to fetch the {parts}, or pass --weights DIR"
    if any(r.state == "not verified yet" for r in rows):
        return "next: `seesr weights --verify` checks the sha256 of each file now (else the first run does)"
    if any(r.state == "not converted yet" for r in rows):
        return "next: the first run (or `seesr download`) converts DAPE once; then all is set"
    return "all set: `seesr upscale photos/` runs from here without downloading anything"

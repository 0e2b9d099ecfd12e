"""Drawing a batch for people: rich bars on a terminal, plain lines otherwise, a summary at the end.

The library reports through callbacks (`pipeline.ProgressEvent`, `weights.WeightsEvent`,
`batch.BatchObserver`); this module is the only place that turns them into text. Progress
and errors go to stderr, so stdout stays free for results (the summary, or `--json`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
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


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else time.strftime("%H:%M:%S", time.gmtime(value))


class BatchProgress:
    """Observer of a batch run (`batch.BatchObserver`) and sink of pipeline and weights events.

    Live bars when `console` is a terminal: the batch (images done / total, ETA) and the
    current image (tiles x steps). Otherwise one line per finished image. `quiet`: errors only.
    """

    def __init__(self, console: Console, *, quiet: bool = False, live: bool | None = None):
        self.console = console
        self.quiet = quiet
        self.live = (console.is_terminal if live is None else live) and not quiet
        self._progress: Progress | None = None
        self._batch: TaskID | None = None
        self._image: TaskID | None = None
        self._runs_done = 0
        self._passes = 0  # denoise tile passes of the current image
        self._seen_weights: set[tuple[str, str]] = set()
        self._weights_tasks: dict[tuple[str, str], TaskID] = {}

    # -- lifetime -----------------------------------------------------------------------------

    def __enter__(self) -> BatchProgress:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start(self, jobs: Sequence[Job]) -> None:
        """The batch bar counts the images that will run; skips and refusals finish at once."""
        runs = sum(job.action == RUN for job in jobs)
        if self._progress is not None:
            self._batch = self._progress.add_task("images", total=max(runs, 1), detail=f"0/{runs}")

    def status(self, text: str) -> None:
        """A phase with no bar of its own (loading the models)."""
        if self._progress is not None and self._batch is not None:
            self._ensure_image_task(text)
        elif not self.quiet:
            note_line(self.console, text)

    # -- batch.BatchObserver --------------------------------------------------------------------

    def job_started(self, job: Job, index: int, total: int) -> None:
        self._passes = 0
        if self._progress is not None and job.action == RUN:
            self._ensure_image_task(str(job.input))

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        job = result.job
        if result.status == FAILED:
            error_line(self.console, str(job.input), result.error)
        if job.action == RUN:
            self._runs_done += 1
            self._advance_batch(0.0)
        if self.live or self.quiet:
            return
        where = f"[{index + 1}/{total}]"
        if result.status == OK:
            notes = "".join(f"; {note}" for note in result.notes)
            note_line(self.console, f"{where} ok {job.input} -> {job.output} ({_seconds(result.seconds)}{notes})")
        elif result.status == SKIPPED:
            note_line(self.console, f"{where} skipped {job.input} ({result.error})")

    # -- pipeline.ProgressEvent -----------------------------------------------------------------

    def pipeline_event(self, event) -> None:
        """Stages: prompts, encode, denoise (steps x tiles), decode, colorfix."""
        if self._progress is None or self._image is None:
            return
        if event.stage == "denoise":
            done, total, detail = denoise_progress(event, self._passes)
            self._passes = done
            self._progress.update(self._image, total=total, completed=done, detail=detail)
            self._advance_batch(done / total)
        else:
            self._progress.update(self._image, detail=event.stage)

    # -- weights.WeightsEvent -------------------------------------------------------------------

    def weights_event(self, event) -> None:
        """Downloads and checks: a bar each on a terminal, one line each otherwise."""
        key = (event.key, event.stage)
        verb = {"download": "downloading", "verify": "verifying", "convert": "converting"}.get(event.stage, event.stage)
        if self._progress is None:
            if key not in self._seen_weights and not self.quiet:
                self._seen_weights.add(key)
                note_line(self.console, f"{verb} {event.key} ...")
            return
        if key not in self._weights_tasks:
            self._weights_tasks[key] = self._progress.add_task(f"{verb} {event.key}", total=event.total, detail="")
        done = event.done
        detail = f"{done / 2**20:,.0f} MiB" if event.unit == "B" else ""
        finished = event.total is not None and done >= event.total
        self._progress.update(self._weights_tasks[key], completed=done, total=event.total, detail=detail,
                              visible=not finished)

    # -- helpers --------------------------------------------------------------------------------

    def _ensure_image_task(self, description: str) -> None:
        if self._image is None:
            self._image = self._progress.add_task(description, total=None, detail="")
        else:
            self._progress.reset(self._image, total=None, description=description, detail="")

    def _advance_batch(self, fraction: float) -> None:
        """The current image's share moves the batch bar too, so its ETA is steady."""
        if self._progress is None or self._batch is None:
            return
        runs = int(self._progress.tasks[self._batch].total or 1)
        self._progress.update(self._batch, completed=self._runs_done + fraction,
                              detail=f"{self._runs_done}/{runs}")


def denoise_progress(event, previous: int = 0) -> tuple[int, int, str]:
    """(tile passes done, tile passes in all, "step s/S, tile t/T") for a denoise event.

    `done` counts whole steps and `tile` the tiles of the step under way (0 once a step
    completes); the count never goes back (`previous`: the last value shown)."""
    tiles = max(event.tiles or 1, 1)
    total = max(event.total, 1) * tiles
    done = max(previous, min(event.done * tiles + (event.tile or 0), total))
    step = min(event.done + 1, event.total)
    return done, total, f"step {step}/{event.total}, tile {event.tile or 0}/{tiles}"


# ----------------------------------------------------------------------------- after the run


def summary_table(report: BatchReport, *, per_image: int = _PER_IMAGE_ROWS) -> Group:
    """One row per image for small batches; counts and the failures for large ones; then the totals."""
    results = report.results
    line = f"seesr: {report.count(OK)} upscaled, {report.count(SKIPPED)} skipped, {report.count(FAILED)} failed"
    line += f" in {_seconds(report.seconds)}"
    if report.setup_seconds:
        line += f" (loading the models: {_seconds(report.setup_seconds)})"
    line += " (interrupted)" if report.interrupted else ""
    return Group(_summary_rows(results, per_image, report), Text(line))


def _summary_rows(results: Sequence[JobResult], per_image: int, report: BatchReport) -> Table:
    table = Table(show_edge=False)
    if len(results) <= per_image:
        for name in ("input", "status", "output / cause", "time"):
            table.add_column(name, overflow="fold", justify="right" if name == "time" else "left")
        for r in results:
            detail = str(r.job.output) if r.status == OK else r.error
            table.add_row(str(r.job.input), r.status, detail, _seconds(r.seconds) if r.status == OK else "")
        return table
    table.add_column("status")
    table.add_column("images", justify="right")
    table.add_column("time", justify="right")
    for status in (OK, SKIPPED, FAILED):
        seconds = sum(r.seconds for r in results if r.status == status)
        table.add_row(status, str(report.count(status)), _seconds(seconds) if status == OK else "")
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

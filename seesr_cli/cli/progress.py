"""Drawing a batch for people: rich bars on a terminal, plain lines otherwise.

The library reports through callbacks (`pipeline.ProgressEvent`, `weights.WeightsEvent`, the
batch observer); this module turns them into text. Progress and errors go to stderr, so
stdout stays free for results (the summary, or `--json`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from seesr_cli.batch import FAILED, OK, RUN, SKIPPED, Job, JobResult
from seesr_cli.cli.tables import error_line, note_line, seconds_text

_ETA_WINDOW_S = 3600.0
_STAGES = {"prompts": "DAPE tags and prompts", "encode": "encoding", "decode": "decoding", "colorfix": "colour fix"}


class BatchProgress:
    """Observer of a batch run (`batch.BatchObserver`) and sink of pipeline and weights events.

    Live bars when `console` is a terminal: the batch (images done / total, ETA) and the
    current image (tiles x steps). Otherwise one line per finished image. `quiet`: errors only.
    """

    def __init__(self, console: Console, *, quiet: bool = False, live: bool | None = None, debug: bool = False,
                 clock: Callable[[], float] | None = None):
        self.console = console
        self.quiet, self.debug = quiet, debug
        self.live = (console.is_terminal if live is None else live) and not quiet
        self._clock = clock  # rich's own monotonic clock unless a test gives one
        self._progress: Progress | None = None
        self._batch: TaskID | None = None
        self._image: TaskID | None = None
        self._label = ""  # the current image's name; a phase ("loading models") shows only until it ends
        self._runs_done = 0
        self._passes = 0  # denoise tile passes of the current image
        self._seen_weights: set[tuple[str, str]] = set()
        self._weights_tasks: dict[tuple[str, str], TaskID] = {}

    # -- lifetime -----------------------------------------------------------------------------

    def __enter__(self) -> BatchProgress:
        if self.live:
            # ETA from the last hour of samples: rich's default (30 s) holds a single sample when one
            # tile pass takes longer (any CPU run), and the ETA would stay empty.
            extra = {} if self._clock is None else {"get_time": self._clock}
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True, speed_estimate_period=_ETA_WINDOW_S, **extra,
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

    @property
    def progress(self) -> Progress | None:
        """The live rich display (None when not live): its tasks are what a person sees."""
        return self._progress

    def status(self, text: str) -> None:
        """A phase with no bar of its own (loading the models): shown on the image's bar until the
        image's own progress starts."""
        if self._progress is not None and self._batch is not None:
            if self._image is None:
                self._ensure_image_task(text)
            else:
                self._progress.update(self._image, description=text)
        elif not self.quiet:
            note_line(self.console, text)

    # -- batch.BatchObserver --------------------------------------------------------------------

    def job_started(self, job: Job, index: int, total: int) -> None:
        self._passes = 0
        if self._progress is not None and job.action == RUN:
            self._label = str(job.input)
            self._ensure_image_task(self._label)

    def group_started(self, jobs: Sequence[Job]) -> None:
        """Images that run as one group (`--group`), after each one's `job_started`: one bar for the
        group's work, named after its first image with a count of the others."""
        runs = [job for job in jobs if job.action == RUN]
        if self._progress is not None and len(runs) > 1:
            self._label = f"{runs[0].input} (+{len(runs) - 1} in its group)"
            self._ensure_image_task(self._label)

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        job = result.job
        if result.status == FAILED:
            error_line(self.console, str(job.input), result.error)
            if self.debug and result.trace:
                self.console.print(result.trace, markup=False, highlight=False, soft_wrap=True, end="")
        if job.action == RUN:
            self._runs_done += 1
            self._advance_batch(0.0)
        if self.live or self.quiet:
            return
        where = f"[{index + 1}/{total}]"
        if result.status == OK:
            notes = "".join(f"; {note}" for note in result.notes)
            note_line(self.console, f"{where} ok {job.input} -> {job.output} ({seconds_text(result.seconds)}{notes})")
        elif result.status == SKIPPED:
            note_line(self.console, f"{where} skipped {job.input} ({result.error})")

    def problem(self, subject: str, cause: str) -> None:
        """Something that is not one image's failure (a lost worker process): one error line."""
        error_line(self.console, subject, cause)

    # -- pipeline.ProgressEvent -----------------------------------------------------------------

    def pipeline_event(self, event) -> None:
        """Stages: prompts, encode, denoise (steps x tiles), decode, colorfix; compile (--compile: the
        first tiles of each shape, shown with its detail, and as a line in a log)."""
        if event.stage == "compile" and event.detail and self._progress is None and not self.quiet:
            note_line(self.console, event.detail)
        if self._progress is None or self._image is None:
            return
        label = {"description": self._label} if self._label else {}  # the loading phase is over
        if event.stage == "denoise":
            done, total, detail = denoise_progress(event, self._passes)
            self._passes = done
            self._progress.update(self._image, total=total, completed=done, detail=detail, **label)
            self._advance_batch(done / total)
        else:
            detail = event.detail if event.stage == "compile" and event.detail else _STAGES.get(event.stage, event.stage)
            self._progress.update(self._image, detail=detail, **label)

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

    The pipeline reports `done` whole steps and `tile` tiles finished in the step under way, and
    `tile` 0 once a step completes. The label counts what is finished: at a step's end it shows
    that step with all its tiles (so the last one reads "step S/S, tile T/T"), then the next step
    from tile 0 up. The count never goes back (`previous`: the last value shown)."""
    tiles = max(event.tiles or 1, 1)
    steps = max(event.total, 1)
    total = steps * tiles
    tile = min(event.tile or 0, tiles)
    done = max(previous, min(event.done * tiles + tile, total))
    if tile == 0 and event.done > 0:  # a step just completed
        step, tile = min(event.done, steps), tiles
    else:
        step = min(event.done + 1, steps)
    return done, total, f"step {step}/{steps}, tile {tile}/{tiles}"


@contextmanager
def counting(console: Console, label: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A transient bar for work counted as (done, total), e.g. the report's previews; on a terminal
    only (a log gets the one line the caller prints when it is done)."""
    if quiet or not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)

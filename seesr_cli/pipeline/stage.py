"""What every stage of a group of images shares: progress, cancellation, each image's timings and
notes, and the out-of-memory retry that keeps a fallback inside the stage where it happened."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from seesr_cli.core import FALLBACK_NOTE
from seesr_cli.core.device import empty_cache, is_out_of_memory
from seesr_cli.errors import Cancelled, DeviceOutOfMemory
from seesr_cli.pipeline.placement import Placement
from seesr_cli.pipeline.plan import Batching

TIMED_STAGES = ("dape", "text", "vae_encode", "denoise", "vae_decode", "colorfix")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ProgressEvent:
    """stage is one of: prompts, encode, denoise, decode, colorfix, and compile (`detail` says
    what is being compiled, e.g. "compiling for 96x96 tiles, batch 8 (once per shape)").

    For a group of images (`SeeSRPipeline.upscale_many`) the events count the whole group's
    work: `tiles` is the tiles of all its images."""

    stage: str
    done: int
    total: int
    tile: int | None = None
    tiles: int | None = None
    detail: str | None = None


@dataclass
class StageRun:
    """The run of a group of images through the stages (one image for `upscale`). Each image has
    its own notes and timings: a stage's seconds are shared among the images by their share of
    its work, and a fallback is noted on every image it touched."""

    device: torch.device
    should_cancel: Callable[[], bool] | None = None
    on_progress: Callable[[ProgressEvent], None] | None = None
    notes: list[list[str]] = field(default_factory=lambda: [[]])  # per image
    timings: list[dict[str, float]] = field(default_factory=list)  # per image
    placement: Placement | None = None  # None: every network stays where it is

    def __post_init__(self) -> None:
        if not self.timings:
            self.timings = [dict.fromkeys(TIMED_STAGES, 0.0) for _ in self.notes]

    def emit(self, stage: str, done: int, total: int, tile: int | None = None, tiles: int | None = None,
             detail: str | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(stage, done, total, tile, tiles, detail))

    def check(self, where: str) -> None:
        """Raise `Cancelled` if the user asked to stop: called at every safe point."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"stopped {where}")

    @contextmanager
    def timed(self, stage: str, work: Sequence[float] | None = None) -> Iterator[None]:
        """Time a stage of the group; `work`: each image's share of it (default: equal shares)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - start
            shares = list(work) if work is not None and sum(work) > 0 else [1.0] * len(self.timings)
            for timings, share in zip(self.timings, shares):
                timings[stage] = timings.get(stage, 0.0) + elapsed * share / sum(shares)

    def placed(self, stage: str) -> AbstractContextManager[None]:
        """The stage's networks on the device for the block (`Placement.stage`; resident: nothing moves)."""
        return nullcontext() if self.placement is None else self.placement.stage(stage)

    def retry(self, stage: str, first: Batching, attempt: Callable[[Batching], _R],
              shrink: Callable[[Batching], Batching | None], unit: str = "tiles") -> tuple[_R, Batching]:
        """`attempt(first)`; on out of memory, `attempt` again with `shrink`'s smaller batch or tiles,
        each fallback noted on every image of the group. The stage alone is redone: what earlier
        stages computed is kept."""
        option = first
        while True:
            try:
                return attempt(option), option
            except Exception as exc:  # only out-of-memory is handled; anything else is re-raised
                if not is_out_of_memory(exc):
                    raise
                smaller = shrink(option)
                if smaller is None:
                    raise DeviceOutOfMemory(
                        f"out of memory in {stage} even at {option.describe(unit)}; "
                        "try --device cpu or a smaller --scale") from exc
            # Outside the except block: the failed attempt's frames (and tensors) are released.
            empty_cache(self.device)
            note = f"{FALLBACK_NOTE}out of memory in {stage} at {option.describe(unit)}; redone at {smaller.describe(unit)}"
            for notes in self.notes:
                notes.append(note)
            option = smaller

"""One image: load it, upscale it with its own seed, write the result with what it needs to be reproduced."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from seesr_cli.batch.plan import Job
from seesr_cli.batch.run import WorkDone
from seesr_cli.errors import Cancelled, ModelLoadError, SeesrError, WeightsError
from seesr_cli.settings import LoadOptions

if TYPE_CHECKING:  # importing seesr_cli.weights loads torch: not for --dry-run or --help
    from seesr_cli.weights import Progress


class PipelineLoader:
    """Resolves the weights and loads the models on first use: a batch with nothing to run loads nothing.

    `on_status` hears "loading models"; `on_weights` gets the weights' download/verify events.
    """

    def __init__(self, load: LoadOptions, *, weights_dir: Path | None = None, sd2_repo: str | None = None,
                 accept_local: bool = False, on_status: Callable[[str], None] | None = None,
                 on_weights: Progress | None = None):
        self.load, self.weights_dir, self.sd2_repo, self.accept_local = load, weights_dir, sd2_repo, accept_local
        self.on_status, self.on_weights = on_status, on_weights
        self._pipe = None
        self.load_seconds = 0.0  # resolving, verifying and loading: reported even when every image fails

    def __call__(self):
        if self._pipe is None:
            from seesr_cli.weights import resolve_weights

            if self.on_status is not None:
                self.on_status("loading models")
            start = time.perf_counter()
            try:
                paths = resolve_weights(weights_dir=self.weights_dir, turbo=self.load.turbo, sd2_repo=self.sd2_repo,
                                        progress=self.on_weights, accept_local=self.accept_local)
                self._pipe = self._build(paths)
            finally:
                self.load_seconds += time.perf_counter() - start
        return self._pipe

    def _build(self, paths):
        from seesr_cli.pipeline import SeeSRPipeline
        from seesr_cli.weights.check import check_folders

        try:
            return SeeSRPipeline.from_pretrained(paths, self.load)
        except Exception as exc:
            problem = check_folders(paths, turbo=self.load.turbo)  # a wrong file in a folder, said plainly
            if problem is None:
                raise
            raise WeightsError(problem) from exc


def image_metadata(job: Job, result, base_seed: int) -> dict[str, str]:
    """What a result needs to be reproduced (`seesr upscale --like`) and what ran: this image's seed,
    the base seed, its source, the prompts, the settings it ran with (every default and fallback
    resolved), the input's absolute path, `seesr:run` (format 2: versions, device kind, dtype,
    threads, tiles, batches, weights, timings, notes) and each latent tile's box, tags and prompt.
    `result` is the pipeline's `UpscaleResult`."""
    return {
        "seesr:seed": str(job.seed),
        "seesr:base-seed": str(base_seed),
        "seesr:source": job.rel,
        "seesr:prompts": json.dumps(list(result.prompts), ensure_ascii=False),
        "seesr:settings": json.dumps(result.settings.to_dict(), sort_keys=True),
        "seesr:input": str(Path(job.input).absolute()),
        "seesr:run": json.dumps(result.run, sort_keys=True, ensure_ascii=False),
        "seesr:tiles": json.dumps(result.tiles, ensure_ascii=False),
    }


def upscale_job(job: Job, *, pipeline: Callable[[], object], settings, quality: int,
                on_progress=None, should_cancel=None) -> WorkDone:
    """Load one input, upscale it with its own seed, write the result with its metadata.

    `pipeline` is called only once an image has loaded: a batch of unreadable files never loads
    the models. A 16-bit source reaches the model as floats and its float result is quantised
    once, to the output's depth. Cancelled (in any stage, or just before writing): nothing is written.
    """
    from seesr_cli.io import load_image, save_image

    loaded = load_image(job.input)
    start = time.perf_counter()
    try:
        pipe = pipeline()
    except (SeesrError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading (install, driver) breaks every image
        raise ModelLoadError(f"cannot load the models: {type(exc).__name__}: {exc}") from exc
    setup = time.perf_counter() - start
    high_depth = loaded.rgb_float is not None
    source = loaded.float_rgb() if high_depth else loaded.rgb
    result = pipe.upscale(source, settings.with_(seed=job.seed), on_progress=on_progress,
                          should_cancel=should_cancel)
    if should_cancel is not None and should_cancel():
        raise Cancelled("stopped before writing the result")
    metadata = image_metadata(job, result, settings.seed)
    save_image(result.array if high_depth else result.image, loaded, job.output, fmt=job.fmt, quality=quality,
               metadata=metadata, overwrite=job.overwrite)
    return WorkDone(tuple(result.prompts), tuple(loaded.notes) + tuple(result.notes), setup, dict(result.timings))

"""SeeSR upscaling: the pipeline object that holds the models, and its entry points.

Stages (one module each), run for a group of images by `group`: plan (`plan`) -> prompts
(`conditioning`: DAPE, text encoder) -> LR embedding (`latents.encode_lr`) -> sampling over
blended latent tiles (`denoising`) -> VAE decode (`latents.decode`) -> colour fix and exact
resize (`images`). What ran is recorded by `record`. `upscale` is a group of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from seesr_cli.core import FALLBACK_NOTE
from seesr_cli.core.denoise import controlled_noise
from seesr_cli.core.device import dtype_name, resolve_device, resolve_dtype
from seesr_cli.errors import Cancelled, InternalError, NonFiniteOutput, UsageError
from seesr_cli.pipeline import record
from seesr_cli.pipeline.compiled import CompiledForward
from seesr_cli.pipeline.group import Finished, run_group, run_record, tile_records
from seesr_cli.pipeline.images import SourceImage, as_source
from seesr_cli.pipeline.placement import MemoryBudget, Placement, memory_budget
from seesr_cli.pipeline.plan import group_key
from seesr_cli.pipeline.stage import ProgressEvent, StageRun
from seesr_cli.settings import LoadOptions, UpscaleSettings

__all__ = ["ProgressEvent", "SeeSRPipeline", "UpscaleResult"]


@dataclass(frozen=True)
class UpscaleResult:
    """One upscaled image and what it took.

    image: 8-bit RGB at exactly scale x the input. array: the same result as H x W x 3
    float32 in [0, 1] before any rounding (what a 16-bit output is quantised from).
    settings: every setting this image ran with, defaults and fallbacks resolved.
    tiles: per latent tile {"box": [left, top, width, height] in output px, "tags", "prompt"}.
    run: what ran (the `seesr:run` record: versions, device, dtype, threads, tiles, notes).
    """

    image: Image.Image
    prompts: list[str]
    seed: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    array: np.ndarray | None = None
    settings: UpscaleSettings | None = None
    tiles: list[dict] = field(default_factory=list)
    run: dict = field(default_factory=dict)


# One image of a group: its pixels, its resolved settings and the notes it starts with.
_Item = tuple[SourceImage, UpscaleSettings, list[str]]


class SeeSRPipeline:
    """Loaded once, reused across images. Call `upscale(image, settings)`, or `upscale_many` for
    images whose tiles should share forwards.

    `budget` (`placement.memory_budget`): a CUDA memory budget; with `budget.offload` the networks
    stay in CPU RAM and each stage brings its own to `device`; None: all of them on `device`."""

    def __init__(self, *, unet, controlnet, vae, text_encoder, tokenizer, scheduler_config, dape,
                 device: torch.device, dtype: torch.dtype, turbo: bool = False, weights: dict | None = None,
                 budget: MemoryBudget | None = None):
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.text_encoder, self.tokenizer, self.dape = text_encoder, tokenizer, dape
        self.scheduler_config = dict(scheduler_config)
        self.device, self.dtype, self.turbo = device, dtype, turbo
        self.weights = dict(weights or {})  # part -> sha256 or Hub revision (WeightPaths.provenance)
        self._forward = controlled_noise
        self.budget = budget
        networks = {"dape": dape, "text_encoder": text_encoder, "vae": vae, "controlnet": controlnet, "unet": unet}
        self.placement = Placement(networks, device, offload=budget is not None and budget.offload)

    @classmethod
    def from_pretrained(cls, paths, options: LoadOptions | None = None, **changes) -> SeeSRPipeline:
        """Load every component from resolved weight paths (`seesr_cli.weights.WeightPaths`).

        `options` (default `LoadOptions()`), with keyword `changes` to it: device, dtype, turbo,
        compile, threads (set process-wide with `torch.set_num_threads`), max_vram (GiB, CUDA),
        cpu_kernels.
        """
        from seesr_cli.pipeline.loading import load_components

        options = replace(options or LoadOptions(), **changes)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        torch_device = resolve_device(options.device)
        torch_dtype = resolve_dtype(options.dtype, torch_device)
        # Loaded in CPU RAM first on a GPU: the placement decides what goes to the card.
        home = torch.device("cpu") if torch_device.type == "cuda" else torch_device
        kernels = options.cpu_kernels if torch_device.type == "cpu" else "stock"  # home is the CPU on a GPU too
        parts = load_components(paths, device=home, dtype=torch_dtype, turbo=options.turbo, cpu_kernels=kernels)
        budget = memory_budget(options.max_vram, torch_device, parts, torch_dtype)
        pipe = cls(**parts, device=torch_device, dtype=torch_dtype, turbo=options.turbo, budget=budget,
                   weights=record.used_weights(getattr(paths, "provenance", None), options.turbo))
        if not options.compile:
            return pipe
        # Offloaded weights change address at every stage: CUDA graphs would be recorded again each time.
        return pipe.compile(mode=None) if pipe.placement.offload else pipe.compile()

    def compile(self, mode: str | None = "reduce-overhead", backend: str = "inductor") -> SeeSRPipeline:
        """torch.compile ControlNet + UNet as one graph. With CUDA graphs ("reduce-overhead")
        this removes the per-kernel launch cost that dominates a 64x64-latent step on a fast
        GPU. Each (tile shape, batch) compiles once, on its first tile (progress says so), and
        is reused for every image after it: worth it for batches. The VAE stays eager: its tiles
        take each image's own size, so it would recompile for nearly every image. On the CPU the
        stock modules are compiled (dynamo cannot trace `--cpu-kernels onednn`'s packed-weight ops;
        Inductor makes its own oneDNN fusions), and the record says "stock"."""
        from seesr_cli.models.cpu_fast import use_stock

        use_stock(self.unet, self.controlnet)
        self._forward = CompiledForward(mode, backend)
        return self

    def __call__(self, image: Image.Image | np.ndarray, settings: UpscaleSettings = UpscaleSettings(),
                 **kwargs) -> Image.Image:
        return self.upscale(image, settings, **kwargs).image

    def upscale(self, image: Image.Image | np.ndarray, settings: UpscaleSettings = UpscaleSettings(), *,
                on_progress: Callable[[ProgressEvent], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> UpscaleResult:
        """Upscale a PIL image (8 bits: the official maths) or an H x W x 3 float array in [0, 1]
        (full precision). `should_cancel` is asked at every safe point of every stage."""
        result = self.upscale_many([image], [settings], on_progress=on_progress, should_cancel=should_cancel)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def upscale_many(self, images: Sequence[Image.Image | np.ndarray],
                     settings: UpscaleSettings | Sequence[UpscaleSettings] = UpscaleSettings(), *,
                     on_progress: Callable[[ProgressEvent], None] | None = None,
                     should_cancel: Callable[[], bool] | None = None) -> list[UpscaleResult | Exception]:
        """Upscale several images together: their tiles share forwards (DAPE crops, prompts, VAE and
        latent tiles) at the run plan's fixed batches, and each image's bytes are what `upscale`
        gives it alone. `settings`: one for all, or one per image; images whose resolved settings
        differ in what shapes the forwards or the schedule (`plan.group_key`) run in separate groups.

        Each entry is that image's result or the exception that failed it (a bad input, non-finite
        values even in fp32); a failure of a whole group is retried image by image, so it stays
        the failing image's. `Cancelled` stops them all. Progress events count the group's work."""
        per_image = [settings] * len(images) if isinstance(settings, UpscaleSettings) else list(settings)
        if len(per_image) != len(images):
            raise InternalError(f"{len(images)} images but {len(per_image)} settings")
        out: list[UpscaleResult | Exception | None] = [None] * len(images)
        groups: dict[tuple, list[tuple[int, _Item]]] = {}
        for i, (image, image_settings) in enumerate(zip(images, per_image)):
            try:
                source = as_source(image)
            except UsageError as exc:  # a bad array: that image's failure
                out[i] = exc
                continue
            resolved, notes = image_settings.resolved(self.turbo, self.device.type), []
            if self.budget is not None:  # a function of --max-vram (or the card's size), never of free memory
                resolved, notes = self.budget.fit(resolved, self.device.type)
            groups.setdefault(group_key(resolved), []).append((i, (source, resolved, notes)))
        for members in groups.values():
            results = self._upscale_group([item for _, item in members], on_progress, should_cancel)
            for (i, _), result in zip(members, results):
                out[i] = result
        return out

    def _upscale_group(self, items: list[_Item], on_progress, should_cancel) -> list[UpscaleResult | Exception]:
        try:
            done = self._run(items, on_progress, should_cancel)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - handed back with its traceback, or each image retried alone
            if len(items) == 1:
                return [exc]
            return [result for item in items for result in self._upscale_group([item], on_progress, should_cancel)]
        results: list[UpscaleResult | Exception] = []
        for item, finished in zip(items, done):
            if finished.image is None and self.dtype != torch.float32:
                note = f"{FALLBACK_NOTE}{dtype_name(self.dtype)} gave non-finite values; redone in fp32"
                try:
                    finished = self._run_fp32([(item[0], finished.settings, [*finished.notes, note])],
                                              on_progress, should_cancel)[0]
                except (Cancelled, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - that image's failure, with its traceback
                    results.append(exc)
                    continue
            if finished.image is None:
                results.append(NonFiniteOutput("the model produced non-finite values even in fp32"))
                continue
            results.append(UpscaleResult(finished.image, finished.prompts.prompts, finished.settings.seed,
                                         finished.notes, finished.timings, finished.array, finished.settings,
                                         tile_records(finished), run_record(self, finished)))
        return results

    def _run_fp32(self, *args) -> list[Finished]:
        models = (self.unet, self.controlnet, self.vae, self.text_encoder)
        dtype = self.dtype
        try:
            for model in models:
                model.to(torch.float32)
            self.dtype = torch.float32
            return self._run(*args)
        finally:
            for model in models:
                model.to(dtype)
            self.dtype = dtype

    def _run(self, items: list[_Item], on_progress, should_cancel) -> list[Finished]:
        run = StageRun(self.device, should_cancel, on_progress, notes=[list(notes) for _, _, notes in items],
                       placement=self.placement)
        return run_group(self, [source for source, _, _ in items], [s for _, s, _ in items], run)

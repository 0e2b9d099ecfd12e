"""SeeSR upscaling of one image: the stages in order, and the pipeline object that holds the models.

Stages (one module each): plan (`plan`) -> prompts (`conditioning`: DAPE, text encoder) ->
LR embedding (`latents.encode_lr`) -> sampling over blended latent tiles (`denoising`) ->
VAE decode (`latents.decode`) -> colour fix and exact resize (`images`). What ran is
recorded by `record`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from seesr_cli.core import FALLBACK_NOTE, colorfix
from seesr_cli.core.denoise import controlled_noise
from seesr_cli.core.device import dtype_name, resolve_device, resolve_dtype
from seesr_cli.core.geometry import latent_tiles, plan_geometry
from seesr_cli.errors import NonFiniteOutput
from seesr_cli.pipeline import record
from seesr_cli.pipeline.conditioning import conditioning
from seesr_cli.pipeline.denoising import denoise
from seesr_cli.pipeline.images import SourceImage, as_source, control_image, finish
from seesr_cli.pipeline.latents import decode, encode_lr
from seesr_cli.pipeline.plan import Batching, plan_run
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


@dataclass(frozen=True)
class _RunOutput:
    result: UpscaleResult | None  # None: the decoded image was not finite
    settings: UpscaleSettings  # as run
    notes: list[str]


class SeeSRPipeline:
    """Loaded once, reused across images. Call `upscale(image, settings)`."""

    def __init__(self, *, unet, controlnet, vae, text_encoder, tokenizer, scheduler_config, dape,
                 device: torch.device, dtype: torch.dtype, turbo: bool = False, weights: dict | None = None):
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.text_encoder, self.tokenizer, self.dape = text_encoder, tokenizer, dape
        self.scheduler_config = dict(scheduler_config)
        self.device, self.dtype, self.turbo = device, dtype, turbo
        self.weights = dict(weights or {})  # part -> sha256 or Hub revision (WeightPaths.provenance)
        self._forward = controlled_noise

    @classmethod
    def from_pretrained(cls, paths, options: LoadOptions | None = None, **changes) -> SeeSRPipeline:
        """Load every component from resolved weight paths (`seesr_cli.weights.WeightPaths`).

        `options` (default `LoadOptions()`), with keyword `changes` to it: device, dtype, turbo,
        compile, threads (set process-wide with `torch.set_num_threads`), cpu_kernels.
        """
        from seesr_cli.pipeline.loading import load_components

        options = replace(options or LoadOptions(), **changes)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        torch_device = resolve_device(options.device)
        torch_dtype = resolve_dtype(options.dtype, torch_device)
        parts = load_components(paths, device=torch_device, dtype=torch_dtype, turbo=options.turbo,
                                cpu_kernels=options.cpu_kernels)
        pipe = cls(**parts, device=torch_device, dtype=torch_dtype, turbo=options.turbo,
                   weights=record.used_weights(getattr(paths, "provenance", None), options.turbo))
        return pipe.compile() if options.compile else pipe

    def compile(self, mode: str | None = "reduce-overhead", backend: str = "inductor") -> SeeSRPipeline:
        """torch.compile ControlNet + UNet as one graph. With CUDA graphs ("reduce-overhead")
        this removes the per-kernel launch cost that dominates a 64x64-latent step on a fast
        GPU. The first image of each tile shape pays the compile time: worth it for batches."""
        compiled = torch.compile(controlled_noise, mode=mode, backend=backend, dynamic=False)

        def forward(*args):
            if backend == "inductor" and mode in ("reduce-overhead", "max-autotune"):
                torch.compiler.cudagraph_mark_step_begin()  # the last output was consumed
            return compiled(*args)

        self._forward = forward
        return self

    def __call__(self, image: Image.Image | np.ndarray, settings: UpscaleSettings = UpscaleSettings(),
                 **kwargs) -> Image.Image:
        return self.upscale(image, settings, **kwargs).image

    def upscale(self, image: Image.Image | np.ndarray, settings: UpscaleSettings = UpscaleSettings(), *,
                on_progress: Callable[[ProgressEvent], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> UpscaleResult:
        """Upscale a PIL image (8 bits: the official maths) or an H x W x 3 float array in [0, 1]
        (full precision). `should_cancel` is asked at every safe point of every stage."""
        source = as_source(image)
        settings = settings.resolved(self.turbo, self.device.type)
        out = self._run(source, settings, on_progress, should_cancel, [])
        if out.result is None and self.dtype != torch.float32:
            note = f"{FALLBACK_NOTE}{dtype_name(self.dtype)} gave non-finite values; redone in fp32"
            out = self._run_fp32(source, out.settings, on_progress, should_cancel, [*out.notes, note])
        if out.result is None:
            raise NonFiniteOutput("the model produced non-finite values even in fp32")
        return out.result

    def _run_fp32(self, *args) -> _RunOutput:
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

    def _run(self, source: SourceImage, settings: UpscaleSettings, on_progress, should_cancel,
             notes: list[str]) -> _RunOutput:
        run = StageRun(self.device, should_cancel, on_progress, notes=list(notes))
        plan = plan_run(settings, self.device.type)
        geometry = plan_geometry(*source.size, settings)
        boxes = latent_tiles(geometry, plan.tile, plan.overlap)
        control = control_image(source, geometry, self.device)
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        parts = {"dape": self.dape, "tokenizer": self.tokenizer, "text_encoder": self.text_encoder}
        prompts = conditioning(run, parts, source.rgb, geometry, boxes, control, settings, plan, self.unet.dtype)

        height, width = geometry.latent
        # Drawn on the CPU so a seed gives the same noise on every device.
        noise = torch.randn((1, 4, height, width), generator=generator).to(self.device)
        latents, encoded = noise, Batching(plan.vae_batch, plan.vae_encoder_tile)
        if settings.start == "lr":
            latents, encoded = encode_lr(run, self.vae, control, noise, self.scheduler_config, encoded, generator)
        models = {"unet": self.unet, "controlnet": self.controlnet, "scheduler_config": self.scheduler_config}
        latents, denoised = denoise(run, models, self._forward, latents, prompts.cond, boxes, settings, plan,
                                    generator)
        decoded, decoded_with = decode(run, self.vae, latents, Batching(plan.vae_batch, plan.vae_decoder_tile))
        # What ran: the batch and tiles each stage ended with (a fallback's are smaller).
        ran = {"tile_batch": denoised.batch, "vae_encoder_tile": encoded.tile, "vae_decoder_tile": decoded_with.tile}
        settings, plan = settings.with_(**ran), replace(plan, **ran)
        if not bool(torch.isfinite(decoded).all()):
            return _RunOutput(None, settings, run.notes)

        run.check("before the colour fix")
        run.emit("colorfix", 0, 1)
        with run.timed("colorfix"):
            image, array = finish(colorfix.apply(settings.color_fix, decoded.float(), control), source, geometry.out)
        run.emit("colorfix", 1, 1)
        what_ran = record.run_record(device=self.device, dtype=self.dtype, turbo=self.turbo, plan=plan,
                                     geometry=geometry, weights=self.weights, notes=run.notes,
                                     kernels=record.kernels(self.unet, self.controlnet))
        tiles = record.tile_records(boxes, geometry, prompts.tags, prompts.prompts)
        result = UpscaleResult(image, prompts.prompts, settings.seed, run.notes, dict(run.timings), array, settings,
                               tiles, what_ran)
        return _RunOutput(result, settings, run.notes)

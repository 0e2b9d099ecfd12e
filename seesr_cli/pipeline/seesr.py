"""SeeSR upscaling of one image: prompts, LRE start, tiled guided diffusion, decode, colour fix.

Stages (one function each): geometry -> prompts (DAPE + text) -> VAE encode (LRE)
-> sampling over blended latent tiles -> VAE decode -> colour fix -> exact resize.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from PIL import Image

from seesr_cli.core import colorfix
from seesr_cli.core.denoise import GuidedDenoiser, TileConditioning, controlled_noise, sample, tiled_predictor
from seesr_cli.core.device import empty_cache, free_memory, is_out_of_memory, resolve_device, resolve_dtype
from seesr_cli.core.geometry import Geometry, latent_tiles, plan_geometry, tile_size_for
from seesr_cli.core.prompts import compose_prompt, encode_prompts
from seesr_cli.core.samplers import lre_start, make_scheduler, timesteps_for
from seesr_cli.errors import DeviceOutOfMemory, NonFiniteOutput
from seesr_cli.pipeline import vae as vae_tiles
from seesr_cli.pipeline.tagging import analyse, lr_crops
from seesr_cli.settings import LoadOptions, UpscaleSettings

__all__ = ["ProgressEvent", "SeeSRPipeline", "UpscaleResult"]

MIN_TILE = 16  # latent px: below this an OOM retry gives up
# Rough activation bytes per latent pixel per batch row of ControlNet + UNet at
# 16-bit (SDPA attention, no N^2 maps); doubled for fp32. Sizing only: an
# out-of-memory error still falls back to smaller batches and tiles.
_BYTES_PER_LATENT_PX = 40 * 1024


@dataclass(frozen=True)
class ProgressEvent:
    """stage is one of: prompts, encode, denoise, decode, colorfix."""

    stage: str
    done: int
    total: int
    tile: int | None = None
    tiles: int | None = None


@dataclass(frozen=True)
class UpscaleResult:
    image: Image.Image
    prompts: list[str]
    seed: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    tile: int
    batch: int


class _Stopwatch:
    def __init__(self, device: torch.device):
        self.device = device
        self.timings: dict[str, float] = {}

    def lap(self, stage: str, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - start
        return now


def to_tensor(image: Image.Image, device: torch.device) -> torch.Tensor:
    """PIL RGB -> 1 x 3 x H x W float32 in [0, 1] (k/255, as the official prepare_image)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    array = (tensor[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array, "RGB")


def work_image(image: Image.Image, geometry: Geometry) -> Image.Image:
    """Enlarge small inputs, upscale, then size to multiples of 8: PIL bicubic, as official."""
    if geometry.enlarged != geometry.lr:
        image = image.resize(geometry.enlarged, Image.BICUBIC)
    image = image.resize(geometry.upscaled, Image.BICUBIC)
    if geometry.work != geometry.upscaled:
        image = image.resize(geometry.work, Image.BICUBIC)
    return image


class SeeSRPipeline:
    """Loaded once, reused across images. Call `upscale(image, settings)`."""

    def __init__(self, *, unet, controlnet, vae, text_encoder, tokenizer, scheduler_config, dape,
                 device: torch.device, dtype: torch.dtype, turbo: bool = False):
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.text_encoder, self.tokenizer, self.dape = text_encoder, tokenizer, dape
        self.scheduler_config = dict(scheduler_config)
        self.device, self.dtype, self.turbo = device, dtype, turbo
        self._forward = controlled_noise

    @classmethod
    def from_pretrained(cls, paths, options: LoadOptions | None = None, **changes) -> "SeeSRPipeline":
        """Load every component from resolved weight paths (`seesr_cli.weights.WeightPaths`).

        `options` (default `LoadOptions()`), with keyword `changes` to it: device, dtype, turbo, compile.
        """
        from seesr_cli.pipeline.loading import load_components

        options = replace(options or LoadOptions(), **changes)
        torch_device = resolve_device(options.device)
        torch_dtype = resolve_dtype(options.dtype, torch_device)
        parts = load_components(paths, device=torch_device, dtype=torch_dtype, turbo=options.turbo)
        pipe = cls(**parts, device=torch_device, dtype=torch_dtype, turbo=options.turbo)
        return pipe.compile() if options.compile else pipe

    def compile(self, mode: str | None = "reduce-overhead", backend: str = "inductor") -> "SeeSRPipeline":
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

    def __call__(self, image: Image.Image, settings: UpscaleSettings = UpscaleSettings(), **kwargs) -> Image.Image:
        return self.upscale(image, settings, **kwargs).image

    def upscale(self, image: Image.Image, settings: UpscaleSettings = UpscaleSettings(), *,
                on_progress: Callable[[ProgressEvent], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> UpscaleResult:
        settings = settings.resolved(self.turbo)
        image = image.convert("RGB")
        geometry = plan_geometry(*image.size, settings)
        plan = self._initial_plan(geometry, settings)
        notes: list[str] = []
        while True:
            try:
                result = self._run(image, geometry, settings, plan, on_progress, should_cancel)
                break
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not (isinstance(exc, DeviceOutOfMemory) or is_out_of_memory(exc)):
                    raise
                empty_cache(self.device)
                plan = self._smaller(plan, exc)
                notes.append(f"out of memory: retried with tile {plan.tile}, batch {plan.batch}")
        if not result.isfinite and self.dtype != torch.float32:
            notes.append(f"{self._dtype_label()} gave non-finite values; redone in fp32")
            result = self._run_fp32(image, geometry, settings, plan, on_progress, should_cancel)
        if not result.isfinite:
            raise NonFiniteOutput("the model produced non-finite values even in fp32")
        return UpscaleResult(result.image, result.prompts, settings.seed, notes, result.timings)

    # -- planning ---------------------------------------------------------------------------

    def _initial_plan(self, geometry: Geometry, settings: UpscaleSettings) -> _Plan:
        """Tile edge (official 96, capped by memory when not given) and tiles per forward."""
        rows = 2 if settings.use_cfg else 1
        bytes_px = _BYTES_PER_LATENT_PX * (2 if self.dtype == torch.float32 else 1) * rows
        budget = max(free_memory(self.device) * 0.6, bytes_px * MIN_TILE**2)
        cap = int((budget / bytes_px) ** 0.5) // 8 * 8
        tile = tile_size_for(settings, cap=max(MIN_TILE, cap))
        if settings.tile_batch is not None:
            return _Plan(tile, settings.tile_batch)
        height, width = geometry.latent
        tile_px = min(tile, height) * min(tile, width)
        batch = int(budget // (bytes_px * tile_px))
        limit = 4 if self.device.type == "cpu" else 16
        return _Plan(tile, max(1, min(batch, limit, len(latent_tiles(geometry, tile, settings.tile_overlap)))))

    @staticmethod
    def _smaller(plan: _Plan, exc: BaseException) -> _Plan:
        if plan.batch > 1:
            return _Plan(plan.tile, plan.batch // 2)
        if plan.tile // 2 >= MIN_TILE:
            return _Plan(plan.tile // 2 // 8 * 8 or MIN_TILE, 1)
        raise DeviceOutOfMemory(
            "out of memory even with the smallest tiles; try --device cpu or a smaller --scale"
        ) from exc

    def _dtype_label(self) -> str:
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, str(self.dtype))

    def _run_fp32(self, *args):
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

    # -- the stages -------------------------------------------------------------------------

    def _run(self, image, geometry, settings, plan, on_progress, should_cancel) -> "_RunOutput":
        emit = on_progress or (lambda event: None)
        clock = _Stopwatch(self.device)
        start = time.perf_counter()
        boxes = latent_tiles(geometry, plan.tile, settings.tile_overlap)
        control = to_tensor(work_image(image, geometry), self.device)
        generator = torch.Generator("cpu").manual_seed(settings.seed)

        emit(ProgressEvent("prompts", 0, 1))
        cond, prompts = self._conditioning(image, geometry, boxes, control, settings, clock)
        emit(ProgressEvent("prompts", 1, 1))
        start = time.perf_counter()

        height, width = geometry.latent
        # Drawn on the CPU so a seed gives the same noise on every device.
        noise = torch.randn((1, 4, height, width), generator=generator).to(self.device)
        emit(ProgressEvent("encode", 0, 1))
        if settings.start == "lr":
            lr_latents = vae_tiles.encode(self.vae, control, tile=settings.vae_encoder_tile, generator=generator)
            latents = lre_start(lr_latents.float(), noise, self.scheduler_config)
        else:
            latents = noise
        emit(ProgressEvent("encode", 1, 1))
        start = clock.lap("vae_encode", start)

        latents = self._denoise(latents, cond, boxes, plan, settings, generator, emit, should_cancel)
        start = clock.lap("denoise", start)

        emit(ProgressEvent("decode", 0, 1))
        decoded = vae_tiles.decode(self.vae, latents.to(self.vae.dtype), tile=settings.vae_decoder_tile)
        emit(ProgressEvent("decode", 1, 1))
        start = clock.lap("vae_decode", start)
        isfinite = bool(torch.isfinite(decoded).all())

        emit(ProgressEvent("colorfix", 0, 1))
        fixed = colorfix.apply(settings.color_fix, decoded.float(), control)
        output = to_pil(fixed)
        if output.size != geometry.out:
            output = output.resize(geometry.out, Image.BICUBIC)  # official final resize
        emit(ProgressEvent("colorfix", 1, 1))
        clock.lap("colorfix", start)
        return _RunOutput(output, prompts, clock.timings, isfinite)

    def _conditioning(self, image, geometry, boxes, control, settings, clock):
        """Hard + soft prompts per tile (or one global), then the text encoder once per prompt."""
        start = time.perf_counter()
        embeds, probs = analyse(self.dape, lr_crops(image, geometry, boxes, settings.tile_prompts))
        tags = self.dape.hard_prompts(probs, threshold=settings.tag_threshold)
        start = clock.lap("dape", start)
        prompts = [compose_prompt(t, settings.prompt, settings.added_prompt) for t in tags]
        text = encode_prompts(self.tokenizer, self.text_encoder, prompts).to(self.unet.dtype)
        negative = None
        if settings.use_cfg:
            negative = encode_prompts(self.tokenizer, self.text_encoder, [settings.negative_prompt]).to(self.unet.dtype)
        clock.lap("text", start)
        cond = TileConditioning(text, embeds.to(self.unet.dtype), negative, control)
        return cond, prompts

    def _denoise(self, latents, cond, boxes, plan, settings, generator, emit, should_cancel):
        scheduler = make_scheduler(settings.sampler, self.scheduler_config)
        timesteps = timesteps_for(scheduler, settings.steps, self.device)
        if settings.start == "noise":
            latents = latents * scheduler.init_noise_sigma
        denoiser = GuidedDenoiser(self.unet, self.controlnet, cond, guidance=settings.guidance,
                                  conditioning_scale=settings.conditioning_scale, forward=self._forward)
        total, tiles = len(timesteps), len(boxes)
        progress = {"step": 0, "tile": 0}

        def on_tile(count: int) -> None:
            progress["tile"] += count
            emit(ProgressEvent("denoise", progress["step"], total, progress["tile"], tiles))

        def on_step(done: int) -> None:
            progress["step"], progress["tile"] = done, 0
            emit(ProgressEvent("denoise", done, total, 0, tiles))

        predict = tiled_predictor(denoiser, boxes, batch_size=plan.batch, on_tile=on_tile)
        emit(ProgressEvent("denoise", 0, total, 0, tiles))
        return sample(predict, scheduler, timesteps, latents, generator=generator,
                      on_step=on_step, should_cancel=should_cancel)


@dataclass(frozen=True)
class _RunOutput:
    image: Image.Image
    prompts: list[str]
    timings: dict[str, float]
    isfinite: bool

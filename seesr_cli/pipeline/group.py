"""A group of images through the stages together: the run behind `SeeSRPipeline.upscale_many`
(and `upscale`, a group of one).

Every stage takes the whole group: DAPE crops and prompts in one stream of fixed-size batches,
VAE and latent tiles of one shape sharing forwards, the denoise of all images in lockstep. Each
image keeps its own seed (generator), scheduler, plan of tiles and blending, so its bytes are
what they are alone: at a fixed batch shape a row's output never depends on its batch-mates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from seesr_cli.core import colorfix
from seesr_cli.core.geometry import Geometry, latent_tiles, plan_geometry
from seesr_cli.core.tiling import Box
from seesr_cli.pipeline import record
from seesr_cli.pipeline.conditioning import Prompts, conditioning
from seesr_cli.pipeline.denoising import denoise
from seesr_cli.pipeline.images import SourceImage, control_image, finish
from seesr_cli.pipeline.latents import decode, encode_lr
from seesr_cli.pipeline.plan import Batching, RunPlan, plan_run
from seesr_cli.pipeline.stage import StageRun
from seesr_cli.settings import UpscaleSettings


@dataclass(frozen=True)
class Finished:
    """One image of a group after the stages: its result's parts, or `image` None where the
    decoded image was not finite (the caller redoes it in fp32)."""

    image: object  # PIL image, or None
    array: object  # H x W x 3 float32, or None
    settings: UpscaleSettings  # as run
    plan: RunPlan  # as run
    geometry: Geometry
    boxes: list[Box]
    prompts: Prompts
    notes: list[str]
    timings: dict[str, float]
    dtype: torch.dtype  # what the networks ran in (fp32 for a rerun)


def run_group(pipe, sources: list[SourceImage], settings: list[UpscaleSettings], run: StageRun) -> list[Finished]:
    """The stages for the images of one group (their resolved settings share `plan.group_key`)."""
    device = pipe.device
    plans = [plan_run(s, device.type) for s in settings]
    plan = plans[0]  # the forwards' batches and the VAE tiles: the whole group's
    geometries = [plan_geometry(*source.size, s) for source, s in zip(sources, settings)]
    boxes = [latent_tiles(g, p.tile, p.overlap) for g, p in zip(geometries, plans)]
    controls = [control_image(source, g, device) for source, g in zip(sources, geometries)]
    generators = [torch.Generator("cpu").manual_seed(s.seed) for s in settings]
    parts = {"dape": pipe.dape, "tokenizer": pipe.tokenizer, "text_encoder": pipe.text_encoder}
    prompts = conditioning(run, parts, [s.rgb for s in sources], geometries, boxes, controls, settings, plan,
                           pipe.unet.dtype)

    # Drawn on the CPU so a seed gives the same noise on every device.
    noises = [torch.randn((1, 4, *g.latent), generator=gen).to(device) for g, gen in zip(geometries, generators)]
    latents, encoded = noises, Batching(plan.vae_batch, plan.vae_encoder_tile)
    if settings[0].start == "lr":
        latents, encoded = encode_lr(run, pipe.vae, controls, noises, pipe.scheduler_config, encoded, generators)
    models = {"unet": pipe.unet, "controlnet": pipe.controlnet, "scheduler_config": pipe.scheduler_config}
    latents, denoised = denoise(run, models, pipe._forward, latents, [p.cond for p in prompts], boxes, settings, plan,
                                generators)
    decoded, decoded_with = decode(run, pipe.vae, latents, Batching(plan.vae_batch, plan.vae_decoder_tile))
    # What ran: the batch and tiles each stage ended with (a fallback's are smaller).
    ran = {"tile_batch": denoised.batch, "vae_encoder_tile": encoded.tile, "vae_decoder_tile": decoded_with.tile}
    out = []
    for i, source in enumerate(sources):
        image_settings, image_plan = settings[i].with_(**ran), replace(plans[i], **ran)
        image, array = None, None
        if bool(torch.isfinite(decoded[i]).all()):
            run.check("before the colour fix")
            run.emit("colorfix", 0, 1)
            with run.timed("colorfix", [float(j == i) for j in range(len(sources))]):
                fixed = colorfix.apply(image_settings.color_fix, decoded[i].float(), controls[i])
                image, array = finish(fixed, source, geometries[i].out)
            run.emit("colorfix", 1, 1)
        out.append(Finished(image, array, image_settings, image_plan, geometries[i], boxes[i], prompts[i],
                            run.notes[i], dict(run.timings[i]), pipe.dtype))
    return out


def run_record(pipe, done: Finished) -> dict:
    """The `seesr:run` record of a finished image."""
    return record.run_record(device=pipe.device, dtype=done.dtype, turbo=pipe.turbo, plan=done.plan,
                             geometry=done.geometry, weights=pipe.weights, notes=done.notes,
                             kernels=record.kernels(pipe.unet, pipe.controlnet),
                             compiled=getattr(pipe._forward, "name", "no"))


def tile_records(done: Finished) -> list[dict]:
    return record.tile_records(done.boxes, done.geometry, done.prompts.tags, done.prompts.prompts)

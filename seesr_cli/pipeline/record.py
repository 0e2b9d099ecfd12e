"""What ran, as a result records it (`seesr:run` and `seesr:tiles`): never None, never "auto".

`RUN_FORMAT` is the version of this record; `seesr upscale --like` refuses results without it.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch

from seesr_cli import __version__
from seesr_cli.core.device import dtype_name
from seesr_cli.core.geometry import LATENT_FACTOR, Geometry
from seesr_cli.core.tiling import Box
from seesr_cli.pipeline.plan import RunPlan

RUN_FORMAT = 2


@cache
def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"seesr_cli": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return _cpu_name()


@cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def used_weights(provenance, turbo: bool) -> dict[str, str]:
    """The provenance of the parts a pipeline loads: SD2-base's or sd-turbo's, not both."""
    unused = "sd2" if turbo else "turbo"
    return {part: value for part, value in (provenance or {}).items() if part.split("/")[0] != unused}


def output_box(box: Box, geometry: Geometry) -> list[int]:
    """A latent tile as [left, top, width, height] in OUTPUT pixels (the final resize included)."""
    (work_w, work_h), (out_w, out_h) = geometry.work, geometry.out
    left = round(box.left * LATENT_FACTOR * out_w / work_w)
    top = round(box.top * LATENT_FACTOR * out_h / work_h)
    right = round(box.right * LATENT_FACTOR * out_w / work_w)
    bottom = round(box.bottom * LATENT_FACTOR * out_h / work_h)
    return [left, top, max(1, right - left), max(1, bottom - top)]


def tile_records(boxes: list[Box], geometry: Geometry, tags: list[list[str]], prompts: list[str]) -> list[dict]:
    """One entry per latent tile; with one global prompt every tile gets its tags."""
    def row(i: int) -> int:
        return 0 if len(prompts) == 1 else i

    return [{"box": output_box(box, geometry), "tags": list(tags[row(i)]), "prompt": prompts[row(i)]}
            for i, box in enumerate(boxes)]


def kernels(*models) -> str:
    """Which ControlNet + UNet kernels ran: "onednn" (`seesr_cli.models.cpu_fast`) or "stock"."""
    from seesr_cli.models.cpu_fast import kernels_in_use

    return kernels_in_use(*models)


def run_record(*, device: torch.device, dtype: torch.dtype, turbo: bool, plan: RunPlan, geometry: Geometry,
               weights: dict[str, str], notes: list[str], kernels: str, compiled: str = "no") -> dict:
    """The `seesr:run` block: versions, where and how it ran, the effective tiles and batches.

    No timings: an image's bytes depend only on the image, its settings and what ran, never on how
    long it took (the seconds per stage travel with the run's results into the report instead).
    kernels: "onednn" or "stock" (`kernels`): on the CPU they round differently. compiled: "no",
    or the torch.compile backend (and mode) of ControlNet+UNet (`--compile`), which rounds
    differently from eager."""
    return {
        "format": RUN_FORMAT,
        **library_versions(),
        "device": device.type,
        "device_name": device_name(device),
        "dtype": dtype_name(dtype),
        "threads": torch.get_num_threads(),
        "kernels": kernels,
        "compiled": compiled,
        "turbo": turbo,
        "tile": plan.tile,
        "overlap": plan.overlap,
        "tile_batch": plan.tile_batch,
        "vae_encoder_tile": plan.vae_encoder_tile,
        "vae_decoder_tile": plan.vae_decoder_tile,
        "input_size": list(geometry.lr),
        "output_size": list(geometry.out),
        "weights": dict(weights),
        "notes": list(notes),
    }

"""Up-front option checks: every option against the others and the defaults, before any model loads.

Each failure is a UsageError (exit 2) naming the option, the value and what to do. Checks that
need torch (device, dtype) are skipped for `--dry-run`, which must answer without it.
"""

from __future__ import annotations

from pathlib import Path

from seesr_cli.errors import UsageError
from seesr_cli.settings import DEFAULT_OVERLAP, TURBO_OVERLAP, LoadOptions, UpscaleSettings
from seesr_cli.weights.cache import weights_folder

MAX_SCALE = 16.0  # SeeSR is trained for x4; beyond x16 a second pass over the result does better


def check_scale(scale: float) -> None:
    if scale > MAX_SCALE:
        raise UsageError(f"--scale {scale:g}: at most {MAX_SCALE:g} (SeeSR is trained for x4); "
                         "for more, upscale the result again")


def check_tiles(settings: UpscaleSettings, *, turbo: bool = False) -> None:
    """The overlap against the tile size, defaults included (never silently lowered later)."""
    if (settings.tile_size is None) == (settings.tile_overlap is None):
        return  # both defaults (they fit), or both given (UpscaleSettings checked them)
    from seesr_cli.core.geometry import DEFAULT_TILE

    tile = settings.tile_size or DEFAULT_TILE
    default_overlap = TURBO_OVERLAP if turbo else DEFAULT_OVERLAP
    overlap = settings.tile_overlap if settings.tile_overlap is not None else default_overlap
    if overlap < tile:
        return
    if settings.tile_size is None:
        raise UsageError(f"--tile-overlap {overlap} must be smaller than the tile size (default {tile} latent px); "
                         "lower it, or give a larger --tile-size")
    raise UsageError(f"--tile-size {tile} must be larger than the tile overlap (default {overlap} latent px"
                     f"{' with --turbo' if turbo else ''}); give a larger --tile-size or a smaller --tile-overlap")


def check_device(load: LoadOptions) -> list[str]:
    """The device exists here and the dtype suits it. Returns notes to show (costs worth knowing)."""
    import torch

    from seesr_cli.core.device import resolve_device

    name = load.device
    if name != "auto" and name.split(":")[0] == "cuda" and not torch.cuda.is_available():
        build = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UsageError(f"--device {name}: CUDA is not available ({build}); use --device cpu, or auto")
    try:
        device = resolve_device(name)
    except UsageError as exc:
        raise UsageError(f"--device {name}: {exc}") from None
    if load.max_vram is not None:
        if device.type != "cuda":
            raise UsageError(f"--max-vram applies to CUDA GPUs; the device here is {device.type}")
        from seesr_cli.core.device import resolve_dtype
        from seesr_cli.pipeline.placement import check_max_vram

        check_max_vram(load.max_vram, resolve_dtype(load.dtype, device))
    if device.type != "cpu":
        return []
    # Measured on an AVX-512 CPU (torch 2.13, one thread): a 64-channel 3x3 convolution takes
    # 13.5 ms in fp32, 1447 ms in fp16 (~100x) and 7.1 ms in bf16.
    if load.dtype == "fp16":
        raise UsageError("--dtype fp16 on the CPU: CPUs compute half precision tens of times slower than fp32 "
                         "(measured ~100x per convolution), with no memory gain that matters here; use fp32 "
                         "(the CPU default), bf16, or a GPU")
    if load.dtype == "bf16":
        return [("--dtype bf16 on the CPU: about 2x faster than fp32 on CPUs with bf16 instructions (AVX-512 BF16, "
                 "AMX), several times slower on others; results differ slightly from fp32 (the CPU default)")]
    return []


def check_upscale(settings: UpscaleSettings, load: LoadOptions, *, weights: Path | None) -> None:
    """What `seesr upscale` checks before planning (the device comes after the plan: it needs torch,
    and the plan's own refusals of -o need nothing)."""
    check_scale(settings.scale)
    weights_folder(weights)  # --weights, else SEESR_WEIGHTS: named as what it is
    check_tiles(settings, turbo=load.turbo)


def check_tag(settings: UpscaleSettings, *, weights: Path | None, device: str) -> None:
    """What `seesr tag` can check before loading DAPE."""
    check_scale(settings.scale)
    weights_folder(weights)
    check_tiles(settings)
    check_device(LoadOptions(device=device))

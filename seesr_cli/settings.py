"""Settings, as two frozen, validated dataclasses passed explicitly.

`UpscaleSettings` is what an image gets (it changes the pixels and is recorded in every
result); `LoadOptions` is how the pipeline is loaded (device, dtype, turbo base, compile,
CPU threads and kernels).
Defaults are the official `test_seesr.py` ones (SEESR.md section 3) unless a comment says
why we differ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from seesr_cli.errors import UsageError

SAMPLERS = ("ddpm", "ddim", "unipc", "dpmpp")
COLOR_FIXES = ("adain", "wavelet", "none")
STARTS = ("lr", "noise")
TILE_PROMPTS = ("tile", "global")
DTYPES = ("auto", "fp32", "fp16", "bf16")
CPU_KERNELS = ("onednn", "stock")  # seesr_cli.models.cpu_fast, or PyTorch's own modules
TILE_WINDOWS = ("linear", "gaussian")  # core.tiling.WINDOWS; "gaussian" is the official window
DEFAULT_GUIDANCE = 5.5
DEFAULT_OVERLAP = 16  # latent px (official script: 4); per-tile prompts want a wider cross-fade

DEFAULT_ADDED_PROMPT = "clean, high-resolution, 8k"
DEFAULT_NEGATIVE_PROMPT = "dotted, noise, blur, lowres, smooth"

# Official step counts per sampler; DDPM is the paper's, the others are the
# counts at which those solvers usually converge for SD2.
DEFAULT_STEPS = {"ddpm": 50, "ddim": 50, "unipc": 20, "dpmpp": 20}
TURBO_STEPS = 2
TURBO_OVERLAP = 32  # official test_seesr_turbo.py
DEFAULT_TILE = 96  # latent px: the official script's latent_tiled_size

# Rows per forward of every batched network (ControlNet+UNet tiles, DAPE crops, text prompts),
# fixed per device kind and never taken from free memory. At a fixed batch shape a row's
# output is bit-identical whatever the other rows hold, so a partial batch is padded and a
# tile's result never depends on which tiles share its forward.
# - cpu 1: one 96x96 tile already keeps every core busy; a larger batch is no faster per
#   tile and its padding would be pure waste.
# - cuda 8: 16 rows with guidance fill a large GPU (issue 13's throughput) and fit in ~6 GB
#   of fp16 activations; a smaller card falls back to fewer on out of memory, with a note.
# - mps 2: unified memory is shared with the whole system, and MPS kernels gain little
#   from wider batches.
DEVICE_BATCH = {"cpu": 1, "cuda": 8, "mps": 2}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(name: str, value: float | None, *, minimum: float = 0, inclusive: bool = False) -> None:
    if value is None:
        return
    ok = value >= minimum if inclusive else value > minimum
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise UsageError(f"{name} must be {bound}; got {value!r}")


@dataclass(frozen=True)
class UpscaleSettings:
    """Everything that decides an image's pixels; validated on construction.

    None means "the model's default" (e.g. 2 steps and no guidance for SeeSR-Turbo): the
    pipeline fills those in with `resolved(turbo)` before running, and records that."""

    scale: float = 4.0
    process_size: int = 512
    steps: int | None = None  # None: the sampler's default (turbo: 2)
    guidance: float | None = None  # None: 5.5 (turbo: 1.0, no unconditional branch)
    seed: int = 0
    prompt: str = ""
    added_prompt: str = DEFAULT_ADDED_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    conditioning_scale: float = 1.0
    start: str = "lr"
    sampler: str = "ddpm"
    color_fix: str = "adain"
    # Latent tiling, in latent pixels (x8 in the image). None: 96 as the official script.
    tile_size: int | None = None
    tile_overlap: int | None = None  # None: 16 (turbo: 32), below the tile size
    tile_batch: int | None = None  # None: DEVICE_BATCH of the device kind that runs it
    tile_prompts: str = "tile"
    tile_window: str = "linear"  # blend window of the latent tiles; "gaussian": the official one
    vae_encoder_tile: int = 1024  # image pixels, official
    vae_decoder_tile: int = 224  # latent pixels, official
    tag_threshold: float | None = None  # None: DAPE's per-class thresholds

    def __post_init__(self) -> None:
        _positive("scale", self.scale, minimum=1, inclusive=True)
        _positive("process_size", self.process_size, minimum=8, inclusive=True)
        _positive("steps", self.steps, minimum=1, inclusive=True)
        _positive("guidance", self.guidance, minimum=0, inclusive=True)
        _positive("conditioning_scale", self.conditioning_scale, minimum=0, inclusive=True)
        _positive("tile_size", self.tile_size, minimum=8, inclusive=True)
        _positive("tile_overlap", self.tile_overlap, minimum=0, inclusive=True)
        _positive("tile_batch", self.tile_batch, minimum=1, inclusive=True)
        _positive("vae_encoder_tile", self.vae_encoder_tile, minimum=64, inclusive=True)
        _positive("vae_decoder_tile", self.vae_decoder_tile, minimum=8, inclusive=True)
        if self.tag_threshold is not None and not 0 <= self.tag_threshold <= 1:
            raise UsageError(f"tag_threshold must be in [0, 1]; got {self.tag_threshold!r}")
        if self.steps is not None and self.steps > 1000:
            raise UsageError(f"steps must be <= 1000; got {self.steps}")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"seed must be in [0, 2**63); got {self.seed}")
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("color_fix", self.color_fix, COLOR_FIXES)
        _choice("start", self.start, STARTS)
        _choice("tile_prompts", self.tile_prompts, TILE_PROMPTS)
        _choice("tile_window", self.tile_window, TILE_WINDOWS)
        if self.tile_size is not None and self.tile_overlap is not None and self.tile_overlap >= self.tile_size:
            raise UsageError(
                f"tile_overlap ({self.tile_overlap}) must be smaller than tile_size ({self.tile_size})"
            )

    def resolved(self, turbo: bool = False, device: str | None = None) -> UpscaleSettings:
        """Every default filled in (steps, guidance, tile size and overlap) for a pipeline loaded
        with `turbo`; with `device` (the device kind: cpu, cuda, mps) also the tile batch.

        A default overlap stays below the tile; an explicit one that does not is refused."""
        steps = self.steps if self.steps is not None else (TURBO_STEPS if turbo else DEFAULT_STEPS[self.sampler])
        guidance = self.guidance if self.guidance is not None else (1.0 if turbo else DEFAULT_GUIDANCE)
        tile = self.tile_size if self.tile_size is not None else DEFAULT_TILE
        overlap = self.tile_overlap
        if overlap is None:
            overlap = min(TURBO_OVERLAP if turbo else DEFAULT_OVERLAP, tile - 1)
        batch = self.tile_batch
        if batch is None and device is not None:
            if device not in DEVICE_BATCH:
                raise UsageError(f"unknown device kind {device!r} (use {', '.join(DEVICE_BATCH)})")
            batch = DEVICE_BATCH[device]
        return replace(self, steps=steps, guidance=guidance, tile_size=tile, tile_overlap=overlap, tile_batch=batch)

    @property
    def use_cfg(self) -> bool:
        """Classifier-free guidance at 1.0 is the conditional branch alone: skip the other."""
        return self.guidance is None or self.guidance != 1.0

    def with_(self, **changes: Any) -> UpscaleSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpscaleSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown settings: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class LoadOptions:
    """How the pipeline is loaded: where it runs, in what precision, on which base.

    device: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps. dtype: auto (fp16
    on accelerators as the official script, fp32 on the CPU), fp32, fp16 or bf16. turbo: the
    SD-Turbo base (official test_seesr_turbo.py). compile: torch.compile ControlNet + UNet.
    threads: torch's intra-op CPU threads (process-wide; None: leave torch's own count). On
    the CPU the thread count changes float rounding, so results record it. max_vram: a CUDA
    memory budget in GiB (`pipeline/placement.py`): networks kept in CPU RAM between their
    stages and smaller tiles where needed; None: the card's own size decides.
    cpu_kernels: on the CPU in fp32, "onednn" runs ControlNet + UNet through
    `seesr_cli.models.cpu_fast` (0.8-0.9x the CPU time; the same maths, pixels differ by float
    rounding), "stock" through PyTorch's own modules. Results record which ran.
    """

    device: str = "auto"
    dtype: str = "auto"
    turbo: bool = False
    compile: bool = False
    threads: int | None = None
    max_vram: float | None = None  # GiB
    cpu_kernels: str = "onednn"

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, DTYPES)
        _choice("cpu_kernels", self.cpu_kernels, CPU_KERNELS)
        if self.max_vram is not None and (isinstance(self.max_vram, bool) or not isinstance(self.max_vram, (int, float))
                                          or not math.isfinite(self.max_vram) or self.max_vram <= 0):
            raise UsageError(f"max_vram (--max-vram) must be a number of GiB > 0; got {self.max_vram!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise UsageError(f"threads (--threads) must be a whole number >= 1; got {self.threads!r}")
        if not isinstance(self.device, str) or not self.device:
            raise UsageError(f"device must be a name such as auto, cpu or cuda:0; got {self.device!r}")

"""Which network lives where, and when; what a CUDA memory budget allows.

Two placements. Resident (the default): every network sits on the device for good. Offload
(`--max-vram`, or a card smaller than the resident plan needs): every network keeps its
weights in CPU RAM, and each stage copies its own networks to the device while it runs
(`Placement.stage`: DAPE for tagging, the text encoder, the VAE for its encode and decode,
ControlNet+UNet for the denoise), then points them back at the CPU copy. Nothing is copied
back: inference never changes a weight. The copies are exact, so with the same tiles and
batches an offloaded run gives the same pixels as a resident one.

Why `.to()`-style copies at stage boundaries rather than accelerate's offload hooks: a stage
calls its network hundreds of times (50 steps x tiles) and knows when it starts and ends, so
one copy per stage is the whole cost. accelerate's `cpu_offload` moves every layer at every
forward, and `cpu_offload_with_hook` moves a model on its first forward, inside what
`torch.compile` traces; hooks would also hide from the stages when the copies happen.

A budget (`MemoryBudget`) also caps the tile batch and the VAE tiles, from an estimate of
each stage's memory (weights counted exactly, activations from per-pixel constants below).
The budget is the `--max-vram` value or the card's total memory, never what is free: the
same card and options give the same tiles, and they are recorded with the result as every
setting that changes pixels is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from seesr_cli.core.device import dtype_name, empty_cache
from seesr_cli.errors import UsageError
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

GIB = 1 << 30
# The networks of each stage (keys of the pipeline's parts). The VAE moves whole for its
# encode and for its decode: 84 M parameters, 0.16 GiB in fp16; moving only the encoder or
# only the decoder would save 0.07 GiB.
STAGE_NETWORKS = {"dape": ("dape",), "text": ("text_encoder",), "vae_encode": ("vae",),
                  "denoise": ("controlnet", "unet"), "vae_decode": ("vae",)}

# Activation estimates, bytes per element-byte of the pipeline's dtype (x2 in fp16/bf16, x4
# in fp32). Measured on the CPU (peak RSS, fp32, full-size random weights): the VAE decoder
# ~4.0 KB per output pixel, the encoder ~2.6 KB per input pixel, ControlNet+UNet ~84 KB per
# latent pixel per row at 64x64 (fixed costs included). Rounded up: a budget errs towards
# smaller tiles. The H100's 2048x2048 fp16 peak (12.1 GiB: 4.6 weights + a 224-latent VAE
# decoder tile) agrees with the decoder figure. bench/gpu_suite.py measures each stage's peak.
DENOISE_PER_LATENT_PX = 20_000  # per row (a tile in one guidance branch)
DECODE_PER_PX = 1_300  # output pixel of a decoder tile
ENCODE_PER_PX = 700  # input pixel of an encoder tile
DAPE_PER_CROP = 200 << 20  # fp32 whatever the pipeline's dtype (384x384 Swin-L)
TEXT_PER_PROMPT = 32 << 20
STAGE_FIXED = 256 << 20  # workspaces (cuBLAS, cuDNN), the latents, the control image
CARD_RESERVED = 1 * GIB  # of a card's total: the CUDA context, other processes, the display


# Parameters of the official networks (SD2-base + SeeSR + RAM's Swin-L DAPE): `check_max_vram`
# answers before any weight loads; the loaded pipeline counts its own.
OFFICIAL_PARAMETERS = {"unet": 1_126_760_324, "controlnet": 489_031_440, "vae": 83_653_863,
                       "text_encoder": 340_387_840, "dape": 212_117_045}


def _reserve(limit: int) -> int:
    """Left unplanned inside a budget: the allocator's fragmentation."""
    return max(GIB // 2, limit // 10)


def network_bytes(networks: Mapping[str, nn.Module]) -> dict[str, int]:
    """Bytes of each network's parameters and buffers, as loaded."""
    return {name: sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
            for name, module in networks.items()}


# ----------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class MemoryBudget:
    """A CUDA memory budget and the placement it calls for. `limit`: bytes the allocator may use."""

    limit: int
    source: str  # how the budget was set: "--max-vram 8", "the card's 7.6 GiB"
    offload: bool
    weights: Mapping[str, int]  # bytes per network (`network_bytes`)
    dtype_bytes: int  # element size of the pipeline's dtype (DAPE is float32 regardless)

    @property
    def usable(self) -> int:
        return self.limit - _reserve(self.limit)

    def stage_need(self, stage: str, settings: UpscaleSettings, device: str) -> int:
        """Estimated peak bytes of `stage` at these (resolved) settings: its activations, the
        weights on the device meanwhile (its own if offloading, else all) and workspaces."""
        weights = sum(self.weights.get(n, 0) for n in STAGE_NETWORKS[stage]) if self.offload else \
            sum(self.weights.values())
        return weights + STAGE_FIXED + _activations(stage, settings, device, self.dtype_bytes)

    def need(self, settings: UpscaleSettings, device: str) -> int:
        return max(self.stage_need(stage, settings, device) for stage in STAGE_NETWORKS)

    def fit(self, settings: UpscaleSettings, device: str) -> tuple[UpscaleSettings, list[str]]:
        """The settings (resolved for `device`) with the tile batch and VAE tiles capped to what fits,
        and notes saying what changed. A cap: values already small enough stay as they are."""
        fitted = settings
        for name, stage, smaller in _KNOBS:
            options = smaller(getattr(settings, name))
            fits = [v for v in options if self.stage_need(stage, fitted.with_(**{name: v}), device) <= self.usable]
            fitted = fitted.with_(**{name: fits[0] if fits else options[-1]})
        changed = [f"{_KNOB_NAMES[name]} {getattr(settings, name)} -> {getattr(fitted, name)}"
                   for name, _, _ in _KNOBS if getattr(fitted, name) != getattr(settings, name)]
        notes = []
        if self.offload:
            notes.append(f"{self.source}: networks kept in CPU RAM, each copied to the GPU for its stage")
        if changed:
            notes.append(f"{self.source}: " + ", ".join(changed) + " (to fit the budget)")
        need = self.need(fitted, device)
        if need > self.usable:
            notes.append(f"{self.source}: estimated {need / GIB:.1f} GiB even so; out of memory, stages fall back")
        return fitted, notes


def _activations(stage: str, s: UpscaleSettings, device: str, dtype_bytes: int) -> int:
    if stage == "dape":
        return DAPE_PER_CROP * DEVICE_BATCH[device]
    if stage == "text":
        return TEXT_PER_PROMPT * DEVICE_BATCH[device]
    if stage == "vae_encode":
        return ENCODE_PER_PX * dtype_bytes * s.vae_encoder_tile ** 2
    if stage == "vae_decode":
        return DECODE_PER_PX * dtype_bytes * (8 * s.vae_decoder_tile) ** 2
    rows = s.tile_batch * (2 if s.use_cfg else 1)
    return DENOISE_PER_LATENT_PX * dtype_bytes * s.tile_size ** 2 * rows


def _halves(value: int) -> list[int]:
    out = [value]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


def _steps_below(step: int, minimum: int) -> Callable[[int], list[int]]:
    def options(value: int) -> list[int]:
        below = range((value - 1) // step * step, minimum - 1, -step)
        return [value, *below] if value > minimum else [value]
    return options


# (setting, the stage it sizes, its candidates from the current value down), fitted in this order.
_KNOBS = (("tile_batch", "denoise", _halves),
          ("vae_encoder_tile", "vae_encode", _steps_below(128, 128)),
          ("vae_decoder_tile", "vae_decode", _steps_below(32, 32)))
_KNOB_NAMES = {"tile_batch": "tile batch", "vae_encoder_tile": "VAE encoder tile",
               "vae_decoder_tile": "VAE decoder tile"}


def plan_budget(limit: int, source: str, weights: Mapping[str, int], dtype_bytes: int, device: str, *,
                strict: bool) -> MemoryBudget:
    """Resident if every network plus the default plan's largest stage fits in `limit`, else offload.
    `strict` (an explicit --max-vram): refuse a budget that even offloading at the smallest tiles
    would exceed; else (the card's size) offload and let the stages' out-of-memory fallbacks work."""
    default = UpscaleSettings().resolved(False, device)
    resident = MemoryBudget(limit, source, False, dict(weights), dtype_bytes)
    if resident.need(default, device) <= resident.usable:
        return resident
    offload = MemoryBudget(limit, source, True, dict(weights), dtype_bytes)
    smallest = default.with_(tile_batch=1, vae_encoder_tile=128, vae_decoder_tile=32)
    need = offload.need(smallest, device)
    if strict and need > offload.usable:
        denoise = (weights.get("unet", 0) + weights.get("controlnet", 0)) / GIB
        raise UsageError(f"{source}: too small; SeeSR needs about {(need + _reserve(need)) / GIB:.1f} GiB even with "
                         f"each network on the GPU only for its stage and the smallest tiles (the ControlNet+UNet "
                         f"weights alone are {denoise:.1f} GiB)")
    return offload


def check_max_vram(max_vram: float, dtype: torch.dtype) -> MemoryBudget:
    """The budget `--max-vram` gives the official networks in `dtype` (DAPE in fp32); UsageError
    if it is too small. Before loading: a bad value is a usage error, not a failure per image."""
    size = torch.tensor([], dtype=dtype).element_size()
    weights = {name: count * (4 if name == "dape" else size) for name, count in OFFICIAL_PARAMETERS.items()}
    return plan_budget(int(max_vram * GIB), f"--max-vram {max_vram:g}", weights, size, "cuda", strict=True)


def memory_budget(max_vram: float | None, device: torch.device, networks: Mapping[str, nn.Module],
                  dtype: torch.dtype) -> MemoryBudget | None:
    """The budget of a pipeline about to run on `device`: `max_vram` GiB, else (CUDA) the card's
    total memory less `CARD_RESERVED` when the resident plan does not fit in it; None: unconstrained."""
    if max_vram is not None and device.type != "cuda":
        raise UsageError(f"--max-vram applies to CUDA GPUs; the device here is {device.type}")
    if device.type != "cuda":
        return None
    weights, size = network_bytes(networks), torch.tensor([], dtype=dtype).element_size()
    if max_vram is not None:
        return plan_budget(int(max_vram * GIB), f"--max-vram {max_vram:g}", weights, size, device.type, strict=True)
    total = torch.cuda.get_device_properties(device).total_memory
    resident = MemoryBudget(total - CARD_RESERVED, "", False, weights, size)
    need = resident.need(UpscaleSettings().resolved(False, device.type), device.type)
    if need <= resident.usable:
        return None  # the default: nothing changes on a card that holds everything
    source = (f"the card's {total / GIB:.1f} GiB (below the ~{(need + _reserve(need)) / GIB:.1f} GiB that keeping "
              f"every network on it needs in {dtype_name(dtype)}; --max-vram sets a budget)")
    return plan_budget(resident.limit, source, weights, size, device.type, strict=False)


# ----------------------------------------------------------------------------- placement


class _Home:
    """One network's tensors: kept in CPU RAM (pinned for fast copies to a GPU); while its stage
    runs, the parameters and buffers point at copies on the device instead."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.device = device
        self.slots = [(owner, kind, name) for owner in module.modules() for kind in ("_parameters", "_buffers")
                      for name, tensor in getattr(owner, kind).items() if tensor is not None]
        self.home: dict[int, torch.Tensor] = {}
        self.pin = device.type == "cuda"
        for index in range(len(self.slots)):
            self._set(index, self._at_home(index))

    def _get(self, index: int) -> torch.Tensor:
        owner, kind, name = self.slots[index]
        return getattr(owner, kind)[name]

    def _set(self, index: int, tensor: torch.Tensor) -> None:
        owner, kind, name = self.slots[index]
        if kind == "_parameters":
            owner._parameters[name].data = tensor  # the Parameter object stays: compiled graphs keep it
        else:
            owner._buffers[name] = tensor

    def _at_home(self, index: int) -> torch.Tensor:
        """The slot's CPU tensor (a cast while at home, e.g. the fp32 redo, replaces it)."""
        tensor = self._get(index).detach()
        if tensor.device.type != "cpu":
            tensor = tensor.to("cpu")
        if self.pin and not tensor.is_pinned():
            tensor = tensor.pin_memory()
        self.home[index] = tensor
        return tensor

    def load(self) -> None:
        for index in range(len(self.slots)):
            source = self._at_home(index)
            # copy=True: a real copy even when the "device" is the CPU (the tests' stand-in for a GPU).
            self._set(index, source.to(self.device, non_blocking=self.pin, copy=True))

    def unload(self) -> None:
        for index in range(len(self.slots)):
            self._set(index, self.home[index])


class Placement:
    """Where the networks are. Resident: all on `device`, `stage` does nothing. Offload: all in CPU
    RAM, `stage(name)` holds that stage's networks on `device` for the duration of the block.

    `on_move(action, stage, seconds)` hears each "load"/"unload" (tests, the GPU suite)."""

    def __init__(self, networks: Mapping[str, nn.Module], device: torch.device, *, offload: bool,
                 on_move: Callable[[str, str, float], None] | None = None):
        self.device, self.offload, self.on_move = device, offload, on_move
        self._homes: dict[str, _Home] = {}
        for name, module in networks.items():
            if offload:
                self._homes[name] = _Home(module, device)
            else:
                module.to(device)
        if offload:
            empty_cache(device)  # what the resident copies held goes back to the card

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        homes = [self._homes[n] for n in STAGE_NETWORKS.get(stage, ()) if n in self._homes]
        if not homes:
            yield
            return
        self._move("load", stage, homes)
        try:
            yield
        finally:
            self._move("unload", stage, homes)

    def _move(self, action: str, stage: str, homes: list[_Home]) -> None:
        start = time.perf_counter()
        for home in homes:
            getattr(home, action)()
        if self.on_move is not None:
            self.on_move(action, stage, time.perf_counter() - start)

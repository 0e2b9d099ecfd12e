"""Samplers (diffusers schedulers) and the LR-embedding (LRE) start point."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UniPCMultistepScheduler,
)

from seesr_cli.errors import InternalError

# SeeSR embeds the LR latent at the last training timestep (paper section 3.3;
# official `start_steps=999`).
LRE_TIMESTEP = 999

_SCHEDULERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "unipc": UniPCMultistepScheduler,
    "dpmpp": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, config: dict[str, Any]):
    """A fresh scheduler of the chosen kind, built from the base model's scheduler config.

    DDPM keeps the config untouched (official: SD2-base's "leading" spacing, so 50
    steps start at t=981 on latents noised to t=999). The other solvers use
    "trailing" spacing so their first step is exactly the LRE timestep 999, which
    multistep solvers assume.
    """
    if name not in _SCHEDULERS:
        raise InternalError(f"unknown sampler {name!r}; choose one of {', '.join(_SCHEDULERS)}")
    overrides: dict[str, Any] = {}
    if name != "ddpm":
        overrides["timestep_spacing"] = "trailing"
    if name == "dpmpp":
        overrides["algorithm_type"] = "dpmsolver++"
    return _SCHEDULERS[name].from_config(config, **overrides)


def timesteps_for(scheduler, steps: int, device: torch.device) -> torch.Tensor:
    """The schedule, skipping timesteps above the LRE start (official behaviour)."""
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    return timesteps[timesteps <= LRE_TIMESTEP]


def alphas_cumprod(config: dict[str, Any]) -> torch.Tensor:
    """The training noise schedule (VP), shared by every sampler above."""
    return DDPMScheduler.from_config(config).alphas_cumprod


def lre_start(lr_latents: torch.Tensor, noise: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """Diffuse the LR latent to t=999: sqrt(a) * z_lr + sqrt(1 - a) * noise.

    Computed from the training schedule directly, so it is the same for every
    sampler (equal to DDPMScheduler.add_noise at t=999, as the official code calls).
    """
    alpha = alphas_cumprod(config)[LRE_TIMESTEP].to(device=lr_latents.device, dtype=torch.float32)
    mixed = alpha.sqrt() * lr_latents.float() + (1 - alpha).sqrt() * noise.float()
    return mixed.to(lr_latents.dtype)

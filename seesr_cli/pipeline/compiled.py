"""ControlNet + UNet under torch.compile: one graph per input shape (tile shape x batch rows).

`dynamic=False`: each shape gets its own static graph (and CUDA graph), compiled on its first
call and reused for every later tile of that shape, whatever image it belongs to. The
inputs are made contiguous, so a tile's strides (which follow its image's width) never
force a recompile. The denoise stage asks `compiles(sample)` first, to say in progress
that a compile is under way.
"""

from __future__ import annotations

import torch

from seesr_cli.core.denoise import controlled_noise

# Dynamo's default of 8 graphs per function is fewer than the tile shapes of a batch of mixed
# sizes (images below the tile size each bring theirs); past it, every new shape would run eager.
RECOMPILE_LIMIT = 64


class CompiledForward:
    """A drop-in for `controlled_noise` (the denoiser's `forward`), compiled once per input shape."""

    def __init__(self, mode: str | None = "reduce-overhead", backend: str = "inductor"):
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        self.compiled = torch.compile(controlled_noise, mode=mode, backend=backend, dynamic=False)
        # CUDA graphs replay into the same output memory: mark each step, and copy the output out
        # (a group's images hold their predictions across the calls of the others).
        self.cuda_graphs = backend == "inductor" and mode in ("reduce-overhead", "max-autotune")
        self.shapes: set[tuple[int, ...]] = set()
        # What a result records (`seesr:run` "compiled"): fusions round differently from eager.
        self.name = backend if mode is None else f"{backend} ({mode})"

    def compiles(self, sample: torch.Tensor) -> bool:
        """Whether a call with this sample compiles a graph first (its shape not seen yet)."""
        return tuple(sample.shape) not in self.shapes

    def __call__(self, unet, controlnet, sample, t, text, image, control, conditioning_scale: float) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last output was consumed
        out = self.compiled(unet, controlnet, sample.contiguous(), t, text.contiguous(), image.contiguous(),
                            control.contiguous(), conditioning_scale)
        self.shapes.add(tuple(sample.shape))
        return out.clone() if self.cuda_graphs else out

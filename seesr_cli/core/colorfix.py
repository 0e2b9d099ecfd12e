"""Colour fix: match the output's colours to the (upscaled) LR image (SEESR.md section 3.7).

Images are B x C x H x W tensors in [0, 1] on any device and dtype; the maths runs in
float32 and the result comes back in the output's dtype, clamped to [0, 1] as the
official `*_color_fix` functions do before converting to PIL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seesr_cli.errors import InternalError
from seesr_cli.settings import COLOR_FIXES

_ADAIN_EPS = 1e-5  # official calc_mean_std: std = sqrt(var + eps)
_WAVELET_LEVELS = 5  # blur dilations 1, 2, 4, 8, 16
_BINOMIAL = (1.0, 2.0, 1.0)


def _check(output: torch.Tensor, reference: torch.Tensor, *, same_size: bool) -> None:
    if output.ndim != 4 or reference.ndim != 4:
        shapes = f"{tuple(output.shape)} and {tuple(reference.shape)}"
        raise InternalError(f"colour fix needs B x C x H x W images; got {shapes}")
    batch_ok = reference.shape[0] in (1, output.shape[0])
    size_ok = not same_size or reference.shape[2:] == output.shape[2:]
    if not batch_ok or reference.shape[1] != output.shape[1] or not size_ok:
        raise InternalError(
            f"colour fix reference {tuple(reference.shape)} does not match the output {tuple(output.shape)}"
        )


def _finish(result: torch.Tensor, like: torch.Tensor, clamp: bool) -> torch.Tensor:
    if clamp:
        result = result.clamp_(0, 1)
    return result.to(like.dtype)


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and sqrt(var + eps), shaped B x C x 1 x 1.

    Unbiased variance as the official `calc_mean_std`; a 1-pixel image (where that is
    undefined) uses the biased one, i.e. zero.
    """
    flat = x.flatten(2)
    var, mean = torch.var_mean(flat, dim=2, correction=1 if flat.shape[2] > 1 else 0)
    return mean[..., None, None], (var + _ADAIN_EPS).sqrt_()[..., None, None]


def adain(output: torch.Tensor, reference: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """Give each channel of `output` the mean and std of `reference` (official adain_color_fix).

    The reference may have another spatial size: only its statistics are used.
    """
    _check(output, reference, same_size=False)
    out = output.float()
    out_mean, out_std = _mean_std(out)
    ref_mean, ref_std = _mean_std(reference.to(out.device, torch.float32))
    result = (out - out_mean).mul_(ref_std / out_std).add_(ref_mean)
    return _finish(result, output, clamp)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """3x3 binomial blur [[1,2,1],[2,4,2],[1,2,1]]/16 with the taps `dilation` apart, edges replicated."""
    taps = torch.tensor(_BINOMIAL, device=x.device, dtype=x.dtype)
    kernel = (torch.outer(taps, taps) / 16).expand(x.shape[1], 1, 3, 3)
    # Replicate padding accepts pads wider than the image, so 1-pixel images work.
    padded = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=x.shape[1], dilation=dilation)


def low_frequencies(x: torch.Tensor, levels: int = _WAVELET_LEVELS) -> torch.Tensor:
    """The coarsest level of the official wavelet decomposition: blurs dilated 1, 2, 4, ..."""
    for level in range(levels):
        x = _blur(x, 2**level)
    return x


def wavelet(output: torch.Tensor, reference: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """The output's high frequencies on the reference's low ones (official wavelet_color_fix).

    The official sums the high bands level by level; that sum telescopes to
    image - lowest band, which is what we compute (equal up to float rounding, and
    no per-level buffers). The reference must have the output's size.
    """
    _check(output, reference, same_size=True)
    out = output.float()
    result = out - low_frequencies(out)
    result += low_frequencies(reference.to(out.device, torch.float32))
    return _finish(result, output, clamp)


def apply(kind: str, output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Colour-fix `output` against `reference` with "adain", "wavelet" or "none" (unchanged)."""
    if kind == "adain":
        return adain(output, reference)
    if kind == "wavelet":
        return wavelet(output, reference)
    if kind == "none":
        return output
    raise InternalError(f"colour fix must be one of {', '.join(COLOR_FIXES)}; got {kind!r}")

"""The image at the pipeline's edges: the input as the stages need it, the result out.

8-bit inputs follow the official maths exactly: PIL bicubic resizes of the 8-bit image
(each rounding to 8 bits, as `test_seesr.py`) and k/255 values. Inputs of more bits (a
float array) take the same resizes in PIL's float mode "F", per channel, clipped to [0, 1]
where 8-bit resizes clip (`resize_values`), so the control image and the colour-fix reference
keep their precision; DAPE always sees 8 bits. The result comes out as an 8-bit image and as floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from seesr_cli.core.geometry import Geometry
from seesr_cli.errors import UsageError


@dataclass(frozen=True, eq=False)
class SourceImage:
    """`rgb`: 8 bits (what DAPE sees; for 8-bit inputs also the diffusion's input).
    `values`: H x W x 3 float32 in [0, 1] for inputs of more than 8 bits, else None."""

    rgb: Image.Image
    values: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def as_source(image: Image.Image | np.ndarray) -> SourceImage:
    """A PIL image (converted to RGB: the 8-bit path) or an H x W x 3 array: uint8 (the 8-bit
    path) or float in [0, 1] (full precision, e.g. `LoadedImage.float_rgb()` of a 16-bit file)."""
    if isinstance(image, Image.Image):
        return SourceImage(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
        raise UsageError(f"an image array must be H x W x 3; got shape {array.shape}")
    if array.dtype == np.uint8:
        return SourceImage(Image.fromarray(np.ascontiguousarray(array), "RGB"))
    if not np.issubdtype(array.dtype, np.floating):
        raise UsageError(f"an image array must be uint8 or float in [0, 1]; got {array.dtype}")
    if not np.isfinite(array).all():
        raise UsageError("the image array holds NaN or infinite values")
    values = np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)
    return SourceImage(Image.fromarray(quantise8(values), "RGB"), values)


def quantise8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8, rounded to nearest."""
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_values(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL's bicubic in float mode "F", per channel, without rounding.

    Pillow resizes 8-bit images in two passes, horizontal then vertical, clipping the
    intermediate to 8 bits; we clip to [0, 1] at the same two places, so on 8-bit data this
    equals PIL's 8-bit result up to its rounding (within about one level)."""
    def plane(channel: np.ndarray) -> np.ndarray:
        for step in ((size[0], channel.shape[0]), size):
            resized = Image.fromarray(np.ascontiguousarray(channel)).resize(step, Image.BICUBIC)
            channel = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
        return channel

    return np.stack([plane(values[..., c]) for c in range(values.shape[-1])], axis=-1)


def _sizes(geometry: Geometry) -> list[tuple[int, int]]:
    """Enlarge small inputs, upscale, then size to multiples of 8 (official order)."""
    sizes = [geometry.enlarged] if geometry.enlarged != geometry.lr else []
    sizes.append(geometry.upscaled)
    if geometry.work != geometry.upscaled:
        sizes.append(geometry.work)
    return sizes


def work_image(image: Image.Image, geometry: Geometry) -> Image.Image:
    """The 8-bit work image: PIL bicubic resizes, as official."""
    for size in _sizes(geometry):
        image = image.resize(size, Image.BICUBIC)
    return image


def control_image(source: SourceImage, geometry: Geometry, device: torch.device) -> torch.Tensor:
    """1 x 3 x H x W float32 in [0, 1] at the work size: the ControlNet input and colour-fix reference."""
    if source.values is None:
        array = np.asarray(work_image(source.rgb, geometry), dtype=np.float32) / 255.0  # official k/255
    else:
        array = source.values
        for size in _sizes(geometry):
            array = resize_values(array, size)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0).to(device)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    array = (tensor[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array, "RGB")


def finish(fixed: torch.Tensor, source: SourceImage, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """The result at exactly `size`: (8-bit image, H x W x 3 float32 in [0, 1]).

    8-bit inputs: the image is the official one (rounded, then PIL's 8-bit bicubic to the
    final size); the floats skip the rounding. Float inputs: the floats, resized in mode F,
    and the image is their rounding."""
    values = fixed[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    array = values if (values.shape[1], values.shape[0]) == size else resize_values(values, size)
    if source.values is not None:
        return Image.fromarray(quantise8(array), "RGB"), array
    image = to_pil(fixed)
    if image.size != size:
        image = image.resize(size, Image.BICUBIC)  # official final resize
    return image, array

"""Every file seesr writes, seesr reads back: format x mode x metadata, and 16-bit outputs keep 16-bit levels.

Sources are written independently of seesr (Pillow for 8 bits, a plain PNG writer for 16 bits); the
"model" is a nearest-neighbour 2x of the float view, so expected values are exact. Where Pillow can
open the result it is read a second time with Pillow as an independent decoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from io_samples import MODES, lanczos, smooth, write_source
from PIL import Image, UnidentifiedImageError

from seesr_cli.io import SOFTWARE, load_image, read_metadata, save_image

FORMATS = ("png", "jpg", "webp", "tiff")
LOSSLESS = ("png", "tiff")
PILLOW_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
METADATA = {"seesr:seed": "42", "seesr:prompt": "café, straße, 猫", "seesr:settings": '{"steps": 50, "cfg": 5.5}'}
# Lossy codecs at the default quality 95, in 8-bit steps: mean and worst absolute error per sample.
LOSSY_BOUNDS = {"jpg": (2.0, 12), "webp": (3.0, 20)}  # seen: jpg 1.5 / 8, webp 2.4 / 13
W, H = 24, 16


def _expected(values: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB, alpha) as float32 [0, 1] at 2x that save_image should write, before quantising."""
    channels = values.shape[-1]
    source = values.astype(np.float32) / np.float32(65535 if values.dtype == np.uint16 else 255)
    color = source[..., :1 if channels < 3 else 3].repeat(2, 0).repeat(2, 1)
    color = np.repeat(color, 3, -1) if color.shape[-1] == 1 else color
    alpha = lanczos(source[..., -1], (2 * W, 2 * H)) if channels in (2, 4) else None
    if fmt == "jpg" and alpha is not None:  # flattened onto white
        return color * alpha[..., None] + (1 - alpha[..., None]), None
    return color, alpha


def _pillow_view(out, fmt: str, mode: str) -> np.ndarray | None:
    """The result as Pillow decodes it, or None where Pillow has no such mode (checked with tifffile)."""
    try:
        with Image.open(out) as im:
            return np.asarray(im)
    except UnidentifiedImageError:
        assert (fmt, mode) == ("tiff", "LA16"), "only 16-bit gray+alpha TIFF is beyond Pillow"
        data = tifffile.imread(out)
        assert data.dtype == np.uint16 and data.shape == (2 * H, 2 * W, 2)
        return None


@pytest.mark.parametrize("with_metadata", [False, True], ids=["plain", "metadata"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt, mode, with_metadata):
    channels, bits = MODES[mode]
    values = smooth(W, H, channels, bits)
    loaded = load_image(write_source(tmp_path / "in.png", values))
    gray, has_alpha = channels in (1, 2), channels in (2, 4)
    assert (loaded.grayscale, loaded.bit_depth, loaded.alpha is not None) == (gray, bits, has_alpha)
    peak_in = (1 << bits) - 1
    assert np.array_equal(np.round(loaded.float_rgb()[..., :1 if gray else 3] * peak_in),
                          values[..., :1 if gray else 3])  # full precision in
    if has_alpha:
        assert np.array_equal(np.round(loaded.float_alpha() * peak_in), values[..., -1])

    result = loaded.float_rgb().repeat(2, 0).repeat(2, 1)
    out = save_image(result, loaded, tmp_path / f"out.{fmt}", metadata=METADATA if with_metadata else None)
    back = load_image(out)

    out_bits = 16 if bits == 16 and fmt in LOSSLESS else 8
    out_gray, out_alpha = gray and fmt != "webp", has_alpha and fmt != "jpg"  # WebP holds colour only
    assert back.size == (2 * W, 2 * H) and back.source_format == PILLOW_FORMAT[fmt]
    assert (back.grayscale, back.bit_depth, back.alpha is not None) == (out_gray, out_bits, out_alpha)
    peak = (1 << out_bits) - 1
    color, alpha = _expected(values, fmt)
    want, got = np.round(color * peak), np.round(back.float_rgb() * peak)
    if fmt in LOSSLESS:
        assert np.array_equal(got, want)
    else:
        mean, worst = LOSSY_BOUNDS[fmt]
        error = np.abs(got - want)
        assert error.mean() <= mean and error.max() <= worst, (error.mean(), error.max())
    if out_alpha:  # alpha is lossless in WebP too
        assert np.array_equal(np.round(back.float_alpha() * peak), np.round(alpha * peak))

    expected_metadata = dict(METADATA) if with_metadata else {}
    assert read_metadata(out) == {**expected_metadata, "Software": SOFTWARE}

    pillow = _pillow_view(out, fmt, mode)
    if pillow is not None and fmt in LOSSLESS:  # an independent decoder agrees
        planes = [want[..., :1] if out_gray else want] + ([np.round(alpha * peak)[..., None]] if out_alpha else [])
        written = np.concatenate(planes, -1).astype(np.uint16 if out_bits == 16 else np.uint8)
        if pillow.ndim == 3 and pillow.shape[-1] == 4 and written.shape[-1] == 2:
            pillow = pillow[..., [0, 3]]  # Pillow opens 16-bit gray+alpha PNG as RGBA (high bytes)
        pillow = pillow.reshape(written.shape)
        assert np.array_equal(pillow, written if pillow.dtype == written.dtype else written >> 8)


def _bicubic(rgb: np.ndarray, scale: int) -> np.ndarray:
    """A smooth "model": bicubic in float per channel, so in-between values appear."""
    h, w, _ = rgb.shape
    size = (w * scale, h * scale)
    planes = [Image.fromarray(np.ascontiguousarray(rgb[..., i])).resize(size, Image.Resampling.BICUBIC)
              for i in range(3)]
    return np.clip(np.stack([np.asarray(p) for p in planes], -1), 0, 1)


def _levels(plane: np.ndarray) -> int:
    return len(np.unique(np.round(plane * 65535)))


@pytest.mark.parametrize("mode", ["L16", "LA16", "RGB16", "RGBA16"])
@pytest.mark.parametrize("fmt", LOSSLESS)
def test_16bit_output_of_a_16bit_gradient_has_16bit_levels(tmp_path, fmt, mode):
    """Quantised once, at 16 bits: more than 256 levels (the 8-bit route gave at most 256, x 257)."""
    channels = MODES[mode][0]
    ramp = np.round(np.linspace(0, 65535, 2048)).astype(np.uint16)
    values = np.repeat(np.tile(ramp, (8, 1))[..., None], channels, -1)
    if channels in (2, 4):
        values[..., -1] = 65535 - ramp // 2  # a 16-bit alpha ramp too
    loaded = load_image(write_source(tmp_path / "in.png", values))
    assert _levels(loaded.float_rgb()[..., 0]) == 2048

    back = load_image(save_image(_bicubic(loaded.float_rgb(), 2), loaded, tmp_path / f"out.{fmt}"))
    assert back.bit_depth == 16 and _levels(back.float_rgb()[..., 0]) > 3000
    if channels in (2, 4):
        assert _levels(back.float_alpha()) > 1000

    eight_bit = loaded.rgb.resize((4096, 16), Image.Resampling.BICUBIC)  # what the model used to get
    old = load_image(save_image(eight_bit, loaded, tmp_path / f"old.{fmt}"))
    assert old.bit_depth == 16 and _levels(old.float_rgb()[..., 0]) <= 256


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_float_colour_result_to_gray_is_601_luma_quantised_once(tmp_path, fmt):
    values = smooth(W, H, 2, 16)
    loaded = load_image(write_source(tmp_path / "in.png", values))
    rng = np.random.default_rng(5)
    result = rng.uniform(0, 1, (2 * H, 2 * W, 3)).astype(np.float32)
    back = load_image(save_image(result, loaded, tmp_path / f"out.{fmt}"))
    luma = result @ np.array([0.299, 0.587, 0.114], np.float32)
    assert back.grayscale and back.bit_depth == 16
    assert np.array_equal(np.round(back.float_rgb()[..., 0] * 65535), np.round(luma * 65535))


@pytest.mark.parametrize("bad, message", [(np.full((4, 4, 3), np.nan, np.float32), "NaN"),
                                          (np.zeros((4, 4, 3), np.uint16), "uint8 or float")])
def test_results_that_cannot_be_quantised_are_refused(tmp_path, bad, message):
    loaded = load_image(write_source(tmp_path / "in.png", smooth(4, 4, 3, 16)))
    with pytest.raises(ValueError, match=message):
        save_image(bad, loaded, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()

"""Image input/output: modes, bit depth, alpha, orientation, ICC, metadata, atomic writes (bad inputs: test_bad_inputs).

The "model" here is a plain 2x PIL resize of what the model would see; 16-bit cases feed the float
view so full precision can be checked.
"""

from __future__ import annotations

import errno
import os
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import tifffile
from io_samples import png16_bytes, rgb8
from PIL import Image, ImageCms, ImageOps

from seesr_cli.errors import OutputExistsError, OutputWriteError, UsageError
from seesr_cli.io import IMAGE_EXTENSIONS, codecs, load_image, output_format_for, read_metadata, save_image

FORMATS = ("png", "jpg", "webp", "tiff")
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _upscale(loaded, scale: int = 2) -> Image.Image:
    w, h = loaded.size
    return loaded.rgb.resize((w * scale, h * scale), Image.Resampling.BICUBIC)


def _upscale_float(loaded, scale: int = 2) -> np.ndarray:
    return loaded.float_rgb().repeat(scale, 0).repeat(scale, 1)  # nearest: exact values to compare


def _random16(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _lanczos16(plane: np.ndarray, scale: int = 2) -> np.ndarray:
    """What the alpha plane should become: Lanczos in float, clipped, back to 16 bits."""
    image = Image.fromarray(plane.astype(np.float32) / 65535)
    big = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
    return np.round(np.clip(np.asarray(big), 0, 1) * 65535).astype(np.uint16)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- modes


def test_rgb_png_round_trip(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert (loaded.size, loaded.bit_depth, loaded.grayscale, loaded.alpha) == ((40, 30), 8, False, None)
    assert loaded.rgb.mode == "RGB" and loaded.source_format == "PNG" and loaded.rgb_float is None
    result = _upscale(loaded)
    out = save_image(result, loaded, tmp_path / "out.png")
    with Image.open(out) as back:
        assert back.mode == "RGB" and back.size == (80, 60)
        assert np.array_equal(np.asarray(back), np.asarray(result))


def test_rgba_alpha_is_kept_and_upscaled_with_lanczos(tmp_path):
    pixels = np.dstack([rgb8(), np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))])
    pixels[:10, :10, 3] = 0
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.alpha is not None and loaded.alpha.mode == "L" and not loaded.grayscale
    out = save_image(_upscale(loaded), loaded, tmp_path / "out.png")
    with Image.open(out) as back:
        assert back.mode == "RGBA" and back.size == (80, 60)
        # Lanczos in float, clipped once at the end (8-bit Pillow clips between passes: off by a few)
        plane = Image.fromarray(pixels[..., 3].astype(np.float32)).resize((80, 60), Image.Resampling.LANCZOS)
        expected = np.clip(np.asarray(plane), 0, 255)
        assert np.abs(np.asarray(back)[..., 3] - expected).max() <= 0.5 + 1e-3
        assert np.asarray(back)[:16, :16, 3].max() <= 1  # the transparent corner stays transparent


def test_la_stays_gray_with_alpha(tmp_path):
    Image.fromarray(rgb8()).convert("LA").save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.grayscale and loaded.alpha is not None
    with Image.open(save_image(_upscale(loaded), loaded, tmp_path / "out.png")) as back:
        assert back.mode == "LA" and back.size == (80, 60)
    with Image.open(save_image(_upscale(loaded), loaded, tmp_path / "out.tif")) as back:
        assert back.mode == "LA"


@pytest.mark.parametrize("fmt", ["png", "jpg", "tiff"])
def test_gray_input_gives_gray_output(tmp_path, fmt):
    gray = Image.fromarray(rgb8()).convert("L")
    gray.save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.grayscale and loaded.rgb.mode == "RGB"
    out = save_image(_upscale(loaded), loaded, tmp_path / f"out.{fmt}")
    with Image.open(out) as back:
        assert back.mode == "L"
        if fmt != "jpg":
            expected = gray.resize((80, 60), Image.Resampling.BICUBIC)
            assert np.abs(np.asarray(back).astype(int) - np.asarray(expected).astype(int)).max() <= 2


@pytest.mark.parametrize(
    "make, gray, depth, has_alpha",
    [
        (lambda a: Image.fromarray(a).convert("1"), True, 8, False),
        (lambda a: Image.fromarray(a).convert("P"), False, 8, False),
        (lambda a: Image.fromarray(a).convert("YCbCr"), False, 8, False),
        (lambda a: Image.fromarray(a).convert("CMYK"), False, 8, False),
        (lambda a: Image.fromarray(a[..., 0].astype(np.int32) * 200), True, 16, False),
        (lambda a: Image.fromarray(a[..., 0].astype(np.float32) / 255), True, 16, False),
        (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), True, 16, False),
    ],
    ids=["1", "P", "YCbCr", "CMYK", "I", "F", "I;16"],
)
def test_modes_load(tmp_path, make, gray, depth, has_alpha):
    image = make(rgb8())
    path = tmp_path / ("in.jpg" if image.mode in ("YCbCr", "CMYK") else "in.tif")
    image.save(path)
    loaded = load_image(path)
    assert (loaded.grayscale, loaded.bit_depth, loaded.alpha is not None) == (gray, depth, has_alpha)
    assert loaded.rgb.mode == "RGB" and loaded.size == (40, 30)
    if image.mode == "CMYK":
        assert any("CMYK" in note for note in loaded.notes)


def test_palette_with_transparency_becomes_rgba(tmp_path):
    palette = Image.fromarray(rgb8()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    index = int(np.asarray(palette)[0, 0])
    palette.save(tmp_path / "in.gif", transparency=index)
    loaded = load_image(tmp_path / "in.gif")
    alpha = np.asarray(loaded.alpha)
    assert alpha[0, 0] == 0 and alpha.max() == 255 and not loaded.grayscale


def test_multi_frame_uses_first_frame_and_says_so(tmp_path):
    first = Image.fromarray(rgb8())
    first.save(tmp_path / "anim.png", save_all=True, append_images=[first.transpose(Image.Transpose.ROTATE_180)])
    loaded = load_image(tmp_path / "anim.png")
    assert loaded.frames == 2 and any("first of 2 frames" in note for note in loaded.notes)
    assert np.array_equal(np.asarray(loaded.rgb), rgb8())


def test_loaded_image_is_immutable(tmp_path):
    Image.fromarray(rgb8()[..., 0].astype(np.uint16) * 300).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with pytest.raises(FrozenInstanceError):
        loaded.bit_depth = 8
    with pytest.raises(ValueError):
        loaded.rgb_float[0, 0, 0] = 1.0


# ----------------------------------------------------------------------------- 16 bit


def test_16bit_gray_png_to_16bit_png_and_tiff(tmp_path):
    values = _random16((30, 40))
    Image.fromarray(values).save(tmp_path / "in.png")  # Pillow writes I;16 PNG
    loaded = load_image(tmp_path / "in.png")
    assert loaded.bit_depth == 16 and loaded.grayscale
    assert np.array_equal(np.round(loaded.float_rgb()[..., 0] * 65535), values)
    expected = values.repeat(2, 0).repeat(2, 1)
    for name in ("out.png", "out.tif"):
        with Image.open(save_image(_upscale_float(loaded), loaded, tmp_path / name)) as back:
            assert back.mode.startswith("I;16") and np.array_equal(np.asarray(back), expected)
    with Image.open(save_image(_upscale(loaded), loaded, tmp_path / "out.jpg")) as back:
        assert back.mode == "L"  # JPEG is 8-bit


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_keeps_every_bit(tmp_path, channels):
    values = _random16((30, 40, channels))
    (tmp_path / "in.png").write_bytes(png16_bytes(values))
    loaded = load_image(tmp_path / "in.png")
    assert loaded.bit_depth == 16 and not loaded.grayscale
    assert np.array_equal(np.round(loaded.float_rgb() * 65535), values[..., :3])
    if channels == 4:
        assert loaded.alpha.mode == "I;16" and np.array_equal(np.asarray(loaded.alpha), values[..., 3])
    expected = values.repeat(2, 0).repeat(2, 1)
    if channels == 4:
        expected[..., 3] = _lanczos16(values[..., 3])
    for name in ("out.png", "out.tif"):
        out = save_image(_upscale_float(loaded), loaded, tmp_path / name)
        with Image.open(out) as pillow_view:  # Pillow's own decoder sees the high bytes: independent check
            assert np.array_equal(np.asarray(pillow_view), (expected >> 8).astype(np.uint8))
        back = load_image(out)
        assert back.bit_depth == 16
        assert np.array_equal(np.round(back.float_rgb() * 65535), expected[..., :3])
        if channels == 4:
            assert np.array_equal(np.asarray(back.alpha), expected[..., 3])
    raw = (tmp_path / "out.png").read_bytes()
    assert raw[24:26] == bytes([16, {3: 2, 4: 6}[channels]])  # IHDR bit depth and colour type


def test_16bit_gray_alpha_png_and_tiff(tmp_path):
    values = _random16((30, 40, 2))
    (tmp_path / "in.png").write_bytes(png16_bytes(values))
    loaded = load_image(tmp_path / "in.png")
    assert loaded.grayscale and loaded.bit_depth == 16 and loaded.alpha.mode == "I;16"
    assert np.array_equal(np.asarray(loaded.alpha), values[..., 1])
    expected = values.repeat(2, 0).repeat(2, 1)
    expected[..., 1] = _lanczos16(values[..., 1])
    back = load_image(save_image(_upscale_float(loaded), loaded, tmp_path / "out.png"))
    assert back.grayscale and np.array_equal(np.asarray(back.alpha), expected[..., 1])
    assert np.array_equal(np.round(back.float_rgb()[..., 0] * 65535), expected[..., 0])
    # Pillow has no 16-bit gray+alpha TIFF mode: seesr reads it with tifffile, and so does tifffile itself.
    out = save_image(_upscale_float(loaded), loaded, tmp_path / "out.tif")
    assert np.array_equal(tifffile.imread(out), expected)
    back = load_image(out)
    assert back.grayscale and back.bit_depth == 16 and np.array_equal(np.asarray(back.alpha), expected[..., 1])
    assert np.array_equal(np.round(back.float_rgb()[..., 0] * 65535), expected[..., 0])


# ----------------------------------------------------------------------------- orientation, ICC, metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb8()).save(tmp_path / "in.png", exif=exif.tobytes())
    with Image.open(tmp_path / "in.png") as original:
        expected = np.asarray(ImageOps.exif_transpose(original).convert("RGB"))
    loaded = load_image(tmp_path / "in.png")
    assert np.array_equal(np.asarray(loaded.rgb), expected)
    reloaded = Image.Exif()
    reloaded.load(loaded.exif)
    assert reloaded[0x0112] == 1


def test_rotated_jpeg_comes_out_upright_with_camera_exif(tmp_path):
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "TestCam"  # Orientation: rotate 90 CW to display; Make
    Image.fromarray(rgb8()).save(tmp_path / "in.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "in.jpg")
    assert loaded.size == (30, 40)
    for fmt in ("jpg", "png", "webp"):
        out = save_image(_upscale(loaded), loaded, tmp_path / f"out.{fmt}", metadata={"seed": "7"})
        with Image.open(out) as back:
            tags = back.getexif()
            assert back.size == (60, 80) and tags.get(0x0112, 1) == 1 and tags[0x010F] == "TestCam"
            assert tags.get_ifd(0x8769)[0xA002] == 60
        assert np.array_equal(np.asarray(load_image(out).rgb).shape, (80, 60, 3))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth", [8, 16])
def test_icc_profile_is_carried(tmp_path, fmt, depth):
    pixels = rgb8() if depth == 8 else None
    if depth == 8:
        Image.fromarray(pixels).save(tmp_path / "in.png", icc_profile=SRGB_ICC)
    else:
        Image.fromarray(_random16((30, 40))).save(tmp_path / "in.png", icc_profile=SRGB_ICC)
    loaded = load_image(tmp_path / "in.png")
    assert loaded.icc_profile == SRGB_ICC
    with Image.open(save_image(_upscale(loaded), loaded, tmp_path / f"out.{fmt}")) as back:
        assert back.info.get("icc_profile") == SRGB_ICC


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth", [8, 16])
def test_metadata_reads_back(tmp_path, fmt, depth):
    if depth == 8:
        Image.fromarray(rgb8()).save(tmp_path / "in.png")
    else:
        (tmp_path / "in.png").write_bytes(png16_bytes(_random16((30, 40, 3))))
    loaded = load_image(tmp_path / "in.png")
    metadata = {"seed": "42", "tags": "café, straße, 猫", "settings": '{"steps": 50, "cfg": 5.5}'}
    out = save_image(_upscale(loaded), loaded, tmp_path / f"out.{fmt}", metadata=metadata)
    found = read_metadata(out)
    assert {k: found[k] for k in metadata} == metadata
    assert found["Software"].startswith("seesr-cli ")


def test_jpeg_flattens_transparency_onto_white(tmp_path):
    pixels = np.dstack([np.zeros((30, 40, 3), np.uint8), np.full((30, 40), 255, np.uint8)])
    pixels[:, :20, 3] = 0
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with Image.open(save_image(_upscale(loaded), loaded, tmp_path / "out.jpg")) as back:
        out = np.asarray(back)
        assert back.mode == "RGB" and out[:, :30].min() >= 245 and out[:, 50:].max() <= 10


def test_webp_quality_100_is_lossless_with_alpha(tmp_path):
    pixels = np.dstack([rgb8(), np.random.default_rng(3).integers(1, 256, (30, 40), dtype=np.uint8)])
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    result = _upscale(loaded)
    with Image.open(save_image(result, loaded, tmp_path / "out.webp", quality=100)) as back:
        assert back.mode == "RGBA" and np.array_equal(np.asarray(back)[..., :3], np.asarray(result))


def test_unicode_names_with_spaces(tmp_path):
    folder = tmp_path / "dossier avec espaces"
    folder.mkdir()
    source = folder / "été 猫 ✓.png"
    Image.fromarray(rgb8()).save(source)
    loaded = load_image(str(source))
    out = save_image(_upscale(loaded), loaded, folder / "résultat ✓ x2.webp")
    assert out.exists() and load_image(out).size == (80, 60)


# ----------------------------------------------------------------------------- writing safely


def test_overwrite_protection(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="out.png"):
        save_image(_upscale(loaded), loaded, out)
    assert out.read_bytes() == b"precious" and _no_temp_files(tmp_path)
    save_image(_upscale(loaded), loaded, out, overwrite=True)
    assert load_image(out).size == (80, 60) and _no_temp_files(tmp_path)


def test_output_permissions_follow_umask(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    umask = os.umask(0o022)
    try:
        out = save_image(_upscale(loaded), loaded, tmp_path / "new" / "out.png")
    finally:
        os.umask(umask)
    if os.name != "nt":
        assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("failure, expected", [(OSError(errno.ENOSPC, "No space left on device"), OutputWriteError),
                                               (RuntimeError("encoder bug"), RuntimeError),
                                               (KeyboardInterrupt(), KeyboardInterrupt)])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, failure, expected):
    Image.fromarray(rgb8()).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    seen = []

    def half_written(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial data")
        seen.extend(p.name for p in tmp_path.iterdir() if p.name != "in.png")
        raise failure

    monkeypatch.setattr(Image.Image, "save", half_written)
    with pytest.raises(expected) as info:
        save_image(_upscale(loaded), loaded, tmp_path / "out.png")
    assert seen and seen[0].startswith(".out.png.tmp-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    if expected is OutputWriteError:
        assert "no space left on device" in str(info.value)


def test_failed_16bit_write_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "in.png").write_bytes(png16_bytes(_random16((30, 40, 3))))
    loaded = load_image(tmp_path / "in.png")
    real_chunk = codecs.write_chunk

    def failing_chunk(f, kind, data):
        if kind == b"IDAT":
            raise OSError(errno.EIO, "Input/output error")
        real_chunk(f, kind, data)

    monkeypatch.setattr(codecs, "write_chunk", failing_chunk)
    with pytest.raises(OutputWriteError, match="input/output error"):
        save_image(_upscale_float(loaded), loaded, tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "value, source, expected",
    [("same", "PNG", "png"), ("same", "JPEG", "jpg"), ("same", "MPO", "jpg"), ("same", "WEBP", "webp"),
     ("same", "TIFF", "tiff"), ("same", "GIF", "png"), ("same", "BMP", "png"), ("JPEG", None, "jpg"),
     ("tif", None, "tiff"), ("out/photo.Jpeg", None, "jpg"), (Path("a b/c.webp"), None, "webp")],
)
def test_output_format_for(value, source, expected):
    assert output_format_for(value, source) == expected


def test_output_format_for_rejects_unknown():
    with pytest.raises(UsageError, match="gif"):
        output_format_for("gif")


def test_image_extensions():
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"} <= IMAGE_EXTENSIONS
    assert ".pdf" not in IMAGE_EXTENSIONS and all(e == e.lower() for e in IMAGE_EXTENSIONS)


def test_bad_quality_is_a_usage_error(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with pytest.raises(UsageError, match="quality"):
        save_image(_upscale(loaded), loaded, tmp_path / "out.jpg", quality=0)

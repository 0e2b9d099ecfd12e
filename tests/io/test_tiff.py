"""TIFF through tifffile: what seesr writes, the TIFF variants it reads, damaged files and a full disk."""

from __future__ import annotations

import errno
import json
import logging
import os

import numpy as np
import pytest
import tifffile
from io_samples import smooth, write_source
from PIL import Image, ImageCms
from tifffile import COMPRESSION, EXTRASAMPLE, PHOTOMETRIC, PREDICTOR

from seesr_cli.errors import InputImageError, OutputWriteError
from seesr_cli.io import SOFTWARE, load_image, read_metadata, save_image, tiff

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _loaded(tmp_path, channels: int, bits: int, **save):
    values = smooth(20, 12, channels, bits)
    if save:
        Image.fromarray(values if channels > 1 else values[..., 0]).save(tmp_path / "in.png", **save)
        return values, load_image(tmp_path / "in.png")
    return values, load_image(write_source(tmp_path / "in.png", values))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_written_tiff_tags(tmp_path, channels, bits):
    _, loaded = _loaded(tmp_path, channels, bits)
    out = save_image(loaded.float_rgb(), loaded, tmp_path / "out.tif", metadata={"seesr:seed": "7"})
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 1
        page = tif.pages[0]
        assert page.compression == COMPRESSION.ADOBE_DEFLATE and page.predictor == PREDICTOR.HORIZONTAL
        assert page.photometric == (PHOTOMETRIC.RGB if channels >= 3 else PHOTOMETRIC.MINISBLACK)
        assert page.bitspersample == bits and page.samplesperpixel == channels
        assert tuple(page.extrasamples) == ((EXTRASAMPLE.UNASSALPHA,) if channels in (2, 4) else ())
        assert json.loads(page.description) == {"seesr:seed": "7"} and page.software == SOFTWARE
        assert 306 not in page.tags  # no DateTime: the same pixels give the same bytes


def test_same_pixels_same_bytes_and_icc(tmp_path):
    _, loaded = _loaded(tmp_path, 3, 8, icc_profile=SRGB_ICC)
    first = save_image(loaded.rgb, loaded, tmp_path / "a.tif", metadata={"k": "v"})
    second = save_image(loaded.rgb, loaded, tmp_path / "b.tif", metadata={"k": "v"})
    assert first.read_bytes() == second.read_bytes()
    with tifffile.TiffFile(first) as tif:
        assert tif.pages[0].iccprofile == SRGB_ICC
    assert load_image(first).icc_profile == SRGB_ICC


def test_multi_page_tiff_uses_the_first_page_with_a_note(tmp_path):
    pages = [smooth(20, 12, 3, 16, seed=i) for i in range(3)]
    with tifffile.TiffWriter(tmp_path / "stack.tif") as writer:
        for page in pages:
            writer.write(page, photometric="rgb", compression="zlib")
    loaded = load_image(tmp_path / "stack.tif")
    assert loaded.frames == 3 and "multi-page TIFF: used the first of 3 pages" in loaded.notes
    assert np.array_equal(np.round(loaded.float_rgb() * 65535), pages[0])


@pytest.mark.parametrize("how", ["half", "header", "strip", "magic"])
def test_damaged_tiff_is_one_line(tmp_path, how):
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, smooth(200, 150, 3, 16), photometric="rgb", compression="zlib", metadata=None)
    data = bytearray(path.read_bytes())
    if how == "half":
        data = data[: len(data) // 2]
    elif how == "header":
        data = data[:4] + b"\xff\xff\xff\x7f" + data[8:]  # first IFD far beyond the end
    elif how == "magic":
        data = data[:4]
    else:
        middle = len(data) // 2
        data[middle:middle + 64] = b"\xa5" * 64  # deflate stream garbled
    path.write_bytes(bytes(data))
    with pytest.raises(InputImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: truncated or corrupt image data (") and "\n" not in message
    assert len(message) < len(str(path)) + 200 and "<tifffile" not in message
    if how == "header":
        assert message.endswith("(no readable page: invalid offset to first page 2147483647)")
        with pytest.raises(InputImageError, match=r"bad.tif: truncated or corrupt image data \(no readable page: invalid offset"):
            read_metadata(path)


def test_tiff_variants_tifffile_reads(tmp_path):
    """Float RGB, min-is-white, planar 16-bit, associated alpha, 32-bit ints and orientation."""
    rgb = smooth(20, 12, 3, 16).astype(np.float32) / 65535
    tifffile.imwrite(tmp_path / "float.tif", rgb, photometric="rgb")
    loaded = load_image(tmp_path / "float.tif")
    assert loaded.bit_depth == 16 and np.allclose(loaded.float_rgb(), rgb)

    gray = smooth(20, 12, 1, 8)[..., 0]
    tifffile.imwrite(tmp_path / "white.tif", gray, photometric="miniswhite")
    assert np.array_equal(np.asarray(load_image(tmp_path / "white.tif").rgb)[..., 0], 255 - gray)

    planar = smooth(20, 12, 3, 16)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(planar, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(np.round(load_image(tmp_path / "planar.tif").float_rgb() * 65535), planar)

    straight = np.dstack([np.full((12, 20, 3), 200, np.uint8), np.full((12, 20), 128, np.uint8)])
    premultiplied = straight.copy()
    premultiplied[..., :3] = np.round(200 * 128 / 255)
    tifffile.imwrite(tmp_path / "assoc.tif", premultiplied, photometric="rgb", extrasamples=["assocalpha"])
    assoc = load_image(tmp_path / "assoc.tif")
    assert np.abs(np.asarray(assoc.rgb).astype(int) - 200).max() <= 1 and np.asarray(assoc.alpha).max() == 128

    tifffile.imwrite(tmp_path / "int32.tif", gray.astype(np.int32) * 200)
    assert np.array_equal(np.round(load_image(tmp_path / "int32.tif").float_rgb()[..., 0] * 65535), gray * 200.0)

    tifffile.imwrite(tmp_path / "rotated.tif", planar, photometric="rgb", extratags=[(274, 3, 1, 6, True)])
    rotated = load_image(tmp_path / "rotated.tif")
    assert rotated.size == (12, 20) and "EXIF orientation 6 applied" in rotated.notes
    assert np.array_equal(np.round(rotated.float_rgb() * 65535), np.rot90(planar, -1))


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg"])
def test_tiffs_tifffile_cannot_decode_go_through_pillow(tmp_path, compression):
    """LZW and JPEG need codecs tifffile does not ship: Pillow (libtiff) reads them, as before."""
    rgb = smooth(32, 24, 3, 8)
    Image.fromarray(rgb).save(tmp_path / "in.tif", compression=compression)
    loaded = load_image(tmp_path / "in.tif")
    error = np.abs(np.asarray(loaded.rgb).astype(int) - rgb)
    assert loaded.source_format == "TIFF" and error.max() <= (0 if compression == "tiff_lzw" else 24)
    gray16 = smooth(32, 24, 1, 16)[..., 0]
    Image.fromarray(gray16).save(tmp_path / "gray16.tif", compression="tiff_lzw")
    assert np.array_equal(np.round(load_image(tmp_path / "gray16.tif").float_rgb()[..., 0] * 65535), gray16)


def test_tifffile_warnings_become_notes_not_stderr(capfd):
    notes: list[str] = []
    with tiff._log_as_notes(notes):
        logging.getLogger("tifffile").warning("TiffTag 270: coercing invalid ASCII to bytes")
    assert notes == ["TIFF: TiffTag 270: coercing invalid ASCII to bytes"]
    assert capfd.readouterr().err == ""


class _FillingDisk:
    """A file that takes `room` bytes, then fails the way a full disk does."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("bits", [8, 16])
def test_full_disk_while_writing_tiff(tmp_path, monkeypatch, bits):
    _, loaded = _loaded(tmp_path, 4, bits)
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FillingDisk(real_fdopen(fd, mode, *a, **k), 500))
    with pytest.raises(OutputWriteError) as info:
        save_image(loaded.float_rgb().repeat(4, 0).repeat(4, 1), loaded, tmp_path / "out.tif")
    assert str(info.value) == f"{tmp_path / 'out.tif'}: cannot write: no space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_read_metadata_of_a_foreign_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", smooth(8, 8, 3, 8), photometric="rgb", metadata=None)
    assert read_metadata(tmp_path / "plain.tif") == {"Software": "tifffile.py"}
    Image.fromarray(smooth(8, 8, 3, 8)).save(tmp_path / "pillow.tif", description="a scan, not JSON")
    assert read_metadata(tmp_path / "pillow.tif") == {}

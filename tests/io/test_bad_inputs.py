"""Inputs seesr cannot use: one line naming the file and the cause, never a hang or a library's traceback."""

from __future__ import annotations

import os
import signal
import socket
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from io_samples import rgb8
from PIL import Image

from seesr_cli.errors import InputImageError
from seesr_cli.io import load_image, read_metadata


def _truncated(kind: str):
    def make(path: Path) -> None:
        Image.fromarray(rgb8(160, 120)).save(path.with_suffix(f".full.{kind}"))
        data = path.with_suffix(f".full.{kind}").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return make


def _bomb_header(path: Path) -> None:
    """20000 x 20000 PNG header with a few bytes of data: Pillow's hard limit must stop it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    "name, make, cause, kwargs",
    [
        ("missing.png", lambda p: None, "file not found", {}),
        ("folder.png", lambda p: p.mkdir(), "is a directory", {}),
        ("empty.png", lambda p: p.touch(), "empty (0 bytes)", {}),
        ("notes.png", lambda p: p.write_text("just some text\n"), "not a recognised image format", {}),
        ("cut.png", _truncated("png"), "truncated or corrupt", {}),
        ("cut.jpg", _truncated("jpg"), "truncated or corrupt", {}),
        ("big.png", lambda p: Image.fromarray(rgb8()).save(p), "exceeds the limit of 1,000", {"max_pixels": 1000}),
        ("bomb.png", _bomb_header, "decompression bomb", {}),
        ("signed.tif", lambda p: Image.fromarray(np.full((4, 4), -5, np.int32)).save(p),
         "unsupported pixel mode (int32 samples): 32-bit or signed integer samples outside 0..65535", {}),
        ("nan.tif", lambda p: Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(p), "NaN", {}),
    ],
)
def test_bad_inputs_raise_input_image_error(tmp_path, name, make, cause, kwargs):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputImageError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert name in message and cause in message and "\n" not in message
    assert info.value.path == str(path)


@contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging if a read blocks (a FIFO with no writer blocks a plain open)."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("reader", [load_image, read_metadata])
def test_fifo_is_not_a_regular_file_and_never_blocks(tmp_path, reader):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "link.png").symlink_to(fifo)
    for path in (fifo, tmp_path / "link.png"):
        with _deadline(5), pytest.raises(InputImageError) as info:
            reader(path)
        assert str(info.value) == f"{path}: not a regular file (a named pipe)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_fifo_swapped_in_after_the_check_never_blocks(tmp_path, monkeypatch):
    """The file is opened non-blocking and checked again: a FIFO put there after the check is refused too."""
    from seesr_cli.io import source

    fifo = tmp_path / "late.png"
    os.mkfifo(fifo)
    monkeypatch.setattr(source, "check_file", lambda path: None)
    with _deadline(5), pytest.raises(InputImageError, match=r"late.png: not a regular file \(a named pipe\)$"):
        load_image(fifo)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or not os.path.exists("/dev/null"), reason="POSIX only")
def test_socket_and_device_are_not_regular_files(tmp_path):
    where = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(where))
        with pytest.raises(InputImageError, match=r"s.png: not a regular file \(a socket\)$"):
            load_image(where)
    with _deadline(5), pytest.raises(InputImageError, match=r"/dev/null: not a regular file \(a character device\)$"):
        load_image("/dev/null")


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root and Windows ignore mode bits")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.png"
    Image.fromarray(rgb8()).save(path)
    path.chmod(0)
    with pytest.raises(InputImageError, match="permission denied"):
        load_image(path)


def test_unreadable_file_as_root(tmp_path, monkeypatch):
    """Root reads anything, so the mode-bit test above cannot run there: make access() say no."""
    path = tmp_path / "locked.png"
    Image.fromarray(rgb8()).save(path)
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(InputImageError, match="locked.png: permission denied"):
        load_image(path)


def test_read_metadata_of_foreign_files(tmp_path):
    Image.fromarray(rgb8()).save(tmp_path / "plain.png")
    assert read_metadata(tmp_path / "plain.png") == {}
    exif = Image.Exif()
    exif[0x010E] = "Holiday, not JSON"
    Image.fromarray(rgb8()).save(tmp_path / "camera.jpg", exif=exif.tobytes())
    assert read_metadata(tmp_path / "camera.jpg") == {}
    with pytest.raises(InputImageError, match="missing.png: file not found"):
        read_metadata(tmp_path / "missing.png")


def test_our_bugs_are_not_blamed_on_the_file(tmp_path, monkeypatch):
    """Damaged data gets a one-line cause; an error of our own decoding code propagates as itself."""
    from seesr_cli.io import pillow_read

    path = tmp_path / "ok.png"
    Image.new("RGB", (4, 4)).save(path)

    def broken(*args, **kwargs):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(pillow_read, "_decode_planes", broken)
    with pytest.raises(TypeError, match="a bug of ours"):
        load_image(path)

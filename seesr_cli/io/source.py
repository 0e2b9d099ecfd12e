"""Opening an input: filesystem causes first, never blocking on a FIFO, and Pillow's errors in words."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from tifffile import TiffFileError

from seesr_cli.errors import InputImageError, one_line

# What the decoders raise on damaged or truncated data (SyntaxError: "broken PNG file",
# "not a TIFF file"; KeyError/IndexError: missing tags, bad palettes; TiffFileError: a ValueError
# only since tifffile 2025.9). Anything else is a bug of ours or the library's, not the file's fault.
DAMAGED_DATA = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, KeyError, IndexError,
                TiffFileError)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(mode: int) -> str | None:
    """Why a file of this st_mode cannot be an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not an image file"
    kind = next((name for test, name in _SPECIAL if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def check_file(path: Path) -> None:
    """Filesystem causes first: they are clearer than whatever a decoder would say. Never opens the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputImageError(path, "file not found") from None
    except PermissionError:
        raise InputImageError(path, "permission denied") from None
    except OSError as exc:
        raise InputImageError(path, f"cannot access file ({one_line(exc)})") from None
    cause = not_regular(st.st_mode)
    if cause:
        raise InputImageError(path, cause)
    if st.st_size == 0:
        raise InputImageError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputImageError(path, "permission denied")


@contextmanager
def open_input(path: Path) -> Iterator[BinaryIO]:
    """The checked file, open for reading. O_NONBLOCK: a FIFO swapped in after the check cannot hang us."""
    check_file(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise InputImageError(path, "permission denied") from None
    except OSError as exc:
        raise InputImageError(path, f"cannot open file ({one_line(exc)})") from None
    with os.fdopen(fd, "rb") as f:
        cause = not_regular(os.fstat(fd).st_mode)
        if cause:
            raise InputImageError(path, cause)
        yield f


def is_tiff(f: BinaryIO) -> bool:
    """Whether the open file starts like a TIFF (by content, not by name); leaves it at offset 0."""
    head = f.read(4)
    f.seek(0)
    return head in _TIFF_MAGIC


@contextmanager
def decode_errors(path: Path, what: str) -> Iterator[None]:
    """Turn whatever Pillow or tifffile raises on a bad file into one `InputImageError` with a human cause."""
    try:
        yield
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        hard_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputImageError(path, f"too large: over Pillow's hard limit of {hard_limit:,} pixels "
                                    "(possible decompression bomb)") from exc
    except UnidentifiedImageError as exc:
        raise InputImageError(path, "not a recognised image format (or its header is damaged)") from exc
    except PermissionError as exc:
        raise InputImageError(path, "permission denied") from exc
    except MemoryError as exc:
        raise InputImageError(path, "not enough memory to decode it") from exc
    except DAMAGED_DATA as exc:
        raise InputImageError(path, f"{what} ({one_line(exc)})") from exc

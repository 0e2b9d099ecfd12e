"""The one atomic write: every file seesr-cli writes appears complete or not at all.

Bytes go to a hidden temporary file beside the target (`.name.tmp-PID-XXXX`, permissions from
the umask; the pid lets a cleanup tell a dead writer's leftovers from a live writer's file), are
fsynced, then linked (no overwrite) or renamed (overwrite) into place, and the folder is fsynced.
Leaf module: used by io, weights and report alike.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from seesr_cli.errors import OutputExistsError, OutputWriteError, one_line


def atomic_write(path: Path, encode: Callable[[BinaryIO], object], *, overwrite: bool, durable: bool = True) -> None:
    """Encode into `.name.tmp-PID-XXXX` beside `path`, fsync, then move it into place; never leave a part.

    `durable` False skips both fsyncs: for caches that are checked and made again when missing
    (the report's previews), where the fsync is most of the cost."""
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temp(path)
    except OSError as exc:
        raise OutputWriteError(path, _os_cause(exc)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            encode(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:  # already gone, or the disk went away: the original error matters more
            pass
        if isinstance(exc, OSError):
            raise OutputWriteError(path, _os_cause(exc)) from exc
        raise
    if durable:
        _fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[Path, int]:
    """O_EXCL temp file with the ordinary umask-derived permissions (mkstemp would give 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # a hard link never replaces an existing file: no race with another writer
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError:  # no hard links here (FAT, some network shares)
        if os.path.lexists(path):
            raise OutputExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); best effort."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_cause(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else one_line(exc)

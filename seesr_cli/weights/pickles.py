"""Unpickle the official `.pth` checkpoints without running code.

`torch.load(weights_only=True)` refuses every global but torch's own; on top of that
only tensors and plain containers may come out. Zip-format files are memory-mapped,
so entries never touched (RAM's optimizer state, caption decoder) are never read.
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seesr_cli.errors import UnsafeCheckpointError, WeightsError

_PLAIN_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device)
_PLAIN_CONTAINERS = (dict, list, tuple, set, frozenset)
# What torch.load raises on a file that is not a readable checkpoint (damaged zip, foreign
# or truncated pickle, refused global). MemoryError and our own bugs are not among them.
# torch.save's legacy (non-zip) format opens with its magic number, pickled with protocol 2.
_LEGACY_TORCH = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, IndexError,
               AttributeError, OSError, zipfile.BadZipFile, struct.error)


def load_pickle(path: str | Path) -> Any:
    """Unpickle a torch checkpoint with `weights_only=True`; refuse anything but tensors and plain data.

    Zip-format files are memory-mapped, so entries that are never touched (RAM's
    optimizer state, caption decoder) are never read from disk.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: our message says what is wrong
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except _UNREADABLE as exc:
        raise _classify_load_error(path, exc, is_zip) from None
    _check_plain(path, obj)
    return obj


def _plain_pickle(path: Path) -> bool:
    """A pickle written by `pickle.dump`, not `torch.save` (a zip archive, or the legacy format
    that opens with a pickled magic number)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_LEGACY_TORCH))
    except OSError:
        return False
    return head[:1] == b"\x80" and head != _LEGACY_TORCH


def _classify_load_error(path: Path, exc: BaseException, is_zip: bool) -> WeightsError:
    text = str(exc)
    if not is_zip and _plain_pickle(path) and "GLOBAL" not in text:
        return WeightsError(
            f"{path}: a plain Python pickle (written with pickle.dump), not a PyTorch checkpoint: seesr-cli reads "
            "only files written by torch.save, which it can open without running code. Use the official file, "
            "or re-save this one with torch.save where it was made"
        )
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return UnsafeCheckpointError(
            f"{path}: refused to load: the pickle references {found.group(1)}; only tensors and "
            "plain containers are accepted (a pickle can run code when loaded)"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    lines = [line for line in text.splitlines() if line.strip()]
    reason = detail.group(1) if detail else (lines[0] if lines else "empty or truncated")
    return WeightsError(
        f"{path}: not a readable PyTorch checkpoint (corrupt or wrong file): {type(exc).__name__}: {reason[:160]}"
    )


def _check_plain(path: Path, obj: Any) -> None:
    """Walk the unpickled object: only tensors, numbers, strings and plain containers may appear."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor) or isinstance(item, _PLAIN_LEAVES):
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, _PLAIN_CONTAINERS):
            stack.extend(item)
        else:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the pickle holds a {type(item).__module__}.{type(item).__qualname__}; "
                "only tensors and plain containers are accepted"
            )


def load_pickle_state_dict(path: str | Path, entry: str | None = None) -> dict[str, Tensor]:
    """A `{name: tensor}` dict from a pickled checkpoint, optionally from its `entry` (e.g. RAM's "model").

    A file without `entry` that is itself a flat state dict is accepted as is.
    Tensors of zip-format files stay memory-mapped until copied.
    """
    obj = load_pickle(path)
    if entry is not None and isinstance(obj, Mapping) and entry in obj:
        obj = obj[entry]
    if not isinstance(obj, Mapping) or not obj:
        wanted = f'a "{entry}" entry or ' if entry else ""
        raise WeightsError(f"{path}: expected {wanted}a dict of named tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        wanted = f'no "{entry}" entry and ' if entry else ""
        raise WeightsError(f"{path}: {wanted}not a state dict (e.g. entry {bad[0]!r} is not a named tensor)")
    return dict(obj)


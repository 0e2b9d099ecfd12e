"""Which files a batch takes: named files, folders (optionally recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from seesr_cli.io import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class InputFile:
    path: Path  # as the user can find it (not resolved)
    root: Path  # the folder the user named, the glob's fixed prefix, or a named file's folder
    rel: str  # POSIX path below root: names the output and derives the seed


def is_glob(arg: str) -> bool:
    return any(ch in arg for ch in "*?[") and not os.path.lexists(arg)


def _glob_root(arg: str) -> Path:
    """The leading components of a pattern that hold no wildcard."""
    parts = Path(arg).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if is_glob(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walk(folder: Path, recursive: bool, exclude: Path | None) -> Iterable[Path]:
    """Images in `folder` (and below when recursive), sorted; hidden entries and `exclude` skipped."""
    for base, dirs, files in os.walk(folder):
        here = Path(base)
        dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".")
                         and not (exclude is not None and _same(here / d, exclude)))
        yield from (here / name for name in sorted(files) if _is_image_name(name))


def _same(a: Path, b: Path) -> bool:
    return path_key(a) == path_key(b)


def path_key(path: Path) -> str:
    """Identity of a path on this file system (case-insensitive where the OS is)."""
    return os.path.normcase(os.path.realpath(path))


def discover(args: Sequence[str], *, recursive: bool = False,
             exclude: Path | None = None) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Files, folders and glob patterns (expanded here too, for shells that do not) -> input files.

    Returns the files (each once, in argument order) and (argument, cause) for arguments that
    name nothing usable; the batch reports those and goes on.
    """
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    for arg in args:
        path = Path(arg)
        if is_glob(arg):
            root = _glob_root(arg)
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_image_name(m.name)]
            for folder in (m for m in matches if m.is_dir()):
                files += list(_walk(folder, recursive, exclude))
            if not files:
                problems.append((arg, "no images match this pattern"))
            found += [InputFile(f, root, f.relative_to(root).as_posix()) for f in files]
        elif path.is_dir():
            files = list(_walk(path, recursive, exclude))
            if not files:
                hint = "" if recursive else " (use --recursive to include subfolders)"
                problems.append((arg, f"no images found in this folder{hint}"))
            found += [InputFile(f, path, f.relative_to(path).as_posix()) for f in files]
        elif os.path.lexists(path):
            found.append(InputFile(path, path.parent, path.name))
        else:
            problems.append((arg, "file not found"))
    unique: dict[str, InputFile] = {}
    for item in found:
        unique.setdefault(path_key(item.path), item)
    return list(unique.values()), problems

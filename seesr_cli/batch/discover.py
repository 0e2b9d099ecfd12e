"""Which files a batch takes: named files, folders (optionally recursive) and glob patterns.

Folders and patterns are walked by one walker: hidden entries are skipped, symbolic links to
folders are followed, and a folder that is its own ancestor (a symlink loop) is not entered
again, so `**` over any tree terminates (`glob.glob` follows such loops forever).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from seesr_cli.io import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class InputFile:
    path: Path  # as the user can find it (not resolved)
    root: Path  # the folder the user named, the glob's fixed prefix, or a named file's folder
    rel: str  # POSIX path below root: names the output and derives the seed
    same_as: Path | None = None  # another input that is the same file (a link to it, or it to this)


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def is_glob(arg: str) -> bool:
    return _has_magic(arg) and not os.path.lexists(arg)


def _glob_root(arg: str) -> Path:
    """The leading components of a pattern that hold no wildcard."""
    parts = Path(arg).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if _has_magic(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def path_key(path: Path) -> str:
    """Identity of a path on this file system (case-insensitive where the OS is)."""
    return os.path.normcase(os.path.realpath(path))


def _folder_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()  # follows links: the folder itself
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class _Walker:
    """Pattern components matched folder by folder (`**`: any depth), loops and `exclude` skipped."""

    def __init__(self, exclude: Path | None):
        self.exclude = path_key(exclude) if exclude is not None else None

    def entries(self, folder: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as found:
                return sorted(found, key=lambda e: e.name)
        except OSError:  # unreadable or vanished: nothing to take from it
            return []

    def enter(self, path: Path, ancestors: frozenset) -> frozenset | None:
        """The ancestors below `path`, or None when `path` is not a folder to walk into."""
        ident = _folder_id(path)
        if ident is None or ident in ancestors or not path.is_dir():
            return None
        if self.exclude is not None and path_key(path) == self.exclude:
            return None
        return ancestors | {ident}

    def match(self, folder: Path, parts: Sequence[str], ancestors: frozenset) -> Iterator[Path]:
        if not parts:
            yield folder
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            yield from self.match(folder, rest, ancestors)
            for entry in self.entries(folder):
                below = None if entry.name.startswith(".") else self.enter(folder / entry.name, ancestors)
                if below is not None:
                    yield from self.match(folder / entry.name, parts, below)
            return
        if not _has_magic(head):
            names = [head] if os.path.lexists(folder / head) else []
        else:
            names = [e.name for e in self.entries(folder)
                     if fnmatch.fnmatch(e.name, head) and (head.startswith(".") or not e.name.startswith("."))]
        for name in names:
            if not rest:
                yield folder / name
                continue
            below = self.enter(folder / name, ancestors)
            if below is not None:
                yield from self.match(folder / name, rest, below)


def _walk(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """Images in `folder` (and below when recursive), sorted; hidden entries and `exclude` skipped."""
    walker = _Walker(exclude)
    start = walker.enter(folder, frozenset())
    if start is None:
        return []
    found = walker.match(folder, ["**", "*"] if recursive else ["*"], start)
    return sorted((p for p in found if _is_image_name(p.name) and not p.is_dir()), key=lambda p: p.parts)


def _glob(pattern: str, recursive: bool, exclude: Path | None) -> list[Path]:
    """The pattern's image files, and the images in the folders it matches."""
    root = _glob_root(pattern)
    walker = _Walker(exclude)
    start = walker.enter(root, frozenset())
    if start is None:
        return []
    matches = sorted(walker.match(root, Path(pattern).parts[len(root.parts):], start), key=lambda p: p.parts)
    files = [m for m in matches if m.is_file() and _is_image_name(m.name)]
    for folder in (m for m in matches if m.is_dir()):
        files += _walk(folder, recursive, exclude)
    return files


def discover(args: Sequence[str], *, recursive: bool = False,
             exclude: Path | None = None) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Files, folders and glob patterns (expanded here too, for shells that do not) -> input files.

    Returns the files (in argument order) and (argument, cause) for arguments that name nothing
    usable; the batch reports those and goes on. A path found twice is listed once; a second
    path to the same file (a symbolic link beside its target) is listed with `same_as` set.
    """
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    for arg in args:
        path = Path(arg)
        if is_glob(arg):
            root = _glob_root(arg)
            files = _glob(arg, recursive, exclude)
            if not files:
                problems.append((arg, "no images match this pattern"))
            found += [InputFile(f, root, f.relative_to(root).as_posix()) for f in files]
        elif path.is_dir():
            files = _walk(path, recursive, exclude)
            if not files:
                hint = "" if recursive else " (use --recursive to include subfolders)"
                problems.append((arg, f"no images found in this folder{hint}"))
            found += [InputFile(f, path, f.relative_to(path).as_posix()) for f in files]
        elif os.path.lexists(path):
            found.append(InputFile(path, path.parent, path.name))
        else:
            problems.append((arg, "file not found"))
    return _same_files(found), problems


def _same_files(found: list[InputFile]) -> list[InputFile]:
    """Each path once; another path to a file already listed is kept, marked `same_as` the first."""
    first: dict[str, InputFile] = {}
    named: set[str] = set()
    out = []
    for item in found:
        spelled = os.path.normcase(os.path.abspath(item.path))
        if spelled in named:  # the same path named twice (a file inside a folder also named)
            continue
        named.add(spelled)
        key = path_key(item.path)
        if key in first:
            item = InputFile(item.path, item.root, item.rel, same_as=first[key].path)
        else:
            first[key] = item
        out.append(item)
    return out

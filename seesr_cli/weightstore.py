"""How `weights` fetches, checks and converts: Hub lookups, download progress, sha256, compact DAPE.

`weights` says what each part is and where it goes (the manifest, the cache folders, the
public API); this module does the work. huggingface_hub does every download; sha256 is
checked before anything is unpickled; RAM + DAPE.pth are converted once into the compact
DAPE safetensors file. Nothing here prints: events go to a `progress` callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seesr_cli.errors import WeightsError

if TYPE_CHECKING:  # `weights` imports this module; these names are only annotations here
    from seesr_cli.weights import CacheDirs, Source

DAPE_KEYS = ("dape_lora", "ram", "tags", "thresholds")  # the compact DAPE file's inputs
HashFile = Callable[[Path, Callable[[int], None]], str]  # (file, on_chunk) -> hex sha256


# ---------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class WeightsEvent:
    """`stage`: "download" | "verify" | "convert"; `done`/`total` in `unit` ("B" or "step")."""

    key: str
    stage: str
    done: float
    total: float | None
    unit: str = "B"


Progress = Callable[[WeightsEvent], None]


class _Null:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def bar_class(key: str, progress: Progress | None) -> type:
    """A tqdm class for huggingface_hub that draws nothing and forwards its byte count to `progress`.

    snapshot_download sums every file into the bar it names "huggingface_hub.snapshot_download";
    only that one is forwarded. Called from download threads.
    """
    from huggingface_hub.utils import tqdm as hf_tqdm
    from tqdm.std import tqdm as std_tqdm

    class _Bar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            self._seesr_name = kwargs.pop("name", None)
            kwargs.update(disable=progress is None, file=_Null())
            std_tqdm.__init__(self, *args, **kwargs)  # skips hf's own enable/disable logic

        def update(self, n: float | None = 1):
            out = super().update(n)
            if progress is not None and self._seesr_name == "huggingface_hub.snapshot_download":
                progress(WeightsEvent(key, "download", float(self.n), self.total or None))
            return out

    return _Bar


# ---------------------------------------------------------------------------- found parts


@dataclass(frozen=True)
class Located:
    """One part found on disk: its files under `root`."""

    source: Source
    root: Path  # the snapshot folder, or the official-layout folder standing in for it
    files: tuple[str, ...]
    local: bool  # from --weights DIR

    def path(self, index: int = 0) -> Path:
        return self.root / self.files[index]

    def expected(self, file: str) -> str | None:
        """The manifest's sha256, else (Hub files) the Hub's own: an LFS blob is named by its sha256."""
        if file not in self.source.files:
            return None  # the official layout's tag files: other names, other format
        known = self.source.expected_sha256(file)
        return known.lower() if known else None if self.local else _blob_sha256(self.root / file)

    def checksums(self) -> Iterator[tuple[Path, str]]:
        """(path, expected sha256) of each file whose checksum is known."""
        for index, file in enumerate(self.files):
            expected = self.expected(file)
            if expected is not None:
                yield self.path(index), expected


class NotFound(Exception):
    """A part that is not there; `hub_error`: the Hub answered with an error (repo gone, gated...)."""

    def __init__(self, reason: str, hub_error: bool = False):
        super().__init__(reason)
        self.hub_error = hub_error


def _blob_sha256(path: Path) -> str | None:
    """The Hub's own checksum of a cached LFS file: its blob is named by its sha256."""
    real = Path(os.path.realpath(path))
    return real.name if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name) else None


def from_hub(src: Source, dirs: CacheDirs, *, online: bool, progress: Progress | None) -> Located:
    """The part's snapshot in the Hub cache; `online`: ask the Hub (and download what is missing)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(
            src.repo_id, repo_type=src.repo_type, revision=src.revision, cache_dir=dirs.hub,
            allow_patterns=src.allow_patterns, local_files_only=not online, tqdm_class=bar_class(src.key, progress),
        ))
    except LocalEntryNotFoundError as exc:  # also IncompleteSnapshotError
        reason = "not downloaded" if not online else f"the Hub could not be reached ({type(exc).__name__})"
        raise NotFound(f"{src.label()}: {reason}") from None
    except (HfHubHTTPError, ValueError) as exc:  # repo gone or gated, bad revision, Hub error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotFound(f"{src.label()}: {type(exc).__name__}: {first}", hub_error=True) from None
    except OSError as exc:  # disk full, no permission on the cache
        raise WeightsError(f"{src.label()}: cannot write to the cache {dirs.hub}: {exc}") from exc
    missing = [f for f in src.files if not (folder / f).is_file()]
    if missing:
        raise NotFound(f"{src.label()}: not downloaded (missing {', '.join(missing[:3])})")
    return Located(src, folder, src.files, local=False)


# ---------------------------------------------------------------------------- sha256


class VerifiedRecord:
    """sha256 of files already hashed, keyed by real path, size and mtime, so runs never re-hash 5.6 GB."""

    def __init__(self, path: Path, hash_file: HashFile):
        self.path, self._hash_file = path, hash_file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        self._data = data if isinstance(data, dict) else {}  # a damaged record only costs re-hashing

    @staticmethod
    def _stamp(file: Path) -> tuple[str, list[int]]:
        stat = file.stat()
        return os.path.realpath(file), [stat.st_size, stat.st_mtime_ns]

    def get(self, file: Path) -> str | None:
        real, stamp = self._stamp(file)
        entry = self._data.get(real)
        return entry["sha256"] if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, file: Path, digest: str) -> None:
        real, stamp = self._stamp(file)
        self._data[real] = {"stamp": stamp, "sha256": digest}
        try:
            text = json.dumps(self._data, indent=1, sort_keys=True)
            _replace_atomically(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        except OSError:
            pass  # a read-only cache only costs a re-hash next time

    def digest(self, file: Path, key: str, progress: Progress | None) -> str:
        """The file's sha256: recorded, or computed now (and recorded)."""
        known = self.get(file)
        if known is not None:
            return known
        total, done = file.stat().st_size, [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(WeightsEvent(key, "verify", float(done[0]), float(total)))

        digest = self._hash_file(file, tick)
        self.put(file, digest)
        return digest


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temporary file beside `path`, then move it into place: readers never see a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def verify(found: dict[str, Located], record: VerifiedRecord, progress: Progress | None) -> None:
    """Check every file with a known sha256 (recorded digests are trusted while size and mtime hold)."""
    for loc in found.values():
        for path, expected in loc.checksums():
            actual = record.digest(path, loc.source.key, progress)
            if actual != expected:
                raise WeightsError(_mismatch_message(loc, path, expected, actual))


def _mismatch_message(loc: Located, path: Path, expected: str, actual: str) -> str:
    head = f"{path}: sha256 mismatch for {loc.source.what}: expected {expected}, got {actual}. "
    if loc.local:
        return head + (f"It is not the official release file: replace it, or accept it with "
                       f'{{"{loc.source.key}": {{"sha256": null}}}} in a SEESR_SOURCES file.')
    return head + (f"The download is corrupt or the file changed upstream: delete {os.path.realpath(path)} "
                   "and run `seesr download` again.")


# ---------------------------------------------------------------------------- compact DAPE


def compact_name(digests: list[str]) -> str:
    """Name of the compact DAPE file: a hash of its inputs' sha256s, so a changed input re-converts."""
    from seesr_cli.models.dape import FORMAT  # a new file format re-converts too

    parts = {"format": FORMAT, **dict(zip(DAPE_KEYS, digests))}
    return "dape-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20] + ".safetensors"


def compact_dape(found: dict[str, Located], dirs: CacheDirs, record: VerifiedRecord,
                 progress: Progress | None) -> Path:
    """RAM + DAPE.pth + tag files -> one safetensors file, converted once (atomically) and reused."""
    out = dirs.derived / compact_name([record.digest(found[key].path(), key, progress) for key in DAPE_KEYS])
    if out.is_file():
        with contextlib.suppress(OSError):  # a read-only cache still works
            os.utime(out)  # most recently used: kept by _prune
        return out
    from seesr_cli.models.dape import DAPE

    if progress is not None:
        progress(WeightsEvent("dape", "convert", 0.0, 1.0, "step"))
    try:
        model = DAPE.from_checkpoints(found["ram"].path(), found["dape_lora"].path(),
                                      tags=found["tags"].path(), thresholds=found["thresholds"].path())
    except (RuntimeError, ValueError, KeyError) as exc:  # WeightsError passes through as it is
        raise WeightsError(f"cannot convert {found['ram'].path()} + {found['dape_lora'].path()} to DAPE: {exc}") from exc
    try:
        _replace_atomically(out, model.save)
    except OSError as exc:
        raise WeightsError(f"cannot write the converted DAPE to {out.parent} ({exc}); "
                           "set SEESR_CACHE to a writable folder") from exc
    _prune(dirs.derived, keep=2)
    if progress is not None:
        progress(WeightsEvent("dape", "convert", 1.0, 1.0, "step"))
    return out


def _prune(folder: Path, keep: int) -> None:
    """Compact files of older inputs cost ~0.85 GB each: keep the `keep` most recently used."""
    with contextlib.suppress(OSError):  # another process may be pruning too
        olds = sorted(folder.glob("dape-*.safetensors"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for path in olds[keep:]:
            path.unlink(missing_ok=True)

"""Hub lookups and download progress: a part's snapshot in the Hugging Face cache.

huggingface_hub does every download (its cache, resume, HF_TOKEN, HF_HUB_OFFLINE);
this module finds a part's files there and forwards its byte counts to a `progress`
callback. Nothing here prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from seesr_cli.errors import WeightsError
from seesr_cli.weights.cache import CacheDirs
from seesr_cli.weights.manifest import Source

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

"""sha256 checks: every file with a known digest is hashed once, before anything is unpickled.

A record keeps the digests already computed, keyed by the file's real path, size, mtime,
ctime and inode, so a run does not re-hash 5.6 GB, yet a file changed in place is hashed
again even with its mtime put back (that updates the ctime); `seesr weights --verify`
hashes every file afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from seesr_cli.errors import OutputWriteError, WeightsError
from seesr_cli.io.atomic import atomic_write
from seesr_cli.weights.cache import CacheDirs
from seesr_cli.weights.hub import Located, Progress, WeightsEvent

_CHUNK = 16 << 20

def sha256_file(path: Path, on_chunk: Callable[[int], None] | None = None) -> str:
    """Streamed, chunked sha256 of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return digest.hexdigest()


class VerifiedRecord:
    """sha256 of files already hashed, keyed by real path and stat stamp, so runs never re-hash 5.6 GB."""

    def __init__(self, path: Path):
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        self._data = data if isinstance(data, dict) else {}  # a damaged record only costs re-hashing

    @classmethod
    def in_cache(cls, dirs: CacheDirs) -> VerifiedRecord:
        return cls(dirs.derived / "verified.json")

    @staticmethod
    def _stamp(file: Path) -> tuple[str, list[int]]:
        stat = file.stat()
        return os.path.realpath(file), [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]

    def get(self, file: Path) -> str | None:
        real, stamp = self._stamp(file)
        entry = self._data.get(real)
        return entry["sha256"] if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, file: Path, digest: str) -> None:
        real, stamp = self._stamp(file)
        self._data[real] = {"stamp": stamp, "sha256": digest}
        text = json.dumps(self._data, indent=1, sort_keys=True).encode("utf-8")
        try:
            atomic_write(self.path, lambda f: f.write(text), overwrite=True)
        except OutputWriteError:
            pass  # a read-only cache only costs a re-hash next time

    def digest(self, file: Path, key: str, progress: Progress | None, *, fresh: bool = False) -> str:
        """The file's sha256: recorded, or computed now (and recorded); `fresh`: always computed."""
        known = None if fresh else self.get(file)
        if known is not None:
            return known
        total, done = file.stat().st_size, [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(WeightsEvent(key, "verify", float(done[0]), float(total)))

        digest = sha256_file(file, tick)
        self.put(file, digest)
        return digest


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
        return head + ("It is not the official release file: replace it, or use it as your own file with "
                       "--accept-local-weights (its sha256 is then not checked; it still never runs code).")
    return head + (f"The download is corrupt or the file changed upstream: delete {os.path.realpath(path)}; "
                   "the next run (online) fetches it again.")

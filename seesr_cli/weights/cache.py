"""Where weight files go: the Hugging Face cache (or a source checkout's weights/) and our own files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seesr_cli.errors import UsageError


@dataclass(frozen=True)
class CacheDirs:
    hub: Path  # a huggingface_hub cache (models--ORG--NAME/...)
    derived: Path  # our own files: the compact DAPE, the verification record


def _source_checkout() -> Path | None:
    root = Path(__file__).resolve().parents[2]
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


def weights_folder(weights_dir: str | Path | None) -> Path | None:
    """`--weights DIR`, else SEESR_WEIGHTS, else None; a value that is not a folder is a usage error
    naming where it came from."""
    origin = "--weights"
    value = weights_dir
    if value is None:
        origin, value = "SEESR_WEIGHTS", os.environ.get("SEESR_WEIGHTS") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "does not exist" if not os.path.lexists(path) else "is not a folder"
        sep = " " if origin == "--weights" else "="
        raise UsageError(f"{origin}{sep}{path}: {what} (expected a folder in the official layout: "
                         "stable-diffusion-2-base/, seesr/unet/, seesr/controlnet/, DAPE.pth, ...; "
                         "`seesr weights --help` shows it)")
    return path

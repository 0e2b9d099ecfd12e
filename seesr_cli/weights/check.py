"""Does a checkpoint file fit its config? Asked when loading fails, to say why in words a user can act on.

diffusers and transformers report a wrong file as "Cannot copy out of meta tensor" (the tensors
it lacks stay unloaded) or as a shape error that suggests loader flags the CLI does not have.
Here the safetensors header (names and shapes only; nothing is read beyond it) is compared with
the model its config.json describes, built on the meta device (no memory).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from seesr_cli.errors import WeightsError

_WHAT = {"unet": "UNet", "controlnet": "ControlNet", "vae": "VAE", "text_encoder": "text encoder"}
_FILES = {"text_encoder": "model.safetensors"}
_DEFAULT_FILE = "diffusion_pytorch_model.safetensors"
_MAX_HEADER = 100 << 20


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (empty or truncated)")
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            raise WeightsError(f"{path}: not a safetensors file (no valid header)")
        try:
            header = json.loads(handle.read(size))
        except ValueError as exc:
            raise WeightsError(f"{path}: not a safetensors file (unreadable header)") from exc
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _expected_shapes(kind: str, config: dict) -> dict[str, tuple[int, ...]]:
    """The base model's parameter shapes (SeeSR's extra image attentions are not required)."""
    import torch

    config = {k: v for k, v in config.items() if k != "use_image_cross_attention"}
    with torch.device("meta"):
        if kind == "text_encoder":
            from transformers import CLIPTextConfig, CLIPTextModel

            model = CLIPTextModel(CLIPTextConfig(**config))
        else:
            import diffusers

            diffusers.utils.logging.set_verbosity_error()  # unknown config keys: no notice on stderr
            cls = {"unet": diffusers.UNet2DConditionModel, "controlnet": diffusers.ControlNetModel,
                   "vae": diffusers.AutoencoderKL}[kind]
            model = cls.from_config(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _looks_like(found: dict) -> str:
    names = list(found)
    if any(n.startswith("controlnet_") for n in names):
        return "ControlNet"
    if any(n.startswith("text_model.") for n in names):
        return "text encoder"
    if any(n.startswith("decoder.") for n in names) and any(n.startswith("encoder.") for n in names):
        return "VAE"
    if any(n.startswith("up_blocks.") for n in names):
        return "UNet"
    return ""


def mismatch(folder: Path, kind: str) -> str | None:
    """Why `folder`'s weights file does not fit its config.json, or None when it does (or cannot tell)."""
    weights, config_path = folder / _FILES.get(kind, _DEFAULT_FILE), folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        expected = _expected_shapes(kind, config)
        found = header_shapes(weights)
    except WeightsError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - a config we cannot build from: the loader's own error stands
        return None
    if kind == "text_encoder":  # transformers 4 names them text_model.*, transformers 5 does not
        expected = {n.removeprefix("text_model."): v for n, v in expected.items()}
        found = {n.removeprefix("text_model."): v for n, v in found.items()}
    what = _WHAT[kind]
    missing = [name for name in expected if name not in found]
    if missing:
        seems = _looks_like(found)
        hint = f"; it holds {seems} weights" if seems and seems != what else ""
        return (f"{weights}: not the {what} weights its config.json describes: {len(missing)} of "
                f"{len(expected)} tensors are missing (e.g. {missing[0]}){hint}. Replace it with the "
                f"official file (seesr download, or the release's {folder.name}/ folder)")
    wrong = [(name, shape, found[name]) for name, shape in expected.items() if found[name] != shape]
    if wrong:
        name, want, got = wrong[0]
        return (f"{weights}: does not fit {config_path}: {name} has shape {list(got)} where the config needs "
                f"{list(want)} ({len(wrong)} tensors differ). The file and config.json must come from the same "
                "release: replace both with the official ones")
    return None


def _folders(paths, turbo: bool) -> Iterator[tuple[Path, str]]:
    yield Path(paths.unet), "unet"
    yield Path(paths.controlnet), "controlnet"
    base = Path(paths.turbo if turbo and paths.turbo is not None else paths.sd2)
    yield base / "vae", "vae"
    yield base / "text_encoder", "text_encoder"
    if turbo and paths.turbo is not None:
        yield base / "unet", "unet"


def check_folders(paths, *, turbo: bool = False) -> str | None:
    """Why the first weights file of a run (`WeightPaths`) does not fit its config, or None."""
    for folder, kind in _folders(paths, turbo):
        problem = mismatch(folder, kind)
        if problem is not None:
            return problem
    return None

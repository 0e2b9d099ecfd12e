"""Build every pipeline component from resolved weight folders (`seesr_cli.weights.WeightPaths`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from seesr_cli.errors import WeightsError


def _quiet_libraries() -> None:
    """Library code never prints: silence the loaders' own progress bars and notices."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _scheduler_config(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read the scheduler config ({exc})") from exc


def load_components(paths, *, device: torch.device, dtype: torch.dtype, turbo: bool = False,
                    cpu_kernels: str = "onednn") -> dict:
    """Tokenizer, text encoder, VAE, SeeSR UNet + ControlNet, DAPE and the scheduler config.

    Turbo (official test_seesr_turbo.py): text encoder, VAE, scheduler and base UNet
    from sd-turbo, with SeeSR's image attentions laid over that UNet.
    cpu_kernels: "onednn" switches UNet + ControlNet to `seesr_cli.models.cpu_fast` when they
    run on the CPU in float32 (`LoadOptions.cpu_kernels`); "stock" leaves PyTorch's modules.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from seesr_cli.models import DAPE, SeeSRControlNet, SeeSRUNet
    from seesr_cli.models.tokenizer import OfficialCLIPTokenizer

    _quiet_libraries()
    base = Path(paths.turbo if turbo else paths.sd2)
    if turbo and paths.turbo is None:
        raise WeightsError("turbo weights (stabilityai/sd-turbo) are not available; run `seesr download --turbo`")
    try:
        # The official stack's token ids (transformers 4.25's slow tokenizer without ftfy), which
        # transformers 5's CLIPTokenizer does not give for many prompts (models/tokenizer.py).
        tokenizer = OfficialCLIPTokenizer.from_pretrained(base / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=dtype)
        if turbo:
            unet = SeeSRUNet.from_turbo(base / "unet", Path(paths.unet), torch_dtype=dtype)
        else:
            unet = SeeSRUNet.from_pretrained(Path(paths.unet), torch_dtype=dtype)
        controlnet = SeeSRControlNet.from_pretrained(Path(paths.controlnet), torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot load the diffusion weights: {exc}") from exc
    # DAPE stays in fp32 on every device: its tags compare probabilities with
    # per-class thresholds, and reduced precision would flip tags near them.
    dape = DAPE.load(Path(paths.dape))
    for model in (text_encoder, vae, unet, controlnet, dape):
        model.to(device)
        model.eval()
        model.requires_grad_(False)
    if cpu_kernels == "onednn" and device.type == "cpu" and dtype == torch.float32:
        from seesr_cli.models.cpu_fast import use_onednn

        use_onednn(unet, controlnet)
    return {
        "unet": unet,
        "controlnet": controlnet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler_config": _scheduler_config(base),
        "dape": dape,
    }

"""Random-weight SeeSR components for the benchmarks: full size (SD2 + SeeSR + DAPE Swin-L) and tiny.

`full_size_components` and `tiny_components` return the keyword arguments of
`SeeSRPipeline(...)` minus device/dtype. Weights are random (no download): timings
depend on shapes, not values. To build the 2.7 G parameters fast, every module is
constructed with its parameters on the meta device (buffers, e.g. Swin's index
tables, stay real), then each parameter is allocated once on the target device,
in the target dtype, and filled with a seeded draw (PyTorch's default Linear/Conv
scale, ones/zeros for norms), skipping the libraries' slow initialisers.

Only small reference files are read (see `reference_dir`): the tiny CLIP tokenizer
(`step_tiny/tokenizer`; its ids are < 514, so they index the full 49408-row
embedding as real SD2 ids would, and the text encoder still sees 77 tokens),
SD2-base's scheduler config, the full UNet/ControlNet configs (`manifests/`) and
RAM's tag list and thresholds (`ram_data/`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from seesr_cli.models.controlnet import SeeSRControlNet  # noqa: E402
from seesr_cli.models.dape import DAPE, DAPEConfig  # noqa: E402
from seesr_cli.models.unet import SeeSRUNet  # noqa: E402
from seesr_cli.weights.convert import read_tag_list, read_thresholds  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# RAM's Swin-L at 384 (SEESR.md): the DAPE the official weights load into.
DAPE_SWIN_L = DAPEConfig(
    embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12, patch_size=4,
    image_size=384, mlp_ratio=4.0, prompt_dim=512, num_labels=4585, label_dim=512, label_proj=True,
    head_width=768, head_ffn=3072, head_layers=2, head_heads=4,
)
# The reference fixtures' tiny DAPE sizes (dape_tiny/configs), with the full tag vocabulary.
DAPE_TINY = DAPEConfig(
    embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=12, patch_size=4,
    image_size=384, mlp_ratio=4.0, prompt_dim=512, num_labels=4585, label_dim=512, label_proj=True,
    head_width=32, head_ffn=64, head_layers=2, head_heads=4,
)
SD2_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), sample_size=768, scaling_factor=0.18215, act_fn="silu",
)
TINY_VAE = dict(SD2_VAE, layers_per_block=1, norm_num_groups=4, block_out_channels=(8, 8, 16, 16), sample_size=64)
SD2_TEXT = dict(
    hidden_size=1024, num_hidden_layers=23, num_attention_heads=16, intermediate_size=4096,
    hidden_act="gelu", max_position_embeddings=77, vocab_size=49408, projection_dim=512, layer_norm_eps=1e-5,
)
TINY_TEXT = dict(SD2_TEXT, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 vocab_size=514, projection_dim=32)
# The reference fixtures' tiny SeeSR UNet/ControlNet sizes (seesr_tiny), over the full config.
TINY_DIFFUSION = dict(block_out_channels=[8, 16, 16, 16], attention_head_dim=[2, 2, 4, 4], norm_num_groups=4,
                      cross_attention_dim=32)


def reference_dir(path: str | Path | None = None) -> Path:
    """--reference, else $SEESR_REFERENCE_FIXTURES, else ../shared/fixtures/reference next to the repo."""
    default = REPO_ROOT.parent / "shared" / "fixtures" / "reference"
    candidate = Path(path or os.environ.get("SEESR_REFERENCE_FIXTURES") or default)
    if not (candidate / "step_tiny" / "tokenizer").is_dir():
        raise SystemExit(f"reference fixtures not found at {candidate} "
                         "(pass --reference or set SEESR_REFERENCE_FIXTURES)")
    return candidate


# ---------------------------------------------------------------------------- fast random init


@contextmanager
def _params_on_meta(device: torch.device):
    """Construct modules with parameters on meta (no allocation, no init) and buffers on `device`."""
    from accelerate import init_empty_weights

    with torch.device(device), init_empty_weights(include_buffers=False):
        yield


def _fill(module: nn.Module, name: str, param: torch.Tensor, generator: torch.Generator) -> None:
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        param.fill_(1.0 if name == "weight" else 0.0)
    elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        weight = module.weight
        fan_in = weight.shape[1] * math.prod(weight.shape[2:])
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default kaiming_uniform(a=sqrt(5)) bound
        param.uniform_(-bound, bound, generator=generator)
    else:  # embeddings, position-bias tables, label embeddings
        param.normal_(0.0, 0.02, generator=generator)


@torch.no_grad()
def materialise(model: nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    """Give every meta parameter real, seeded random storage on `device` in `dtype`."""
    generator = torch.Generator(device).manual_seed(seed)
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            tensor = torch.empty(param.shape, device=device, dtype=dtype if param.is_floating_point() else param.dtype)
            _fill(module, name, tensor, generator)
            module._parameters[name] = nn.Parameter(tensor, requires_grad=False)
    for module in model.modules():  # floating buffers follow the dtype (a whole-model .to() would warn)
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_floating_point():
                module._buffers[name] = buffer.to(device=device, dtype=dtype)
    return model.eval().requires_grad_(False)


def _build(factory, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    with _params_on_meta(device):
        model = factory()
    return materialise(model, device, dtype, seed)


# ---------------------------------------------------------------------------- components


def _diffusion_config(reference: Path, name: str, tiny: bool) -> dict:
    config = json.loads((reference / "manifests" / f"seesr_{name}_config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return {**config, **TINY_DIFFUSION} if tiny else config


def _dape(reference: Path, config: DAPEConfig, device: torch.device, seed: int) -> DAPE:
    tags = read_tag_list(reference / "ram_data" / "ram_tag_list.txt")
    thresholds = read_thresholds(reference / "ram_data" / "ram_tag_list_threshold.txt")
    # Float32 on every device, as seesr_cli.loading keeps it (tags compare with thresholds).
    return _build(lambda: DAPE(config, tags, thresholds), device, torch.float32, seed)


def _components(device, dtype, seed: int, reference, tiny: bool) -> dict:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from seesr_cli.models.tokenizer import OfficialCLIPTokenizer

    device = torch.device(device)
    dtype = DTYPES.get(dtype, dtype)
    reference = reference_dir(reference)
    tokenizer = OfficialCLIPTokenizer.from_pretrained(reference / "step_tiny" / "tokenizer")
    text = CLIPTextConfig(**(TINY_TEXT if tiny else SD2_TEXT), bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    unet_config = _diffusion_config(reference, "unet", tiny)
    controlnet_config = _diffusion_config(reference, "controlnet", tiny)
    vae_config = TINY_VAE if tiny else SD2_VAE
    return {
        "unet": _build(lambda: SeeSRUNet.from_config(unet_config), device, dtype, seed),
        "controlnet": _build(lambda: SeeSRControlNet.from_config(controlnet_config), device, dtype, seed + 1),
        "vae": _build(lambda: AutoencoderKL(**vae_config), device, dtype, seed + 2),
        "text_encoder": _build(lambda: CLIPTextModel(text), device, dtype, seed + 3),
        "tokenizer": tokenizer,
        "scheduler_config": json.loads((reference / "step_tiny" / "scheduler" / "scheduler_config.json").read_text()),
        "dape": _dape(reference, DAPE_TINY if tiny else DAPE_SWIN_L, device, seed + 4),
    }


def full_size_components(device: torch.device | str, dtype: torch.dtype | str, seed: int = 0,
                         reference: str | Path | None = None) -> dict:
    """SeeSRPipeline kwargs (without device/dtype) with full-size random weights (~2.7 G parameters)."""
    return _components(device, dtype, seed, reference, tiny=False)


def tiny_components(device: torch.device | str, dtype: torch.dtype | str, seed: int = 0,
                    reference: str | Path | None = None) -> dict:
    """The same with the reference fixtures' tiny sizes (a few M parameters, mostly DAPE's label table)."""
    return _components(device, dtype, seed, reference, tiny=True)


def parameter_counts(components: dict) -> dict[str, int]:
    return {name: sum(p.numel() for p in part.parameters()) for name, part in components.items()
            if isinstance(part, nn.Module)}


def quiet_libraries() -> None:
    """Silence diffusers/transformers notices so the bench output stays a report."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def load_average() -> str:
    """The 1/5/15-minute load averages (other processes share the CPU)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"

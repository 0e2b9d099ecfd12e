"""SeeSR's UNet: the SD2 UNet with representation cross-attention (RCA) blocks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from seesr_cli.errors import WeightsError
from seesr_cli.models.rca import (
    add_image_attentions,
    conditioning_for,
    embed_timestep,
    require_supported,
    run_down_blocks,
    run_mid_block,
    run_up_blocks,
)

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# Config keys that fix the module graph beyond what tensor shapes reveal (SD2 names head COUNTS
# `attention_head_dim`); a turbo base must agree with SeeSR's UNet on them.
_HEAD_KEYS = ("attention_head_dim", "num_attention_heads", "norm_num_groups")


class SeeSRUNet(UNet2DConditionModel):
    """diffusers' `UNet2DConditionModel` plus `image_attentions` in every cross-attention block.

    Loads the official `seesr/unet` folder unchanged (`from_pretrained`; its config.json has
    `use_image_cross_attention: true`). Without that key (as in the official code) it is a plain UNet.
    """

    def __init__(self, use_image_cross_attention: bool = False, **unet_config: Any) -> None:
        super().__init__(**unet_config)
        self.register_to_config(use_image_cross_attention=use_image_cross_attention)
        require_supported(self)
        if use_image_cross_attention:
            add_image_attentions([*self.down_blocks, self.mid_block, *self.up_blocks])

    @staticmethod
    def _get_init_keys(input_class: type) -> set[str]:
        # diffusers reads config keys off the __init__ signature; ours forwards the UNet's keywords.
        return ConfigMixin._get_init_keys(input_class) | ConfigMixin._get_init_keys(UNet2DConditionModel)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """Not supported: our up-block walk (rca.run_up_block) does not apply FreeU's rescaling."""
        raise NotImplementedError("FreeU is not supported by SeeSRUNet")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        image_encoder_hidden_states: torch.Tensor | None = None,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Noise prediction, called as the official pipeline does: `unet(latents, t, text_states,
        image_encoder_hidden_states=dape, down_block_additional_residuals=...,
        mid_block_additional_residual=...)`. Residuals are added to the skips and the mid output."""
        if (down_block_additional_residuals is None) != (mid_block_additional_residual is None):
            raise ValueError("pass both down_block_additional_residuals and mid_block_additional_residual, or neither")
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        temb = embed_timestep(self, sample, timestep)
        hidden = self.conv_in(sample)
        cond = conditioning_for(self, encoder_hidden_states, image_encoder_hidden_states, hidden.dtype)
        hidden, skips = run_down_blocks(self.down_blocks, hidden, temb, cond)
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(f"expected {len(skips)} down residuals, got {len(down_block_additional_residuals)}")
            skips = tuple(skip + extra for skip, extra in zip(skips, down_block_additional_residuals, strict=True))
        hidden = run_mid_block(self.mid_block, hidden, temb, cond)
        if mid_block_additional_residual is not None:
            hidden = hidden + mid_block_additional_residual
        hidden = run_up_blocks(self.up_blocks, hidden, skips, temb, cond)
        if self.conv_norm_out is not None:
            hidden = self.conv_act(self.conv_norm_out(hidden))
        out = self.conv_out(hidden)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    @classmethod
    def from_turbo(
        cls,
        base_unet: str | Path,
        seesr_unet: str | Path,
        *,
        torch_dtype: torch.dtype | None = None,
        variant: str | None = None,
    ) -> SeeSRUNet:
        """SeeSR-turbo (official `test_seesr_turbo.py`): the base UNet's config and weights (e.g.
        sd-turbo's `unet/`), with SeeSR's `image_attentions` weights laid over it.

        `variant` picks `diffusion_pytorch_model.<variant>.safetensors` in the base folder.
        Raises WeightsError when the base does not have SeeSR's architecture."""
        from accelerate import init_empty_weights
        from safetensors import safe_open
        from safetensors.torch import load_file

        base_unet, seesr_unet = Path(base_unet), Path(seesr_unet)
        base_config = _read_config(base_unet)
        _check_heads(base_unet, base_config, _read_config(seesr_unet))
        with init_empty_weights():
            model = cls.from_config({**base_config, "use_image_cross_attention": True})
        state = load_file(_weights_file(base_unet, variant))
        with safe_open(_weights_file(seesr_unet, None), framework="pt") as seesr:
            state.update({key: seesr.get_tensor(key) for key in seesr.keys() if ".image_attentions." in key})
        _check_state(base_unet, state, model.state_dict())
        if torch_dtype is not None:
            state = {key: tensor.to(torch_dtype) for key, tensor in state.items()}
        model.load_state_dict(state, assign=True)
        return model.eval()


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: cannot read a UNet config ({error})") from error


def _weights_file(folder: Path, variant: str | None) -> Path:
    name = WEIGHTS_NAME if variant is None else WEIGHTS_NAME.replace(".safetensors", f".{variant}.safetensors")
    path = folder / name
    if not path.is_file():
        raise WeightsError(f"{folder}: no {name} (a diffusers UNet folder is expected)")
    return path


def _check_heads(base: Path, base_config: dict[str, Any], seesr_config: dict[str, Any]) -> None:
    differ = [key for key in _HEAD_KEYS if base_config.get(key) != seesr_config.get(key)]
    if differ:
        detail = ", ".join(f"{key} {base_config.get(key)} vs {seesr_config.get(key)}" for key in differ)
        raise WeightsError(f"{base} does not fit SeeSR's UNet ({detail})")


def _check_state(base: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Every key present, none extra, every shape right: a turbo base must be SD2-shaped."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    problems = [(name, keys) for name, keys in (("missing", missing), ("unexpected", unexpected),
                                                  ("wrong shape", wrong)) if keys]
    if problems:
        detail = "; ".join(f"{len(keys)} {name}, e.g. {keys[0]}" for name, keys in problems)
        raise WeightsError(f"{base} does not fit SeeSR's UNet ({detail})")

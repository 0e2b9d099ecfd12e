"""SeeSR's ControlNet: diffusers' ControlNet with the same RCA blocks as SeeSR's UNet."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ControlNetModel
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.controlnets.controlnet import ControlNetOutput

from seesr_cli.models.rca import (
    add_image_attentions,
    conditioning_for,
    embed_timestep,
    require_supported,
    run_down_blocks,
    run_mid_block,
)


class SeeSRControlNet(ControlNetModel):
    """diffusers' `ControlNetModel` plus `image_attentions` in its down and mid blocks.

    Conditioned on the upscaled LR image in [0, 1]; returns 12 down residuals and the mid
    residual for SeeSR's UNet. Loads the official `seesr/controlnet` folder unchanged.
    """

    def __init__(self, use_image_cross_attention: bool = False, **controlnet_config: Any) -> None:
        super().__init__(**controlnet_config)
        self.register_to_config(use_image_cross_attention=use_image_cross_attention)
        require_supported(self)
        if use_image_cross_attention:
            add_image_attentions([*self.down_blocks, self.mid_block])

    @staticmethod
    def _get_init_keys(input_class: type) -> set[str]:
        # diffusers reads config keys off the __init__ signature; ours forwards ControlNetModel's keywords.
        return ConfigMixin._get_init_keys(input_class) | ConfigMixin._get_init_keys(ControlNetModel)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        image_encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ControlNetOutput | tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Residuals for the UNet, called as the official pipeline does: `controlnet(latents, t,
        text_states, controlnet_cond=image, conditioning_scale=1.0, image_encoder_hidden_states=dape)`."""
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])
        temb = embed_timestep(self, sample, timestep)
        hidden = self.conv_in(sample)
        hidden = hidden + self.controlnet_cond_embedding(controlnet_cond.to(hidden.dtype))
        cond = conditioning_for(self, encoder_hidden_states, image_encoder_hidden_states, hidden.dtype)
        hidden, skips = run_down_blocks(self.down_blocks, hidden, temb, cond)
        hidden = run_mid_block(self.mid_block, hidden, temb, cond)
        zero_convs = self.controlnet_down_blocks
        down = tuple(conv(skip) * conditioning_scale for skip, conv in zip(skips, zero_convs, strict=True))
        mid = self.controlnet_mid_block(hidden) * conditioning_scale
        if not return_dict:
            return down, mid
        return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid)

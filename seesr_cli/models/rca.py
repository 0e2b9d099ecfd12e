"""Representation cross-attention (RCA): SeeSR's second, DAPE-conditioned attention.

In every block with cross-attention, each text transformer `attentions[i]` is
followed by `image_attentions[i]`: a Transformer2D of the same width, heads and
projection whose keys/values are the DAPE soft prompts (B x 145 x 512).
Order (SEESR.md section 2; official `models/unet_2d_blocks.py`):
down/up blocks run resnet -> attentions[i] -> image_attentions[i] -> next resnet,
the mid block resnet0 -> attentions[0] -> image_attentions[0] -> resnet1.

The blocks themselves are diffusers' (`CrossAttnDownBlock2D`, ...): we only add
the `image_attentions` list and walk the block's own modules in that order here,
so that SeeSR's UNet and ControlNet share one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

IMAGE_CROSS_ATTENTION_DIM = 512  # DAPE's image_proj width; a constructor default upstream, not a config key


@dataclass(frozen=True)
class AttentionStates:
    """What every cross-attention block attends to during one forward call."""

    text: torch.Tensor  # CLIP text states, B x 77 x 1024
    image: torch.Tensor | None  # DAPE soft prompts, B x 145 x 512 (None only for models without RCA)


def image_attention_like(text: Transformer2DModel) -> Transformer2DModel:
    """The RCA twin of a text transformer: same width, heads, layers, norm and projection, 512-d keys."""
    config = text.config
    return Transformer2DModel(
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        in_channels=config.in_channels,
        num_layers=config.num_layers,
        cross_attention_dim=IMAGE_CROSS_ATTENTION_DIM,
        norm_num_groups=config.norm_num_groups,
        use_linear_projection=config.use_linear_projection,
        upcast_attention=config.upcast_attention,
        attention_type=config.attention_type,
    )


def add_image_attentions(blocks: Iterable[nn.Module | None]) -> None:
    """Give every cross-attention block an `image_attentions` list matching its `attentions`."""
    for block in blocks:
        if has_cross_attention(block):
            block.image_attentions = nn.ModuleList(image_attention_like(text) for text in block.attentions)


def has_cross_attention(block: nn.Module | None) -> bool:
    return block is not None and getattr(block, "has_cross_attention", False)


def conditioning_for(
    model: nn.Module, text: torch.Tensor, image: torch.Tensor | None, dtype: torch.dtype
) -> AttentionStates:
    """Check and cast the states (DAPE may run in another precision than the UNet)."""
    if not getattr(model.config, "use_image_cross_attention", False):
        image = None  # a plain UNet has nothing that reads them
    elif image is None:
        raise ValueError(
            f"{type(model).__name__} needs image_encoder_hidden_states (the DAPE soft prompts, B x 145 x 512)"
        )
    return AttentionStates(text=text.to(dtype), image=None if image is None else image.to(dtype))


def embed_timestep(model: nn.Module, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> torch.Tensor:
    """Time embedding for a python number, a 0-dim or a 1-dim (1 or B) timestep tensor."""
    steps = torch.as_tensor(timestep, device=sample.device)
    if steps.ndim == 0:
        steps = steps[None]
    # `Timesteps` always returns float32; the embedding MLP may run in fp16/bf16.
    t_emb = model.time_proj(steps.expand(sample.shape[0])).to(sample.dtype)
    return model.time_embedding(t_emb)


def _resnet(block: nn.Module, resnet: nn.Module, hidden: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    # Honour diffusers' gradient checkpointing switch, as the stock blocks do.
    if torch.is_grad_enabled() and block.gradient_checkpointing:
        return block._gradient_checkpointing_func(resnet, hidden, temb)
    return resnet(hidden, temb)


def _attend(block: nn.Module, i: int, hidden: torch.Tensor, cond: AttentionStates) -> torch.Tensor:
    """Text attention i, then (when the block has RCA) image attention i."""
    hidden = block.attentions[i](hidden, encoder_hidden_states=cond.text, return_dict=False)[0]
    image_attentions = getattr(block, "image_attentions", None)
    if image_attentions is not None:
        hidden = image_attentions[i](hidden, encoder_hidden_states=cond.image, return_dict=False)[0]
    return hidden


def run_down_block(
    block: nn.Module, hidden: torch.Tensor, temb: torch.Tensor, cond: AttentionStates
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One down block; returns the new hidden state and the skip connections it produced."""
    if not has_cross_attention(block):
        return block(hidden, temb)
    skips = []
    for i, resnet in enumerate(block.resnets):
        hidden = _attend(block, i, _resnet(block, resnet, hidden, temb), cond)
        skips.append(hidden)
    if block.downsamplers is not None:
        for downsampler in block.downsamplers:
            hidden = downsampler(hidden)
        skips.append(hidden)
    return hidden, tuple(skips)


def run_down_blocks(
    blocks: Sequence[nn.Module], hidden: torch.Tensor, temb: torch.Tensor, cond: AttentionStates
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """All down blocks; the skips start with the conv_in output, as in diffusers."""
    skips: tuple[torch.Tensor, ...] = (hidden,)
    for block in blocks:
        hidden, block_skips = run_down_block(block, hidden, temb, cond)
        skips += block_skips
    return hidden, skips


def run_mid_block(
    block: nn.Module | None, hidden: torch.Tensor, temb: torch.Tensor, cond: AttentionStates
) -> torch.Tensor:
    """resnet0 -> (attentions[i] -> image_attentions[i] -> resnet i+1)*."""
    if block is None:
        return hidden
    if not has_cross_attention(block):
        return block(hidden, temb)
    hidden = _resnet(block, block.resnets[0], hidden, temb)
    for i, resnet in enumerate(block.resnets[1:]):
        hidden = _resnet(block, resnet, _attend(block, i, hidden, cond), temb)
    return hidden


def run_up_block(
    block: nn.Module,
    hidden: torch.Tensor,
    skips: tuple[torch.Tensor, ...],
    temb: torch.Tensor,
    cond: AttentionStates,
    upsample_size: torch.Size | None,
) -> torch.Tensor:
    """One up block, consuming `skips` from the last (deepest) one."""
    if not has_cross_attention(block):
        return block(hidden, skips, temb, upsample_size=upsample_size)
    for i, resnet in enumerate(block.resnets):
        hidden = torch.cat([hidden, skips[-1 - i]], dim=1)
        hidden = _attend(block, i, _resnet(block, resnet, hidden, temb), cond)
    for upsampler in block.upsamplers if block.upsamplers is not None else ():
        hidden = upsampler(hidden, upsample_size)
    return hidden


def run_up_blocks(
    blocks: Sequence[nn.Module], hidden: torch.Tensor, skips: tuple[torch.Tensor, ...], temb: torch.Tensor,
    cond: AttentionStates,
) -> torch.Tensor:
    """All up blocks. Like diffusers, pass explicit upsample sizes when the latent is not a multiple
    of the total down-sampling factor, so every up-sampled map matches its skip connection."""
    factor = 2 ** sum(block.upsamplers is not None for block in blocks)
    odd_size = any(size % factor for size in skips[0].shape[-2:])  # skips[0]: conv_in output, full size
    for index, block in enumerate(blocks):
        count = len(block.resnets)
        block_skips, skips = skips[-count:], skips[:-count]
        last = index == len(blocks) - 1
        upsample_size = skips[-1].shape[2:] if odd_size and not last else None
        hidden = run_up_block(block, hidden, block_skips, temb, cond, upsample_size)
    return hidden


def unsupported_features(model: nn.Module) -> list[str]:
    """Parts of diffusers' UNet/ControlNet that SeeSR (SD2) never uses and our forward does not run."""
    config = model.config
    checks = {
        "class embeddings": getattr(model, "class_embedding", None) is not None,
        "addition embeddings": getattr(model, "add_embedding", None) is not None,
        "encoder_hid_proj": getattr(model, "encoder_hid_proj", None) is not None,
        "time_cond_proj_dim": getattr(model.time_embedding, "cond_proj", None) is not None,
        "time_embedding_act_fn": getattr(model, "time_embed_act", None) is not None,
        "gligen attention": config.get("attention_type", "default") != "default",
        "dual cross-attention": bool(config.get("dual_cross_attention", False)),
        "global_pool_conditions": bool(config.get("global_pool_conditions", False)),
    }
    return [name for name, present in checks.items() if present]


def require_supported(model: nn.Module) -> None:
    """Refuse configurations our forward would silently get wrong."""
    unsupported = unsupported_features(model)
    if unsupported:
        raise ValueError(f"{type(model).__name__} does not support {', '.join(unsupported)} (SeeSR uses SD2's UNet)")

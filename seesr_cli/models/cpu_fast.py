"""A faster float32 ControlNet + UNet step on x86 CPUs: oneDNN kernels, weights packed once.

Why. On the CPU, PyTorch runs `nn.Linear` through MKL's sgemm and `nn.Conv2d` through
oneDNN, and both lose time that has nothing to do with the maths:

- MKL's sgemm is slow on AMD EPYC (our reference machine): the same GEMMs run 1.3-1.9x
  faster through oneDNN (`torch.ops.mkldnn._linear_pointwise`), e.g. 8192x320 @ 320x2560 in
  101 ms instead of 196 ms on 2 Zen 4 cores. Linears are ~40% of a step.
- each NCHW convolution reorders its input, weight and output to oneDNN's blocked layouts on
  every call; at the 16x16 and 8x8 levels reordering the 1280-channel weights costs as much
  as the convolution (packed: 0.72x and 0.53x the time). We pack every weight once for
  oneDNN's channels-last kernel; activations then stay channels-last between convolutions.
- the element-wise passes around them go into the kernels as oneDNN post-ops: GEGLU's gelu
  and product, every residual add (attention and feed-forward outputs, the transformer's
  output projection, the resnet's second convolution), and the no-op divisions by 1.0 go.

Same maths in float32 (no reduced-precision GEMMs, no approximations): outputs differ from
the stock modules by float rounding only, ~2e-6 of max |output| for the full-size step.

How. `use_onednn(unet, controlnet)` switches, in place, the class of the modules it speeds up
to a subclass whose forward takes the oneDNN path when it can (CPU, float32, nothing for
autograd to record, the plain SD2 configuration) and otherwise runs the stock forward.
Parameters, state dict and other devices are untouched; `use_stock` switches back. The
pipeline switches UNet + ControlNet on the CPU in float32 unless `LoadOptions.cpu_kernels`
is "stock" (`seesr_cli.pipeline.loading`); results record which ran (`kernels_in_use`).

Cost/benefit (bench/bench_models.py, full size, batch 2, latent 64x64, 2 threads; numbers in
bench/README.md): 0.74-0.92x the CPU time of the stock step (huge pages narrow the gap) and
no compile step: the first call packs the convolution weights (14-67 s more than a step on a
loaded 2-core machine), a second tile shape costs nothing extra.
Memory: the packed convolution weights are a second copy, +3.1 GB for SeeSR's UNet and
ControlNet (10.2 GB peak instead of ~7). torch.compile (inductor, freezing) was measured as
the alternative: ~20 min of compile per tile shape on this CPU and a second frozen copy of
all weights per shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.activations import GEGLU
from diffusers.models.attention import BasicTransformerBlock, FeedForward
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

__all__ = ["kernels_in_use", "onednn_available", "use_onednn", "use_stock"]


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def _fast(x: torch.Tensor, module: nn.Module, *others: torch.Tensor | None) -> bool:
    """The oneDNN path applies: float32 on the CPU, and nothing for autograd to record (its ops
    have no backward). Grad mode alone does not decide: a caller may run frozen models
    (`requires_grad_(False)`) with grad mode on (the pipeline's denoiser turns it off)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not onednn_available():
        return False
    if not torch.is_grad_enabled():
        return True
    tensors = (x, *(t for t in others if t is not None))
    return not any(t.requires_grad for t in tensors) and not any(p.requires_grad for p in module.parameters())


def _linear(x: torch.Tensor, layer: nn.Linear, weight=None, bias=None, attr: str = "none") -> torch.Tensor:
    """layer(x), optionally with a fused unary op; "gelu" with algorithm "none" is the exact erf gelu."""
    weight = layer.weight if weight is None else weight
    bias = layer.bias if bias is None else bias
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], "none" if attr == "gelu" else "")


def _linear_then(x: torch.Tensor, layer: nn.Linear, other: torch.Tensor, op: str = "add",
                 weight=None, bias=None) -> torch.Tensor:
    """layer(x) `op` other in one oneDNN call (op: "add" or "mul")."""
    weight = layer.weight if weight is None else weight
    bias = layer.bias if bias is None else bias
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, op)


class OneDNNLinear(nn.Linear):
    """nn.Linear through oneDNN's GEMM instead of MKL's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self) if _fast(x, self) else super().forward(x)


class OneDNNGEGLU(GEGLU):
    """GEGLU as two GEMMs over the halves of `proj`, gelu fused into one and the product into
    the other: no 2x-wide intermediate, no separate element-wise passes."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not _fast(x, self) or args or kwargs:
            return super().forward(x, *args, **kwargs)
        half = self.proj.out_features // 2
        weight, bias = self.proj.weight, self.proj.bias
        # Row slices of the weight are contiguous views: no copy.
        split = [(weight[:half], None if bias is None else bias[:half]),
                 (weight[half:], None if bias is None else bias[half:])]
        gate = _linear(x, self.proj, *split[1], attr="gelu")
        return _linear_then(x, self.proj, gate, "mul", *split[0])


class PackedConv2d(nn.Conv2d):
    """nn.Conv2d with its weight packed once for oneDNN's channels-last kernel (whose output
    is channels-last). The packed copy is rebuilt when the weight changes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.packable(x):
            return super().forward(x)
        return self.conv(x)

    def packable(self, x: torch.Tensor) -> bool:
        return _fast(x, self) and x.dim() == 4 and self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def conv(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """self(x), or self(x) + add in one call."""
        geometry = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        if add is None:
            return torch.ops.mkldnn._convolution_pointwise(x, self._packed(x), self.bias, *geometry, "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, add, self._packed(x), self.bias, *geometry, "add", None, None, [], None)

    def _packed(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        # Inference tensors have no version counter; they cannot change outside inference mode.
        key = (weight.data_ptr(), None if weight.is_inference() else weight._version)
        cache = self.__dict__.get("_onednn_weight")
        if cache is None or cache[0] != key:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight.detach().to_mkldnn(), list(self.padding), list(self.stride), list(self.dilation),
                self.groups, list(x.shape))
            cache = self.__dict__["_onednn_weight"] = (key, packed)
        return cache[1]


class OneDNNResnetBlock2D(ResnetBlock2D):
    """SD2's resnet (default time embedding, no resampling, output scale 1): the residual add
    fused into conv2, no division by 1.0, activations in place."""

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if (args or kwargs or not (self._plain() and self.conv2.packable(input_tensor))
                or not _fast(input_tensor, self, temb)):
            return super().forward(input_tensor, temb, *args, **kwargs)
        hidden = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        if self.time_emb_proj is not None and temb is not None:
            hidden = hidden + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        hidden = self.dropout(self.nonlinearity(self.norm2(hidden)))
        shortcut = input_tensor if self.conv_shortcut is None else self.conv_shortcut(input_tensor)
        return self.conv2.conv(hidden, add=shortcut.contiguous(memory_format=torch.channels_last))

    def _plain(self) -> bool:
        return (self.upsample is None and self.downsample is None and self.time_embedding_norm == "default"
                and not self.skip_time_act and self.output_scale_factor == 1.0 and not self.training
                and isinstance(self.conv2, PackedConv2d))


def _plain_attention(attn: Attention) -> bool:
    """The stock processor on SD2's attention: nothing beyond q/k/v, SDPA and the output linear."""
    return (type(attn.processor) is AttnProcessor2_0 and attn.spatial_norm is None and attn.group_norm is None
            and attn.norm_q is None and attn.norm_k is None and attn.norm_cross is None
            and not attn.residual_connection and attn.rescale_output_factor == 1.0
            and isinstance(attn.to_out[0], nn.Linear) and not attn.training)


def _attention(attn: Attention, x: torch.Tensor, context: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
    """attn(x, context) + residual, as AttnProcessor2_0 computes it, the add fused into to_out."""
    batch = x.shape[0]
    context = x if context is None else context
    query, key, value = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    head_dim = query.shape[-1] // attn.heads
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
    out = F.scaled_dot_product_attention(query, key, value)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
    return _linear_then(out, attn.to_out[0], residual)


class OneDNNTransformerBlock(BasicTransformerBlock):
    """SD2's transformer block (layer norms, self- then cross-attention, GEGLU feed-forward)
    with the three residual adds fused into the output linears."""

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, timestep=None, cross_attention_kwargs=None, class_labels=None,
                added_cond_kwargs=None) -> torch.Tensor:
        stock = (attention_mask, encoder_attention_mask, timestep, class_labels, added_cond_kwargs)
        if (any(v is not None for v in stock) or cross_attention_kwargs or hidden_states.dim() != 3
                or not (_fast(hidden_states, self, encoder_hidden_states) and self._plain())):
            return super().forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                   timestep, cross_attention_kwargs, class_labels, added_cond_kwargs)
        hidden = _attention(self.attn1, self.norm1(hidden_states), None, hidden_states)
        hidden = _attention(self.attn2, self.norm2(hidden), encoder_hidden_states, hidden)
        geglu, _, out = self.ff.net[:3]
        return _linear_then(geglu(self.norm3(hidden)), out, hidden)

    def _plain(self) -> bool:
        ff = self.ff
        return (self.norm_type == "layer_norm" and self.pos_embed is None and not self.only_cross_attention
                and self.attn2 is not None and self._chunk_size is None and not hasattr(self, "fuser")
                and _plain_attention(self.attn1) and _plain_attention(self.attn2)
                and type(ff) is FeedForward and len(ff.net) in (3, 4) and isinstance(ff.net[0], OneDNNGEGLU)
                and isinstance(ff.net[2], nn.Linear) and not self.training)


class OneDNNTransformer2D(Transformer2DModel):
    """Transformer2DModel whose linear `proj_out` adds the residual as a post-op and hands back
    a channels-last view instead of a contiguous NCHW copy."""

    def _get_output_for_continuous_inputs(self, hidden_states, residual, batch_size, height, width, inner_dim):
        if not (self.use_linear_projection and isinstance(self.proj_out, nn.Linear)
                and _fast(hidden_states, self.proj_out, residual)):
            return super()._get_output_for_continuous_inputs(hidden_states, residual, batch_size, height, width,
                                                            inner_dim)
        # (B, C, H, W) -> (B, H*W, C): a view when the residual is channels-last, else one copy.
        flat = residual.permute(0, 2, 3, 1).reshape(batch_size, height * width, inner_dim)
        out = _linear_then(hidden_states, self.proj_out, flat)
        return out.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)


_SWAPS: dict[type, type] = {
    nn.Linear: OneDNNLinear,
    GEGLU: OneDNNGEGLU,
    nn.Conv2d: PackedConv2d,
    ResnetBlock2D: OneDNNResnetBlock2D,
    BasicTransformerBlock: OneDNNTransformerBlock,
    Transformer2DModel: OneDNNTransformer2D,
}


def use_onednn(*models: nn.Module) -> int:
    """Switch the models' linears, GEGLUs, convolutions, resnets and transformers to the oneDNN
    paths, in place; returns how many modules were switched (0 without oneDNN, or when already
    switched). Only exact stock classes are switched: a subclass may override what we replace."""
    if not onednn_available():
        return 0
    return _switch(models, _SWAPS)


def use_stock(*models: nn.Module, keep_packed: bool = False) -> int:
    """Undo `use_onednn`; returns how many modules were switched back. The packed weights are
    dropped unless `keep_packed` (to switch back and forth, as bench/bench_models.py does)."""
    for model in models if not keep_packed else ():
        for module in model.modules():
            module.__dict__.pop("_onednn_weight", None)
    return _switch(models, {fast: stock for stock, fast in _SWAPS.items()})


def _switch(models, classes: dict[type, type]) -> int:
    switched = 0
    for model in models:
        for module in model.modules():
            new_class = classes.get(type(module))
            if new_class is not None:
                module.__class__ = new_class
                switched += 1
    return switched


def kernels_in_use(*models: nn.Module) -> str:
    """"onednn" when the models' forward takes the oneDNN path (switched, float32, on the CPU),
    else "stock": what a result records as having run."""
    fast = tuple(_SWAPS.values())
    for model in models:
        param = next(model.parameters(), None)
        if param is None or param.device.type != "cpu" or param.dtype != torch.float32:
            return "stock"
        if not any(isinstance(module, fast) for module in model.modules()):
            return "stock"
    return "onednn" if models and onednn_available() else "stock"

"""DAPE, SeeSR's degradation-aware prompt extractor: RAM (Swin-L + query2label head) with LoRA merged.

One image (resized to 384x384) gives the soft prompt (B x 145 x 512: the Swin
tokens, their mean prepended, projected by `image_proj`) and per-tag
probabilities, turned into the hard prompt with RAM's per-tag thresholds.
The encoder is transformers' `SwinModel`; the tagging head is written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from seesr_cli.errors import WeightsError
from seesr_cli.weights.compact import convert_files, read_dape_file, write_dape_file
from seesr_cli.weights.convert import HEAD_HEADS, convert_ram

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BERT_LN_EPS = 1e-12  # q2l_config.json layer_norm_eps


@dataclass(frozen=True)
class DAPEConfig:
    """Every size of the network; all but `head_heads` are read off checkpoint tensor shapes."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int
    image_size: int
    mlp_ratio: float
    prompt_dim: int
    num_labels: int
    label_dim: int
    label_proj: bool
    head_width: int
    head_ffn: int
    head_layers: int
    head_heads: int = HEAD_HEADS

    @property
    def vision_width(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def num_tokens(self) -> int:
        side = self.image_size // self.patch_size // 2 ** (len(self.depths) - 1)
        return side * side + 1  # + the prepended mean token

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], head_heads: int = HEAD_HEADS) -> DAPEConfig:
        """Infer the sizes from DAPE-named weights (see `checkpoints.convert_ram`)."""
        try:
            return cls._infer(state, head_heads)
        except (KeyError, StopIteration, ValueError) as exc:
            raise WeightsError(f"DAPE weights are incomplete or malformed: {exc!r}") from exc

    @classmethod
    def _infer(cls, state: Mapping[str, Tensor], head_heads: int) -> DAPEConfig:
        blocks = [re.match(r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.", k) for k in state]
        stages = sorted({(int(m.group(1)), int(m.group(2))) for m in blocks if m})
        depths = tuple(1 + max(b for s, b in stages if s == stage) for stage in range(stages[-1][0] + 1))
        tables = [state[f"swin.encoder.layers.{s}.blocks.0.attention.relative_position_bias.relative_position_bias_table"]
                  for s in range(len(depths))]
        window = (round(tables[0].shape[0] ** 0.5) + 1) // 2  # the table has (2w - 1)^2 rows
        patch = state["swin.embeddings.patch_embeddings.projection.weight"]
        fc1 = state["swin.encoder.layers.0.blocks.0.mlp.fc1.weight"]
        heads = sorted({int(m.group(1)) for k in state if (m := re.match(r"head\.(\d+)\.", k))})
        labels = state["label_embed"]
        return cls(
            embed_dim=patch.shape[0],
            depths=depths,
            num_heads=tuple(t.shape[1] for t in tables),
            window_size=window,
            patch_size=patch.shape[-1],
            # RAM's Swin configs end on one window of tokens (384 = 12 * 4 * 2^3, 224 = 7 * 4 * 2^3).
            image_size=window * patch.shape[-1] * 2 ** (len(depths) - 1),
            mlp_ratio=fc1.shape[0] / fc1.shape[1],
            prompt_dim=state["image_proj.weight"].shape[0],
            num_labels=labels.shape[0],
            label_dim=labels.shape[1],
            label_proj="wordvec_proj.weight" in state,
            head_width=state["head.0.query.weight"].shape[0],
            head_ffn=state["head.0.ffn_in.weight"].shape[0],
            head_layers=len(heads),
            head_heads=head_heads,
        )


def _swin(config: DAPEConfig) -> nn.Module:
    from transformers import SwinConfig, SwinModel

    swin = SwinConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=3,
        embed_dim=config.embed_dim, depths=list(config.depths), num_heads=list(config.num_heads),
        window_size=config.window_size, mlp_ratio=config.mlp_ratio, qkv_bias=True, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
        use_absolute_embeddings=False, layer_norm_eps=1e-5,
    )
    return SwinModel(swin, add_pooling_layer=True)  # the pooler is the token mean RAM prepends


class TaggingLayer(nn.Module):
    """One query2label layer (RAM's BERT layer in 'tagging' mode): labels cross-attend to the
    image tokens (residual + LayerNorm), then BERT's GELU feed-forward (residual + LayerNorm).
    There is no self-attention among labels (RAM deletes it, following Query2Label)."""

    def __init__(self, width: int, context_width: int, ffn_width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise WeightsError(f"tagging head width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(context_width, width)
        self.value = nn.Linear(context_width, width)
        self.attn_out = nn.Linear(width, width)
        self.attn_norm = nn.LayerNorm(width, eps=BERT_LN_EPS)
        self.ffn_in = nn.Linear(width, ffn_width)
        self.ffn_out = nn.Linear(ffn_width, width)
        self.ffn_norm = nn.LayerNorm(width, eps=BERT_LN_EPS)

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, labels: Tensor, context: Tensor) -> Tensor:
        """labels: (1 or B) x N x W (shared label queries broadcast over the batch); context: B x T x C."""
        query = self._split(self.query(labels)).expand(context.shape[0], -1, -1, -1)
        attended = F.scaled_dot_product_attention(query, self._split(self.key(context)), self._split(self.value(context)))
        x = self.attn_norm(labels + self.attn_out(attended.transpose(1, 2).flatten(2)))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class DAPE(nn.Module):
    """The inference network with LoRA merged. Build it with `from_checkpoints` (official files) or `load`."""

    def __init__(self, config: DAPEConfig, tag_list: Sequence[str], thresholds: Sequence[float] | Tensor) -> None:
        super().__init__()
        if len(tag_list) != config.num_labels or len(thresholds) != config.num_labels:
            raise WeightsError(
                f"the tagging head has {config.num_labels} labels but the vocabulary has {len(tag_list)} tags "
                f"and {len(thresholds)} thresholds"
            )
        self.config = config
        self.swin = _swin(config)
        self.image_proj = nn.Linear(config.vision_width, config.prompt_dim)
        self.label_embed = nn.Parameter(torch.zeros(config.num_labels, config.label_dim))
        self.wordvec_proj = nn.Linear(config.label_dim, config.head_width) if config.label_proj else nn.Identity()
        self.head = nn.ModuleList(
            TaggingLayer(config.head_width, config.prompt_dim, config.head_ffn, config.head_heads)
            for _ in range(config.head_layers)
        )
        self.fc = nn.Linear(config.head_width, 1)
        self.tag_list: tuple[str, ...] = tuple(tag_list)
        # Kept in float32 outside the state dict: a cast to fp16 would move tags across thresholds.
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float32).detach().clone()

    # ------------------------------------------------------------------ building

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], tag_list: Sequence[str],
                        thresholds: Sequence[float] | Tensor, head_heads: int = HEAD_HEADS) -> DAPE:
        """Assemble from DAPE-named weights without allocating (or randomly initialising) twice."""
        from accelerate import init_empty_weights

        config = DAPEConfig.from_state_dict(state, head_heads)
        with init_empty_weights(include_buffers=False):  # buffers (Swin's index tables) stay real
            model = cls(config, tag_list, thresholds)
        try:
            model.load_state_dict(dict(state), strict=True, assign=True)
        except RuntimeError as exc:
            raise WeightsError(f"DAPE weights do not fit the inferred architecture: {exc}") from exc
        return model.eval().requires_grad_(False)

    @classmethod
    def from_state_dicts(cls, ram: Mapping[str, Tensor], lora: Mapping[str, Tensor] | None,
                         tag_list: Sequence[str], thresholds: Sequence[float] | Tensor,
                         head_heads: int = HEAD_HEADS) -> DAPE:
        """From RAM's `["model"]` state dict and DAPE.pth's LoRA tensors (merged once here)."""
        weights = convert_ram(ram, lora).state_dict
        # Own the memory: views into memory-mapped pickles or into fused qkv tensors must not leak out.
        weights = {k: v.clone(memory_format=torch.contiguous_format) for k, v in weights.items()}
        return cls.from_state_dict(weights, tag_list, thresholds, head_heads)

    @classmethod
    def from_checkpoints(cls, ram: str | Path, lora: str | Path | None, *, tags: str | Path,
                         thresholds: str | Path, head_heads: int = HEAD_HEADS) -> DAPE:
        """From the official files: `ram_swin_large_14m.pth` (only its "model" entry is read),
        `DAPE.pth` (None: plain RAM), `ram_tag_list.txt` and the thresholds (.txt or .py list)."""
        state, tag_list, limits = convert_files(Path(ram), None if lora is None else Path(lora), Path(tags),
                                                Path(thresholds))
        # Own the memory: views into memory-mapped pickles or into fused qkv tensors must not leak out.
        state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in state.items()}
        try:
            return cls.from_state_dict(state, tag_list, limits, head_heads)
        except WeightsError as exc:
            sources = ", ".join(str(p) for p in (ram, lora, tags, thresholds) if p is not None)
            raise WeightsError(f"{exc} (loading {sources})") from exc

    def save(self, path: str | Path) -> None:
        """One safetensors file (`weights.compact`): merged weights, tags and thresholds."""
        write_dape_file(Path(path), self.state_dict(), self.tag_list, self.thresholds.tolist(), self.config.head_heads)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DAPE:
        """Read a file written by `save` (or the weights' conversion); weights go straight to `device`."""
        tensors, tags, thresholds, head_heads = read_dape_file(Path(path), device=str(device or "cpu"))
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        try:
            model = cls.from_state_dict(tensors, tags, thresholds, head_heads)
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}; delete it to convert again") from exc
        return model.to(device or "cpu")

    # ------------------------------------------------------------------ inference

    def preprocess(self, images: Sequence[Image.Image] | Tensor) -> Tensor:
        """PIL images or a [0, 1] float B x 3 x H x W tensor -> normalised B x 3 x 384 x 384 float32.

        Official: ToTensor, then torchvision Resize((384, 384)) on the tensor (bilinear,
        no antialiasing), then ImageNet Normalize.
        """
        if isinstance(images, Tensor):
            batches = [images if images.dim() == 4 else images.unsqueeze(0)]
        else:
            batches = [_pil_to_tensor(image) for image in images]
        if not batches:
            raise ValueError("preprocess needs at least one image")
        size = (self.config.image_size, self.config.image_size)
        x = torch.cat([
            F.interpolate(b.float(), size=size, mode="bilinear", align_corners=False, antialias=False) for b in batches
        ])
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode(self, x: Tensor) -> Tensor:
        """B x 3 x 384 x 384 (normalised) -> B x 145 x 1536 Swin tokens, their mean first."""
        weight = self.image_proj.weight
        out = self.swin(pixel_values=x.to(device=weight.device, dtype=weight.dtype))
        return torch.cat([out.pooler_output.unsqueeze(1), out.last_hidden_state], dim=1)

    def embed(self, x: Tensor) -> Tensor:
        """The soft prompt: B x 145 x 512 (RAM's `generate_image_embeds`)."""
        return self.image_proj(self.encode(x))

    def tag_logits(self, embeds: Tensor) -> Tensor:
        """Tagging head on soft prompts: B x 145 x 512 -> B x num_labels logits."""
        labels = F.relu(self.wordvec_proj(self.label_embed)).unsqueeze(0)  # one set of queries, broadcast
        for layer in self.head:
            labels = layer(labels, embeds)
        return self.fc(labels).squeeze(-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(soft prompts, tag logits) from one encoder pass."""
        embeds = self.embed(x)
        return embeds, self.tag_logits(embeds)

    def logits(self, x: Tensor) -> Tensor:
        return self.forward(x)[1]

    def probabilities(self, x: Tensor) -> Tensor:
        """Per-tag probabilities, float32 whatever the network's dtype."""
        return self.logits(x).float().sigmoid()

    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(soft prompts B x 145 x 512, float32 tag probabilities B x num_labels), Swin run once."""
        embeds, logits = self.forward(x)
        return embeds, logits.float().sigmoid()

    def tag_scores(self, probs: Tensor, threshold: float | None = None) -> list[list[tuple[str, float]]]:
        """Per image, the (tag, probability) pairs that are on, in vocabulary order: a tag is on where its
        probability exceeds its own threshold (RAM's class thresholds), or the global `threshold`."""
        probs = probs.float().cpu()
        limits = self.thresholds if threshold is None else torch.full_like(self.thresholds, threshold)
        return [[(self.tag_list[i], float(row[i])) for i in (row > limits).nonzero().flatten().tolist()]
                for row in probs]

    def hard_prompts(self, probs: Tensor, threshold: float | None = None) -> list[str]:
        """One ", "-joined tag string per image (the hard prompt), in vocabulary order."""
        return [", ".join(tag for tag, _ in row) for row in self.tag_scores(probs, threshold)]

    def tags(self, x: Tensor, threshold: float | None = None) -> list[str]:
        return self.hard_prompts(self.probabilities(x), threshold)


def _pil_to_tensor(image: Image.Image) -> Tensor:
    """PIL -> 1 x 3 x H x W float in [0, 1], as torchvision's ToTensor (uint8 / 255)."""
    array = np.array(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0

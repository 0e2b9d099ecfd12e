"""Turn the official RAM / DAPE checkpoints into DAPE's inference weights.

This is the one place that knows their key layouts: prefix stripping, the
`vision_multi` -> `tagging_head` rename, the loralib LoRA merge, the map from RAM's
names to ours (transformers' SwinModel + our tagging head), and the tag vocabulary.
Reading the pickles safely is `pickles`; the compact file they become is `compact`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from seesr_cli.errors import WeightsError

HEAD_HEADS = 4  # q2l_config.json num_attention_heads: the one DAPE size tensor shapes cannot tell
# loralib defaults used by the official code: lora_alpha 1, so scaling = 1 / r.
LORA_ALPHA = 1.0
# Swin `qkv` is loralib.MergedLinear(enable_lora=[True, False, True]): q and v adapted, k not.
SWIN_QKV_LORA = (True, False, True)

_DROPPED_PREFIXES = ("tag_encoder.", "text_decoder.")  # RAM's captioning parts, unused by DAPE
_DROPPED_BUFFERS = ("relative_position_index", "attn_mask")  # recomputed from the window size

# ---------------------------------------------------------------------------- key canonicalisation


def canonical_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip DataParallel's `module.` prefix and rename `vision_multi` to `tagging_head`.

    The official `load_checkpoint_swinlarge` does the same rename; whether the released RAM
    file uses `vision_multi` is unknown, so both spellings load.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        key = key.replace("vision_multi", "tagging_head")
        out[key] = value
    return out


def lora_delta(lora_a: Tensor, lora_b: Tensor, alpha: float = LORA_ALPHA) -> Tensor:
    """loralib.Linear's merged update: `B @ A * (alpha / r)`."""
    rank = lora_a.shape[0]
    return (lora_b.float() @ lora_a.float()) * (alpha / rank)


def merged_lora_delta(
    lora_a: Tensor, lora_b: Tensor, out_features: int, enabled: Sequence[bool], alpha: float = LORA_ALPHA
) -> Tensor:
    """loralib.MergedLinear's update for a fused projection (e.g. Swin qkv).

    `lora_A` stacks one (r x in) block per enabled part, `lora_B` one (out/parts x r) block;
    each enabled part's rows get `B_g @ A_g * (alpha / r)`, the others stay zero.
    """
    groups = sum(enabled)
    rank = lora_a.shape[0] // groups
    part = out_features // len(enabled)
    if lora_a.shape[0] != rank * groups or lora_b.shape != (part * groups, rank):
        raise WeightsError(f"LoRA shapes {tuple(lora_a.shape)} / {tuple(lora_b.shape)} do not fit {out_features} outputs")
    rows = []
    group = 0
    for on in enabled:
        if on:
            a = lora_a[group * rank : (group + 1) * rank].float()
            b = lora_b[group * part : (group + 1) * part].float()
            rows.append((b @ a) * (alpha / rank))
            group += 1
        else:
            rows.append(lora_a.new_zeros((part, lora_a.shape[1]), dtype=torch.float32))
    return torch.cat(rows)


# ---------------------------------------------------------------------------- RAM -> DAPE


@dataclass(frozen=True)
class Conversion:
    """DAPE weights (our names, LoRA merged) and the input keys that were deliberately left out."""

    state_dict: dict[str, Tensor]
    ignored: tuple[str, ...]


def _swin_key(key: str) -> str | None:
    """RAM's `visual_encoder.*` name -> transformers SwinModel name (under `swin.`); qkv handled apart."""
    rest = key[len("visual_encoder.") :]
    simple = {
        "patch_embed.proj.": "embeddings.patch_embeddings.projection.",
        "patch_embed.norm.": "embeddings.norm.",
        "norm.": "layernorm.",
    }
    for old, new in simple.items():
        if rest.startswith(old):
            return "swin." + new + rest[len(old) :]
    found = re.fullmatch(r"layers\.(\d+)\.(blocks\.\d+\.)?(.+)", rest)
    if not found:
        return None
    stage, block, tail = found.groups()
    if block is None:  # patch merging: downsample.reduction / downsample.norm keep their names
        return f"swin.encoder.layers.{stage}.{tail}" if tail.startswith("downsample.") else None
    renames = {
        "norm1.": "layernorm_before.",
        "norm2.": "layernorm_after.",
        "attn.proj.": "attention.o_proj.",
        "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
        "mlp.": "mlp.",
    }
    for old, new in renames.items():
        if tail.startswith(old):
            return f"swin.encoder.layers.{stage}.{block}{new}{tail[len(old):]}"
    return None


def _head_key(key: str) -> str | None:
    """RAM's `tagging_head.encoder.layer.N.*` (a BERT layer without self-attention) -> ours."""
    found = re.fullmatch(r"tagging_head\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", key)
    if not found:
        return None
    layer, module, kind = found.groups()
    names = {
        "crossattention.self.query": "query",
        "crossattention.self.key": "key",
        "crossattention.self.value": "value",
        "crossattention.output.dense": "attn_out",
        "crossattention.output.LayerNorm": "attn_norm",
        "intermediate.dense": "ffn_in",
        "output.dense": "ffn_out",
        "output.LayerNorm": "ffn_norm",
    }
    return f"head.{layer}.{names[module]}.{kind}" if module in names else None


def dape_key(key: str) -> str | None:
    """Our name for a RAM parameter DAPE uses, or None for one it does not."""
    if key in ("label_embed",) or re.fullmatch(r"(image_proj|wordvec_proj|fc)\.(weight|bias)", key):
        return key
    if key.startswith("visual_encoder."):
        return _swin_key(key)
    if key.startswith("tagging_head."):
        return _head_key(key)
    return None


def _lora_deltas(lora: Mapping[str, Tensor], base: Mapping[str, Tensor], head_layers: int) -> tuple[dict, list]:
    """Sum every LoRA delta per RAM weight it updates; tied tag-encoder layers update the head."""
    deltas: dict[str, Tensor] = {}
    unused: list[str] = []
    for key_a in sorted(k for k in lora if k.endswith(".lora_A")):
        stem = key_a[: -len(".lora_A")]
        target = stem + ".weight"
        tied = re.fullmatch(r"tag_encoder\.encoder\.layer\.(\d+)\.(crossattention\..+)", stem)
        if tied and int(tied.group(1)) < head_layers:
            # RAMLora ties these layers' weights to the tagging head's; loralib merges
            # BOTH modules' deltas into that shared tensor (W + dTagEncoder + dTagging).
            target = f"tagging_head.encoder.layer.{tied.group(1)}.{tied.group(2)}.weight"
        if dape_key(target) is None and not _is_swin_qkv(target):
            unused += [key_a, stem + ".lora_B"]
            continue
        if stem + ".lora_B" not in lora or target not in base:
            raise WeightsError(f"LoRA entry {stem} has no matching lora_B or base weight")
        a, b = lora[key_a], lora[stem + ".lora_B"]
        if stem.endswith(".attn.qkv"):
            delta = merged_lora_delta(a, b, base[target].shape[0], SWIN_QKV_LORA)
        else:
            delta = lora_delta(a, b)
        deltas[target] = deltas[target] + delta if target in deltas else delta
    orphans = [k for k in lora if not k.endswith(".lora_A") and k[: -len(".lora_B")] + ".lora_A" not in lora]
    if orphans:
        raise WeightsError(f"LoRA entries without a partner: {orphans[:3]}")
    return deltas, unused


def convert_ram(ram: Mapping[str, Tensor], lora: Mapping[str, Tensor] | None = None) -> Conversion:
    """Turn RAM's `["model"]` state dict (+ DAPE.pth LoRA tensors) into DAPE's inference weights.

    Every LoRA delta is merged once (loralib's eval-time merge); RAM's tag encoder,
    caption decoder and Swin index/mask buffers are left out. Unknown keys and
    missing LoRA partners raise WeightsError rather than being silently dropped.
    """
    ram = canonical_keys(ram)
    lora = canonical_keys(lora or {})
    stray = [k for k in ram if "lora_" in k] + [k for k in lora if "lora_" not in k]
    if stray:
        raise WeightsError(f"unexpected entries: {stray[:3]} (RAM base and DAPE LoRA files swapped?)")
    head_layers = len({m.group(1) for k in ram if (m := re.match(r"tagging_head\.encoder\.layer\.(\d+)\.", k))})
    deltas, ignored = _lora_deltas(lora, ram, head_layers)
    out: dict[str, Tensor] = {}
    for key, value in ram.items():
        if key.startswith(_DROPPED_PREFIXES) or key.rsplit(".", 1)[-1] in _DROPPED_BUFFERS:
            ignored.append(key)
            continue
        if _is_swin_qkv(key):
            out.update(_split_qkv(key, value, deltas.get(key)))
            continue
        name = dape_key(key)
        if name is None:
            raise WeightsError(f"unexpected RAM checkpoint entry {key!r}")
        out[name] = value + deltas[key].to(value.dtype) if key in deltas else value
    return Conversion(out, tuple(ignored))


def _is_swin_qkv(key: str) -> bool:
    return re.fullmatch(r"visual_encoder\.layers\.\d+\.blocks\.\d+\.attn\.qkv\.(weight|bias)", key) is not None


def _split_qkv(key: str, value: Tensor, delta: Tensor | None) -> dict[str, Tensor]:
    """Swin's fused qkv -> SwinModel's q_proj / k_proj / v_proj (q first, as RAM reshapes it)."""
    if delta is not None:
        value = value + delta.to(value.dtype)
    stage, block, kind = re.fullmatch(r"visual_encoder\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(\w+)", key).groups()
    stem = f"swin.encoder.layers.{stage}.blocks.{block}.attention"
    parts = value.chunk(3, dim=0)
    return {f"{stem}.{name}.{kind}": part for name, part in zip(("q_proj", "k_proj", "v_proj"), parts)}


# ---------------------------------------------------------------------------- tag vocabulary


def read_tag_list(path: str | Path) -> list[str]:
    """RAM's tag vocabulary: one tag per line (`ram_tag_list.txt`)."""
    path = Path(path)
    try:
        tags = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read the tag list ({exc})") from exc
    if not tags or any(not t.strip() for t in tags):
        raise WeightsError(f"{path}: the tag list must hold one non-empty tag per line")
    return tags


def read_thresholds(path: str | Path) -> list[float]:
    """Per-tag thresholds: one float per line (`.txt`), or a Python list literal (the RAM space's `.py`).

    The `.py` form is parsed with `ast` and never imported or executed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read the thresholds ({exc})") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        return [float(line) for line in lines]
    except ValueError:
        pass
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise WeightsError(f"{path}: neither one number per line nor a Python list literal") from exc
    best: list[float] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            try:
                values = ast.literal_eval(node)
            except ValueError:
                continue
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(values) > len(best):
                best = [float(v) for v in values]
    if not best:
        raise WeightsError(f"{path}: no list of numbers found")
    return best

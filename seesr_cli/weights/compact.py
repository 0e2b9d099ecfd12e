"""The compact DAPE file: RAM + DAPE.pth + the tag vocabulary, converted once into one safetensors file.

RAM's 5.6 GB pickle holds a caption decoder and a tag encoder that DAPE never runs; the
converted file keeps DAPE's 0.85 GB of weights with the LoRA merged, the tags and the
per-tag thresholds. Its name hashes its inputs' sha256s and the format, so a changed
input converts again; the two most recently used files are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from seesr_cli.errors import OutputWriteError, WeightsError
from seesr_cli.io.atomic import atomic_write
from seesr_cli.weights.cache import CacheDirs
from seesr_cli.weights.convert import HEAD_HEADS, convert_ram, read_tag_list, read_thresholds
from seesr_cli.weights.hub import Located, Progress, WeightsEvent
from seesr_cli.weights.manifest import DAPE_KEYS
from seesr_cli.weights.pickles import load_pickle_state_dict
from seesr_cli.weights.verify import VerifiedRecord

FORMAT = "seesr-dape/2"
# What any DAPE weights hold, whatever their sizes: a RAM file without them is not a RAM file.
_REQUIRED = ("label_embed", "image_proj.weight", "fc.weight", "head.0.query.weight",
             "swin.embeddings.patch_embeddings.projection.weight")


def write_dape_file(path: Path, state: Mapping[str, Tensor], tags: Sequence[str], thresholds: Sequence[float],
                    head_heads: int = HEAD_HEADS) -> None:
    """DAPE-named weights and the vocabulary as one safetensors file, written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    metadata = {
        "format": FORMAT,
        "head_heads": str(head_heads),
        "tags": json.dumps(list(tags)),
        "thresholds": json.dumps([float(t) for t in thresholds]),  # float32 -> repr -> float32 is exact
    }
    data = save(tensors, metadata=metadata)
    atomic_write(Path(path), lambda f: f.write(data), overwrite=True)


def read_dape_file(path: Path, device: str = "cpu") -> tuple[dict[str, Tensor], list[str], list[float], int]:
    """(weights, tags, thresholds, tagging-head heads) of a file written by `write_dape_file`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise WeightsError(f"{path}: not a DAPE file written by this seesr-cli (format "
                               f"{metadata.get('format')!r}, expected {FORMAT!r}); delete it to convert again")
        tags, thresholds = json.loads(metadata["tags"]), json.loads(metadata["thresholds"])
        head_heads = int(metadata["head_heads"])
        tensors = load_file(str(path), device=device)
    except (OSError, SafetensorError, ValueError, KeyError) as exc:  # damaged header or metadata
        raise WeightsError(f"{path}: cannot read the DAPE weights ({exc}); delete it to convert again") from exc
    return tensors, tags, thresholds, head_heads


def convert_files(ram: Path, lora: Path | None, tags: Path, thresholds: Path) -> tuple[dict, list, list]:
    """The official files -> (DAPE-named weights with the LoRA merged, tags, thresholds)."""
    ram_state = load_pickle_state_dict(ram, entry="model")  # only RAM's "model" entry is read
    # DAPE.pth is a flat dict; basicsr-style {"params": ...} wrappers are accepted too.
    lora_state = load_pickle_state_dict(lora, entry="params") if lora is not None else None
    state = convert_ram(ram_state, lora_state).state_dict
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise WeightsError(f"{ram}: not a RAM checkpoint (no {missing[0]})")
    return state, read_tag_list(tags), read_thresholds(thresholds)


def compact_name(digests: list[str]) -> str:
    """Name of the compact DAPE file: a hash of its inputs' sha256s, so a changed input re-converts."""
    parts = {"format": FORMAT, **dict(zip(DAPE_KEYS, digests))}  # a new file format re-converts too
    return "dape-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20] + ".safetensors"


def compact_dape(found: dict[str, Located], dirs: CacheDirs, record: VerifiedRecord,
                 progress: Progress | None) -> Path:
    """RAM + DAPE.pth + tag files -> one safetensors file, converted once (atomically) and reused."""
    out = dirs.derived / compact_name([record.digest(found[key].path(), key, progress) for key in DAPE_KEYS])
    if out.is_file():
        with contextlib.suppress(OSError):  # a read-only cache still works
            os.utime(out)  # most recently used: kept by _prune
        return out
    if progress is not None:
        progress(WeightsEvent("dape", "convert", 0.0, 1.0, "step"))
    state, tags, thresholds = convert_files(found["ram"].path(), found["dape_lora"].path(),
                                            found["tags"].path(), found["thresholds"].path())
    try:
        write_dape_file(out, state, tags, thresholds)
    except OutputWriteError as exc:
        raise WeightsError(f"cannot write the converted DAPE to {out.parent} ({exc.cause}); "
                           "set SEESR_CACHE to a writable folder") from exc
    _prune(dirs.derived, keep=2)
    if progress is not None:
        progress(WeightsEvent("dape", "convert", 1.0, 1.0, "step"))
    return out


def _prune(folder: Path, keep: int) -> None:
    """Compact files of older inputs cost ~0.85 GB each: keep the `keep` most recently used."""
    with contextlib.suppress(OSError):  # another process may be pruning too
        olds = sorted(folder.glob("dape-*.safetensors"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for path in olds[keep:]:
            path.unlink(missing_ok=True)

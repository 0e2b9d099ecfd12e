"""Prompt composition and CLIP text encoding (SEESR.md section 3.1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from seesr_cli.errors import Cancelled, InternalError


def compose_prompt(tags: str, user_prompt: str = "", added_prompt: str = "") -> str:
    """The positive prompt exactly as the official script builds it.

    `test_seesr.py` writes f"{tags}, {prompt}," and then appends the added prompt
    without a space: "tag1, tag2, ,clean, high-resolution, 8k" for an empty user
    prompt. CLIP tokenises ", ,clean" like ", , clean", so we keep the official
    string rather than tidy it.
    """
    return f"{tags}, {user_prompt}," + added_prompt


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """CLIP token ids, N x 77: BOS, at most 75 ids, EOS, pads, as the official pipeline's call.

    `tokenizer` is `models.OfficialCLIPTokenizer` (or any callable list[str] -> N x 77 ids):
    transformers 5's CLIPTokenizer gives other ids than the official stack for many prompts.
    """
    ids = tokenizer(list(prompts))
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[0] != len(prompts):
        raise InternalError(f"the tokenizer must return N x length token ids; got {type(ids).__name__}")
    return ids


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], *, batch_size: int = 1,
                   should_cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """Last hidden states (N x 77 x D) of the text encoder, each distinct prompt encoded once.

    Every forward runs exactly `batch_size` prompts (the last batch padded with its last
    prompt, those rows dropped), so a prompt's states never depend on its batch-mates.
    """
    if batch_size < 1:
        raise InternalError(f"text encoder batch must be >= 1; got {batch_size}")
    unique = list(dict.fromkeys(prompts))
    device = text_encoder.device
    chunks = []
    for start in range(0, len(unique), batch_size):
        if should_cancel is not None and should_cancel():
            raise Cancelled("stopped while encoding the prompts")
        batch = unique[start : start + batch_size]
        real = len(batch)
        batch += [batch[-1]] * (batch_size - real)
        # SD2's CLIP config has no use_attention_mask: the official call passes none.
        chunks.append(text_encoder(tokenize(tokenizer, batch).to(device))[0][:real])
    states = torch.cat(chunks)
    index = {prompt: i for i, prompt in enumerate(unique)}
    return states[[index[p] for p in prompts]]

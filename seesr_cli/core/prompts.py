"""Prompt composition and CLIP text encoding (SEESR.md section 3.1)."""

from __future__ import annotations

import torch


def compose_prompt(tags: str, user_prompt: str = "", added_prompt: str = "") -> str:
    """The positive prompt exactly as the official script builds it.

    `test_seesr.py` writes f"{tags}, {prompt}," and then appends the added prompt
    without a space: "tag1, tag2, ,clean, high-resolution, 8k" for an empty user
    prompt. CLIP tokenises ", ,clean" like ", , clean", so we keep the official
    string rather than tidy it.
    """
    return f"{tags}, {user_prompt}," + added_prompt


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """CLIP token ids, padded/truncated to the tokenizer's max length (77)."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], *, batch_size: int = 16) -> torch.Tensor:
    """Last hidden states (N x 77 x D) of the text encoder, each distinct prompt encoded once."""
    unique = list(dict.fromkeys(prompts))
    device = text_encoder.device
    chunks = []
    for start in range(0, len(unique), batch_size):
        ids = tokenize(tokenizer, unique[start : start + batch_size]).to(device)
        # SD2's CLIP config has no use_attention_mask: the official call passes none.
        chunks.append(text_encoder(ids)[0])
    states = torch.cat(chunks)
    index = {prompt: i for i, prompt in enumerate(unique)}
    return states[[index[p] for p in prompts]]

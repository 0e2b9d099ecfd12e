"""fp16 vs bf16 for bench/gpu_suite.py: one ControlNet+UNet forward timed and profiled per dtype.

The question (issue 13): why is fp16 slower than bf16? Candidates: the attention upcast (SD2-base's
config has `upcast_attention: false`, recorded), non-finite fp16 results redone in fp32 (the eager
runs' notes say so), or kernel choice (cuDNN convolutions, GEMMs, attention backends). The profile
sums CUDA kernel time per kind of kernel, and the difference per kind names where the gap is.
"""

from __future__ import annotations

import re
import statistics
import time

import torch

from seesr_cli.core.denoise import controlled_noise

KINDS = (  # first match wins; kernel names of cuBLAS/CUTLASS/cuDNN/flash/PyTorch
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention|mem_eff"),
    ("conv", r"conv|cudnn|implicit_?gemm|winograd|fprop|dgrad|xmma_fprop|nhwc"),
    ("gemm", r"gemm|matmul|cutlass|cublas|nvjet|xmma|sm90_|sm80_|ampere_|hopper|addmm|bmm|aten::mm$|linear"),
    ("norm", r"norm"),
    ("copy/cast", r"copy|cast|convert|to_copy|cat_|catarray"),
    ("elementwise", r"elementwise|vectorized|unrolled|reduce|silu|gelu|softmax|add|mul"),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return "other"


def inputs(unet, rows: int, latent: int, device: torch.device, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator("cpu").manual_seed(seed)
    text_dim = unet.config.cross_attention_dim
    return (torch.randn(rows, 4, latent, latent, generator=g).to(device, dtype),
            torch.tensor([500], device=device),
            torch.randn(rows, 77, text_dim, generator=g).to(device, dtype),
            torch.randn(rows, 145, 512, generator=g).to(device, dtype),
            torch.rand(rows, 3, latent * 8, latent * 8, generator=g).to(device, dtype))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def forward_ms(unet, controlnet, args, device: torch.device, runs: int = 5) -> float:
    """Median milliseconds of one ControlNet+UNet forward (2 warm-ups)."""
    sample, t, text, image, control = args
    for _ in range(2):
        controlled_noise(unet, controlnet, sample, t, text, image, control, 1.0)
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        out = controlled_noise(unet, controlnet, sample, t, text, image, control, 1.0)
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    if not bool(torch.isfinite(out).all()):
        times.append(float("nan"))  # a non-finite forward is worth seeing in the median
    return statistics.median(times)


@torch.no_grad()
def profile(unet, controlnet, args, device: torch.device, top: int = 12) -> dict:
    """CUDA kernel time (or CPU op time on the CPU) of one forward: per kind and the top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sample, t, text, image, control = args
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        controlled_noise(unet, controlnet, sample, t, text, image, control, 1.0)
        _sync(device)
    rows = []
    for event in prof.key_averages():
        if device.type == "cuda":
            if not str(getattr(event, "device_type", "")).endswith("CUDA"):
                continue
            us = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        else:
            us = event.self_cpu_time_total
        if us > 0:
            rows.append((event.key, us / 1e3, event.count))
    rows.sort(key=lambda r: -r[1])
    per_kind: dict[str, float] = {}
    for name, ms, _ in rows:
        per_kind[kind_of(name)] = per_kind.get(kind_of(name), 0.0) + ms
    return {"total_ms": round(sum(r[1] for r in rows), 3),
            "per_kind_ms": {k: round(v, 3) for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
            "top": [{"kernel": name[:140], "kind": kind_of(name), "ms": round(ms, 3), "calls": count}
                    for name, ms, count in rows[:top]]}


def table(profiles: dict[str, dict]) -> str:
    """Markdown: per kind of kernel, ms per forward in each dtype and the difference."""
    names = list(profiles)
    kinds = sorted({k for p in profiles.values() for k in p["per_kind_ms"]},
                   key=lambda k: -max(p["per_kind_ms"].get(k, 0.0) for p in profiles.values()))
    head = "| kind | " + " | ".join(f"{n} ms" for n in names) + (" | difference |" if len(names) == 2 else " |")
    lines = [head, "|---" * (len(names) + 1 + (len(names) == 2)) + "|"]
    for kind in kinds + ["total"]:
        values = [p["total_ms"] if kind == "total" else p["per_kind_ms"].get(kind, 0.0) for p in profiles.values()]
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {kind} | {cells}" + (f" | {values[0] - values[1]:+.2f} |" if len(values) == 2 else " |"))
    for name, p in profiles.items():
        lines += ["", f"Top kernels, {name}:", "", "| kernel | kind | ms | calls |", "|---|---|---|---|"]
        lines += [f"| `{r['kernel']}` | {r['kind']} | {r['ms']:.3f} | {r['calls']} |" for r in p["top"]]
    return "\n".join(lines)


def attention_facts(unet) -> dict:
    """What decides the attention kernels: the config's upcast, the processors, SDPA backends enabled."""
    facts = {"upcast_attention": bool(getattr(unet.config, "upcast_attention", False)),
             "processors": sorted({type(p).__name__ for p in getattr(unet, "attn_processors", {}).values()})}
    if torch.cuda.is_available():
        matmul = torch.backends.cuda.matmul
        facts.update(flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                     mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled(),
                     cudnn_sdp=getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)(),
                     math_sdp=torch.backends.cuda.math_sdp_enabled(),
                     cudnn_benchmark=torch.backends.cudnn.benchmark,
                     fp16_reduced_precision_reduction=matmul.allow_fp16_reduced_precision_reduction,
                     bf16_reduced_precision_reduction=matmul.allow_bf16_reduced_precision_reduction)
    return facts

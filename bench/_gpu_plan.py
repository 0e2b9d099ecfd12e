"""bench/gpu_suite.py's arguments, its plan (`--dry-run`) and `Bench`, what every section shares."""

from __future__ import annotations

import argparse
import os

import _models
import torch
from bench_pipeline import lr_image

from seesr_cli.core.geometry import latent_tiles, plan_geometry
from seesr_cli.errors import UsageError
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.pipeline.placement import MemoryBudget, check_max_vram
from seesr_cli.pipeline.plan import plan_run
from seesr_cli.settings import DEVICE_BATCH, UpscaleSettings

CAST = ("unet", "controlnet", "vae", "text_encoder")  # DAPE stays float32, as the loader keeps it
NETWORKS = ("dape", "text_encoder", "vae", "controlnet", "unet")


class Bench:
    """The models (built once), the arguments and what sections hand to later ones."""

    def __init__(self, args, device: torch.device, parts: dict):
        self.args, self.device, self.parts = args, device, parts
        self.dtype_name = args.dtypes[0]
        self.default_batch = DEVICE_BATCH[device.type]
        self.eager: dict = {}  # (dtype, tile batch) -> (seconds, result) of the 512 image
        self.fastest = args.dtypes[0]
        self.compiled: dict = {}  # tile batch -> seconds per image
        self.compile_seconds = 5 if args.tiny else 60  # the least a new shape's compile takes (H100: 60-96 s)
        # The weights as built, in CPU RAM (outside any VRAM peak): every cast starts from them, so fp16
        # after a bf16 section is the same fp16 as before it (a round trip through bf16 would round it).
        self.master = {key: {name: t.detach().to("cpu", copy=True) for name, t in parts[key].state_dict().items()}
                       for key in CAST}

    def cast(self, name: str) -> None:
        dtype = _models.DTYPES[name]
        for key in CAST:
            module = self.parts[key].to(dtype)
            module.load_state_dict(self.master[key])  # copies into the cast tensors, in their dtype
        self.dtype_name = name

    def pipe(self, *, turbo: bool = False, budget: MemoryBudget | None = None) -> SeeSRPipeline:
        return SeeSRPipeline(**self.parts, device=self.device, dtype=_models.DTYPES[self.dtype_name], turbo=turbo,
                             budget=budget)

    def compiled_pipe(self, turbo: bool = False) -> SeeSRPipeline:
        return self.pipe(turbo=turbo).compile(mode=self.args.compile_mode, backend=self.args.compile_backend)

    def image(self, size: int, seed: int = 0):
        lr = max(8, size // 4)
        return lr_image(lr, lr, seed=seed)

    def tile_batches(self) -> tuple[int, ...]:
        """The default tile batch, and 1 when `--size` makes several latent tiles (else the same forward)."""
        settings = self.settings().resolved(False, self.device.type)
        plan, lr = plan_run(settings, self.device.type), max(8, self.args.size // 4)
        tiles = latent_tiles(plan_geometry(lr, lr, settings), plan.tile, plan.overlap)
        return tuple(dict.fromkeys((self.default_batch, 1))) if len(tiles) > 1 else (self.default_batch,)

    def settings(self, **changes) -> UpscaleSettings:
        return UpscaleSettings(**{"steps": self.args.steps, "seed": self.args.seed, **changes})


def parse_args(argv: list[str] | None, sections: dict, description: str) -> argparse.Namespace:
    """The arguments; `sections`: name -> (function, cap s, minimum s). Bad ones exit 2 (argparse)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=os.environ.get("OUT", "bench/out/gpu_suite"))
    p.add_argument("--budget", type=float, default=540, help="total seconds (sections stop or are skipped)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models and sizes: a smoke test")
    p.add_argument("--sections", default=",".join(sections))
    p.add_argument("--dtypes", default="fp16,bf16", help="the first also runs lowvram and large")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--runs", type=int, default=2, help="timed runs after the warm-up")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--group", type=int, default=0, help="images per upscale_many call (default: the tile batch)")
    p.add_argument("--large", default="2048:50,4096:10", help="SIZE:STEPS,... (time scaled to 50 steps)")
    p.add_argument("--max-vram", type=float, default=8.0)
    p.add_argument("--lowvram", default="2048:10", help="SIZE:STEPS")
    p.add_argument("--compile-mode", default=None, help="default reduce-overhead (CUDA graphs); CPU: none")
    p.add_argument("--compile-backend", default=None, help="default inductor; CPU: eager (dynamo only, quick)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reference", default=None, help="reference fixtures folder (small files only)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (sections, caps, sizes, the --max-vram "
                   "tiles) and exit: no models, no device needed")
    args = p.parse_args(argv)
    if args.tiny:  # sizes a CPU runs in seconds per image
        defaults = {"size": 128, "steps": 2, "batch": 4, "large": "256:2,512:1", "lowvram": "256:2", "runs": 1}
        for key, value in defaults.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    cpu = args.device.startswith("cpu")
    args.compile_mode = args.compile_mode or (None if cpu else "reduce-overhead")
    args.compile_backend = args.compile_backend or ("eager" if cpu else "inductor")
    args.dtypes = args.dtypes.split(",")
    args.large = [tuple(int(x) for x in item.split(":")) for item in args.large.split(",") if item]
    args.lowvram_size, args.lowvram_steps = (int(x) for x in args.lowvram.split(":"))
    if cpu and "fp16" in args.dtypes:
        args.dtypes = ["bf16" if d == "fp16" else d for d in args.dtypes]  # fp16 on a CPU: ~100x slower
        args.dtypes = list(dict.fromkeys(["fp32", *args.dtypes]))[:2]
    unknown = set(args.dtypes) - set(_models.DTYPES)
    if unknown:
        p.error(f"unknown dtypes: {', '.join(sorted(unknown))} (use {', '.join(_models.DTYPES)})")
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(sections)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if "lowvram" in args.sections and not cpu:
        try:  # the official networks' sizes: a budget too small is refused before any model is built
            check_max_vram(args.max_vram, _models.DTYPES[args.dtypes[0]])
        except UsageError as exc:
            p.error(str(exc))
    return args


def dry_run(args: argparse.Namespace, sections: dict) -> int:
    """The plan, from the arguments alone: what a GPU run would do, in what time."""
    caps = {name: sections[name][1] for name in args.sections}
    print(f"device {args.device} (CUDA available here: {torch.cuda.is_available()}), dtypes {args.dtypes}, "
          f"budget {args.budget:.0f} s, out {args.out}")
    print(f"  {args.size}px {args.steps} steps x {args.runs} runs; batch of {args.batch}; large "
          + ", ".join(f"{size}px at {steps} steps" for size, steps in args.large)
          + f"; lowvram {args.lowvram_size}px at {args.lowvram_steps} steps under --max-vram {args.max_vram:g}")
    if args.device.startswith("cpu"):
        print("  lowvram on the CPU: the mechanics only (an offloading budget over the models built), no memory cap")
    else:
        budget = check_max_vram(args.max_vram, _models.DTYPES[args.dtypes[0]])  # parse_args refused a bad one
        fitted, notes = budget.fit(UpscaleSettings().resolved(False, "cuda"), "cuda")
        print(f"  --max-vram {args.max_vram:g} ({args.dtypes[0]}, full size): offload {budget.offload}, tile batch "
              f"{fitted.tile_batch}, VAE encoder tile {fitted.vae_encoder_tile}, decoder tile "
              f"{fitted.vae_decoder_tile}")
        for note in notes:
            print(f"    note: {note}")
    for name, cap in caps.items():
        print(f"  [{name}] cap {cap} s, starts with >= {sections[name][2]} s left")
    print(f"  caps sum to {sum(caps.values())} s of {args.budget:.0f} s (the watchdog ends the run at budget + 5 s)")
    return 0

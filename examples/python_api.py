"""The Python API: what `seesr upscale` and `seesr tag` do, step by step, in a script.

    python examples/python_api.py INPUT OUTPUT [--steps N] [--scale S] [--device cpu]

Library code never prints; progress arrives through callbacks that you render as you like.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import seesr_cli  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seesr_cli.errors import SeesrError
from seesr_cli.io import load_image, save_image
from seesr_cli.pipeline import ProgressEvent, SeeSRPipeline
from seesr_cli.settings import LoadOptions, UpscaleSettings
from seesr_cli.weights import resolve_weights


def show(event: ProgressEvent) -> None:
    """Called by the pipeline at each stage, tile and step; here: one line, rewritten in place."""
    if event.stage == "denoise":
        print(f"\r  denoise: step {event.done}/{event.total}, tile {event.tile}/{event.tiles}  ", end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, default=None, help="default: the sampler's (DDPM 50)")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    # 1. Settings: what an image gets (frozen, validated: a bad value raises UsageError naming it),
    #    apart from how the pipeline is loaded (device, dtype, turbo, compile).
    settings = UpscaleSettings(scale=args.scale, steps=args.steps, seed=42)
    load = LoadOptions(device=args.device)

    # 2. Weights: the Hugging Face cache (downloaded once), or SEESR_WEIGHTS / weights_dir=...
    paths = resolve_weights(weights_dir=None)

    # 3. The pipeline loads once and serves any number of images.
    pipe = SeeSRPipeline.from_pretrained(paths, load)
    print(f"device {pipe.device}, dtype {pipe.dtype}")

    # 4. One image: load (alpha, grayscale, bit depth, ICC and EXIF are kept aside), upscale the
    #    RGB view, then save with everything put back, atomically, with reproducible metadata.
    loaded = load_image(args.input)
    result = pipe.upscale(loaded.rgb, settings, on_progress=show)
    print()
    print("prompts:", *result.prompts, sep="\n  ")
    metadata = {"seesr:seed": str(result.seed), "seesr:prompts": " | ".join(result.prompts)}
    save_image(result.image, loaded, args.output, metadata=metadata, overwrite=True)
    print(f"wrote {args.output} ({result.image.width}x{result.image.height})")

    # 5. The shortest form: a PIL image in, a PIL image out.
    small = pipe(loaded.rgb.resize((64, 48)), settings.with_(steps=args.steps or 20, sampler="unipc"))
    print(f"pipe(image) -> {small.size}")

    # 6. Tags alone, as `seesr tag` prints them.
    tags = pipe.dape.hard_prompts(pipe.dape.probabilities(pipe.dape.preprocess([loaded.rgb]).to(pipe.device)))
    print("DAPE tags:", tags[0])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SeesrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)

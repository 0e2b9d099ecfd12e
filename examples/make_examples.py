"""Synthesise a small set of low-resolution test images (nothing is downloaded).

    python examples/make_examples.py examples/lr

Each image exercises one input path of `seesr upscale` / `seesr tag`: RGB, RGBA, grayscale,
gray+alpha, palette with transparency, CMYK, 16-bit gray and colour (PNG and TIFF), an EXIF-rotated
JPEG, and JPEG-compressed text. Content is procedural and seeded, so every run gives the same files.
Scenes are drawn at 4x and downsampled, which gives them the soft, aliased look of real LR photos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

try:
    from seesr_cli.io import LoadedImage, save_image
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from seesr_cli.io import LoadedImage, save_image

RNG_SEED = 2024


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x / max(w - 1, 1), y / max(h - 1, 1)


def _downsample(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Blur a little, then shrink: a crude real-world degradation."""
    return image.filter(ImageFilter.GaussianBlur(1.2)).resize(size, Image.Resampling.BICUBIC)


def scene_shapes(w: int, h: int) -> Image.Image:
    """Sky gradient, a checkerboard floor and a few discs, drawn at 4x."""
    big_w, big_h = 4 * w, 4 * h
    x, y = _grid(big_w, big_h)
    sky = np.stack([80 + 100 * y, 140 + 80 * y, 230 - 40 * y], -1)
    checker = ((np.floor(x * 16) + np.floor(y * 12)) % 2)[..., None] * np.array([120, 90, 60]) + 60
    pixels = np.where((y > 0.6)[..., None], checker, sky).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for cx, cy, r, colour in [(0.25, 0.35, 0.12, (220, 60, 40)), (0.6, 0.3, 0.08, (250, 210, 40)),
                              (0.8, 0.5, 0.1, (40, 160, 80))]:
        draw.ellipse([(cx - r) * big_w, (cy - r) * big_w, (cx + r) * big_w, (cy + r) * big_w], fill=colour)
    return _downsample(image, (w, h))


def scene_text(w: int, h: int, text: str = "SeeSR\n2024") -> Image.Image:
    """Dark text on a noisy paper texture: the hardest case for hallucinating SR."""
    rng = np.random.default_rng(RNG_SEED)
    paper = 225 + rng.normal(0, 12, (4 * h, 4 * w, 1)) * np.array([1.0, 0.95, 0.85])
    image = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    font = ImageFont.load_default(size=int(0.75 * 4 * h / (text.count("\n") + 1)))
    ImageDraw.Draw(image).multiline_text((0.08 * 4 * w, 0.05 * 4 * h), text, fill=(30, 30, 60), font=font,
                                         spacing=4)
    return _downsample(image, (w, h))


def zone_plate(w: int, h: int) -> np.ndarray:
    """Concentric rings whose frequency rises outwards, in [0, 1]: shows aliasing and ringing."""
    x, y = _grid(w, h)
    r2 = (x - 0.5) ** 2 * (w / h) ** 2 + (y - 0.5) ** 2
    return (0.5 + 0.5 * np.cos(np.pi * 24 * r2)).astype(np.float32)


def soft_disc_alpha(w: int, h: int) -> np.ndarray:
    """1 inside a disc, a smooth fall-off, 0 in the corners."""
    x, y = _grid(w, h)
    r = np.hypot(x - 0.5, y - 0.5)
    return np.clip((0.45 - r) / 0.1, 0, 1).astype(np.float32)


def _save16(rgb_float: np.ndarray, path: Path, *, grayscale: bool = False) -> None:
    """Write 16-bit colour through seesr's own writer (Pillow cannot write 16-bit RGB)."""
    rgb8 = Image.fromarray(np.round(rgb_float * 255).astype(np.uint8))
    source = LoadedImage(path=path, rgb=rgb8, alpha=None, grayscale=grayscale, bit_depth=16, icc_profile=None,
                         exif=None, source_format="PNG", rgb_float=rgb_float)
    save_image(rgb_float, source, path, metadata={"example": path.stem}, overwrite=True)


def make_examples(out: Path) -> list[Path]:
    """Write every example into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def keep(name: str) -> Path:
        written.append(out / name)
        return out / name

    scene_shapes(160, 120).save(keep("shapes_rgb_160x120.png"))
    scene_text(128, 96).save(keep("text_rgb_128x96.jpg"), quality=60)  # visible JPEG blocking

    rgba = scene_shapes(96, 96).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.round(soft_disc_alpha(96, 96) * 255).astype(np.uint8)))
    rgba.save(keep("disc_rgba_96x96.png"))

    Image.fromarray(np.round(zone_plate(80, 60) * 255).astype(np.uint8)).save(keep("rings_gray_80x60.png"))

    glyph = scene_text(40, 30, "A").convert("L")
    ink = np.clip((225.0 - np.asarray(glyph)) * 2.0, 0, 255).astype(np.uint8)
    glyph_alpha = Image.fromarray(ink)  # ink opaque, paper transparent
    Image.merge("LA", (glyph, glyph_alpha)).save(keep("glyph_la_40x30.png"))

    x, y = _grid(64, 48)
    ramp = np.round((0.1 + 0.8 * x * (0.7 + 0.3 * y)) * 65535).astype(np.uint16)  # banding test at 8 bits
    Image.fromarray(ramp).save(keep("ramp_gray16_64x48.png"))

    x, y = _grid(120, 90)
    sky = np.stack([0.25 + 0.35 * y, 0.45 + 0.3 * y, 0.9 - 0.15 * y + 0.02 * x], -1).astype(np.float32)
    _save16(sky, keep("sky_rgb16_120x90.png"))
    _save16(np.asarray(scene_shapes(100, 75), dtype=np.float32) / 255.0, keep("shapes_rgb16_100x75.tif"))

    # Stored sideways: a viewer (and seesr) rotates it upright by EXIF Orientation 6.
    upright = scene_text(60, 80, "UP\n^")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(keep("upright_exif6_60x80.jpg"), exif=exif.tobytes(),
                                                      quality=90)

    quantised = scene_shapes(48, 48).quantize(colors=15, method=Image.Quantize.MEDIANCUT)
    indices = np.asarray(quantised).copy()
    indices[soft_disc_alpha(48, 48) < 0.5] = 15  # index 15 = transparent
    sprite = Image.frombytes("P", quantised.size, indices.tobytes())
    sprite.putpalette(quantised.getpalette()[:45] + [255, 0, 255])
    sprite.save(keep("sprite_palette_48x48.gif"), transparency=15)

    scene_shapes(64, 48).convert("CMYK").save(keep("print_cmyk_64x48.jpg"), quality=90)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the examples into (created if missing)")
    args = parser.parse_args(argv)
    for path in make_examples(args.out_dir):
        with Image.open(path) as image:
            print(f"{path}  {image.format} {image.mode} {image.width}x{image.height}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`--compile` (pipeline/compiled.py) with Inductor on the CPU, tiny models: one graph per denoise
input shape (tile shape x batch), compiled on its first tile and never again for later images of
any size; the compile shows in progress. With Inductor it is slow (`-m slow`): it compiles the tiny
ControlNet+UNet a few times."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.settings import UpscaleSettings

# Latent tiles of 16: inputs 24x16 (latent 12x8: one tile of its own shape), 40x24 (tiles 12 high),
# and two sizes of 16x16 tiles only. Three shapes in all, at batch 1 (the CPU's).
FAST = {"steps": 2, "process_size": 64, "tile_size": 16, "tile_overlap": 4, "vae_encoder_tile": 128,
        "vae_decoder_tile": 16}
SIZES = [(64, 40), (24, 16), (40, 24), (96, 64)]


def noisy(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


# Dynamo alone (backend "eager": traced graphs, no code generation) counts graphs as Inductor does,
# in a fraction of the time: the default run has two image sizes that share one tile shape (one
# trace, ~25 s here); Inductor on all four sizes and three shapes takes minutes, so it runs with
# `-m slow`.
@pytest.mark.parametrize(("backend", "sizes", "expected"), [
    ("eager", [SIZES[0], SIZES[3]], {(16, 16)}),
    pytest.param("inductor", SIZES, {(8, 12), (12, 16), (16, 16)}, marks=pytest.mark.slow),
])
def test_mixed_sizes_compile_once_per_shape(tiny_weight_paths, backend, sizes, expected):
    import torch._dynamo

    torch._dynamo.reset()
    pipe = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu").compile(mode=None, backend=backend)
    images = [noisy(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    settings = [UpscaleSettings(**FAST, seed=i) for i in range(len(sizes))]
    events = []
    before = graphs()
    grouped = pipe.upscale_many(images, settings, on_progress=events.append)
    shapes = set(pipe._forward.shapes)
    assert {shape[-2:] for shape in shapes} == expected
    assert graphs() - before == len(shapes)  # one graph per shape, nothing else
    compiling = [e for e in events if e.stage == "compile" and e.done == 0]
    assert len(compiling) == len(shapes) and all("compiling for" in e.detail for e in compiling)

    # Every image again, alone and in another order: no graph, no compile event, the same bytes.
    events.clear()
    first = graphs()
    for i in reversed(range(len(images))):
        alone = pipe.upscale(images[i], settings[i], on_progress=events.append)
        assert np.asarray(alone.image).tobytes() == np.asarray(grouped[i].image).tobytes()
    assert graphs() == first and not [e for e in events if e.stage == "compile"]
    assert set(pipe._forward.shapes) == shapes

    # The compiled function is the same network: the eager stock modules (what `compile` runs on
    # the CPU) give the same pixels with Dynamo alone; Inductor's fusions round differently.
    eager = SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu", cpu_kernels="stock")
    plain = eager.upscale(images[0], settings[0])
    assert plain.run["kernels"] == grouped[0].run["kernels"] == "stock"
    assert (plain.run["compiled"], grouped[0].run["compiled"]) == ("no", backend)  # mode None: the backend alone
    difference = np.abs(np.asarray(plain.image, np.int16) - np.asarray(grouped[0].image, np.int16)).max()
    assert difference == 0 if backend == "eager" else difference <= 1

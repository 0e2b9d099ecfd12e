"""Where the networks live (pipeline/placement.py): offloading moves each stage's networks to the device
for that stage alone, in stage order, and changes no pixel; a memory budget caps the tile batch and the
VAE tiles from estimates, refuses a budget that cannot work, and leaves a card that holds everything alone.

On the CPU the "device" is the CPU itself, but a stage still runs on fresh copies of its weights (a real
copy, as to a GPU): every layer that runs is checked to hold copied weights, never the ones at rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seesr_cli.errors import UsageError
from seesr_cli.pipeline import SeeSRPipeline
from seesr_cli.pipeline.placement import (
    GIB,
    OFFICIAL_PARAMETERS,
    STAGE_NETWORKS,
    MemoryBudget,
    Placement,
    check_max_vram,
    memory_budget,
    plan_budget,
)
from seesr_cli.settings import UpscaleSettings

# 64 x 40 -> x4 -> latent 32 x 20: six latent tiles, six VAE encoder tiles, six decoder tiles.
FAST = {"steps": 2, "process_size": 64, "tile_size": 16, "tile_overlap": 4, "vae_encoder_tile": 128,
        "vae_decoder_tile": 16, "seed": 3}
ORDER = ["dape", "text", "vae_encode", "denoise", "vae_decode"]
NETWORKS = ("dape", "text_encoder", "vae", "controlnet", "unet")


@pytest.fixture(scope="module")
def pipe(tiny_weight_paths):
    return SeeSRPipeline.from_pretrained(tiny_weight_paths, device="cpu")


def noisy(width: int = 64, height: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def offloading(pipe: SeeSRPipeline, budget: MemoryBudget, on_move=None) -> SeeSRPipeline:
    """A second pipeline over the same modules, offloading (on the CPU: copies at every stage)."""
    parts = {name: getattr(pipe, name) for name in (*NETWORKS, "tokenizer")}
    offloaded = SeeSRPipeline(**parts, scheduler_config=pipe.scheduler_config, device=pipe.device, dtype=pipe.dtype,
                              turbo=pipe.turbo, weights=pipe.weights, budget=budget)
    if on_move is not None:
        offloaded.placement.on_move = on_move
    return offloaded


def unlimited(offload: bool) -> MemoryBudget:
    """A budget nothing exceeds: it changes no setting, only (with `offload`) where weights live."""
    return MemoryBudget(1 << 50, "test budget", offload, {}, 4)


def at_rest(pipe: SeeSRPipeline) -> dict[int, int]:
    """Each parameter's storage as the networks sit between stages."""
    return {id(p): p.data_ptr() for name in NETWORKS for p in getattr(pipe, name).parameters()}


def check_layers_run_on_copies(pipe: SeeSRPipeline, rest: dict[int, int]) -> tuple[list, list]:
    """Forward pre-hooks on every layer of every network: record (and count) layers whose own
    parameters are the ones at rest when they run (an offloaded network used without its stage)."""
    wrong, handles = [], []
    for name in NETWORKS:
        for module in getattr(pipe, name).modules():
            def hook(module, _args, _name=name):
                if any(p.data_ptr() == rest[id(p)] for p in module.parameters(recurse=False)):
                    wrong.append((_name, type(module).__name__))
            handles.append(module.register_forward_pre_hook(hook))
    return wrong, handles


def test_offloading_moves_each_stage_s_networks_in_order_and_changes_no_pixel(pipe):
    resident = pipe.upscale(noisy(), UpscaleSettings(**FAST))
    moves = []
    offloaded = offloading(pipe, unlimited(True), on_move=lambda action, stage, _s: moves.append((action, stage)))
    rest = at_rest(offloaded)
    wrong, handles = check_layers_run_on_copies(offloaded, rest)
    try:
        result = offloaded.upscale(noisy(), UpscaleSettings(**FAST))
    finally:
        for handle in handles:
            handle.remove()
    assert wrong == []  # every layer ran on weights its stage had copied
    assert moves == [(action, stage) for stage in ORDER for action in ("load", "unload")]
    assert at_rest(offloaded) == rest  # back at rest: each stage pointed its networks home again
    assert np.asarray(result.image).tobytes() == np.asarray(resident.image).tobytes()
    assert np.array_equal(result.array, resident.array)
    assert result.settings == resident.settings and result.tiles == resident.tiles
    assert {**result.run, "notes": []} == {**resident.run, "notes": []}
    assert result.notes == ["test budget: networks kept in CPU RAM, each copied to the GPU for its stage"]


def test_resident_moves_nothing(pipe):
    """The default: no budget, no copies; the layers run on the weights at rest."""
    assert pipe.budget is None and not pipe.placement.offload
    rest = at_rest(pipe)
    with pipe.placement.stage("denoise"):
        assert at_rest(pipe) == rest
    result = pipe.upscale(noisy(), UpscaleSettings(**FAST))
    assert at_rest(pipe) == rest and result.notes == []


def test_a_network_cast_while_at_home_is_copied_in_its_new_dtype():
    """The fp32 redo casts offloaded networks in CPU RAM: the next stage copies what is there now."""
    torch.manual_seed(0)
    unet, controlnet = nn.Linear(4, 4), nn.Linear(4, 4)
    placement = Placement({"unet": unet, "controlnet": controlnet}, torch.device("cpu"), offload=True)
    unet.to(torch.float64)
    cast = unet.weight.data_ptr()
    with placement.stage("denoise"):
        assert unet.weight.dtype == torch.float64 and unet.weight.data_ptr() != cast
        out = unet(torch.ones(1, 4, dtype=torch.float64))
    assert unet.weight.data_ptr() == cast
    assert torch.equal(out, unet(torch.ones(1, 4, dtype=torch.float64)))
    with placement.stage("colorfix"):  # a stage without networks moves nothing
        assert unet.weight.data_ptr() == cast


# ----------------------------------------------------------------------------- budgets


def official(dtype: torch.dtype = torch.float16) -> dict[str, int]:
    size = torch.tensor([], dtype=dtype).element_size()
    return {name: count * (4 if name == "dape" else size) for name, count in OFFICIAL_PARAMETERS.items()}


DEFAULT = UpscaleSettings().resolved(False, "cuda")


def test_a_big_budget_keeps_everything_resident_and_changes_nothing():
    budget = check_max_vram(80, torch.float16)
    assert not budget.offload
    assert budget.fit(DEFAULT, "cuda") == (DEFAULT, [])


def test_8_gib_offloads_and_caps_the_tile_batch_and_decoder_tile():
    budget = check_max_vram(8, torch.float16)
    assert budget.offload and budget.limit == 8 * GIB
    fitted, notes = budget.fit(DEFAULT, "cuda")
    assert fitted.tile_batch < DEFAULT.tile_batch and fitted.vae_decoder_tile < DEFAULT.vae_decoder_tile
    assert (fitted.tile_size, fitted.tile_overlap, fitted.steps) == (DEFAULT.tile_size, DEFAULT.tile_overlap, 50)
    assert budget.need(fitted, "cuda") <= budget.usable < budget.need(DEFAULT, "cuda")
    assert notes[0].startswith("--max-vram 8: networks kept in CPU RAM")
    assert f"tile batch 8 -> {fitted.tile_batch}" in notes[1] and "VAE decoder tile 224 ->" in notes[1]
    # A cap, not a default: what already fits stays; no guidance (turbo) fits more tiles per forward.
    small = DEFAULT.with_(tile_batch=1, vae_decoder_tile=64)
    assert budget.fit(small, "cuda") == (small, notes[:1])
    turbo = UpscaleSettings().resolved(True, "cuda")
    assert budget.fit(turbo, "cuda")[0].tile_batch >= fitted.tile_batch


def test_each_cap_is_the_largest_that_fits():
    budget = check_max_vram(8, torch.float16)
    fitted, _ = budget.fit(DEFAULT, "cuda")
    assert budget.stage_need("denoise", fitted.with_(tile_batch=fitted.tile_batch * 2), "cuda") > budget.usable
    assert budget.stage_need("vae_decode", fitted.with_(vae_decoder_tile=fitted.vae_decoder_tile + 32),
                             "cuda") > budget.usable


def test_a_budget_too_small_for_the_networks_is_refused_naming_the_value():
    with pytest.raises(UsageError, match=r"--max-vram 3: too small; SeeSR needs about .* ControlNet\+UNet"):
        check_max_vram(3, torch.float16)
    # fp32 weights are twice as large: 8 GiB holds them only offloaded, if at all.
    assert check_max_vram(16, torch.float32).offload


def test_the_card_s_size_offloads_only_when_it_cannot_hold_everything():
    weights = official()
    assert not plan_budget(140 * GIB, "card", weights, 2, "cuda", strict=False).offload
    small = plan_budget(2 * GIB, "card", weights, 2, "cuda", strict=False)  # no refusal: fallbacks do the rest
    assert small.offload
    assert small.fit(DEFAULT, "cuda")[0].tile_batch == 1


def test_every_stage_is_planned():
    assert list(STAGE_NETWORKS) == ORDER
    budget = check_max_vram(8, torch.float16)
    assert all(budget.stage_need(stage, DEFAULT, "cuda") > 0 for stage in ORDER)


def test_max_vram_is_for_cuda_and_the_default_elsewhere_is_unconstrained():
    networks = {"unet": nn.Linear(2, 2)}
    with pytest.raises(UsageError, match="--max-vram applies to CUDA GPUs; the device here is cpu"):
        memory_budget(8, torch.device("cpu"), networks, torch.float32)
    assert memory_budget(None, torch.device("cpu"), networks, torch.float32) is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "8"])
def test_max_vram_must_be_a_positive_number_of_gib(bad):
    from seesr_cli.settings import LoadOptions

    with pytest.raises(UsageError, match=r"max_vram \(--max-vram\) must be a number of GiB > 0"):
        LoadOptions(max_vram=bad)
    assert LoadOptions(max_vram=7.5).max_vram == 7.5


def official_networks(dtype: torch.dtype = torch.float16) -> dict[str, nn.Module]:
    """Stand-ins with the official networks' sizes, on the meta device (no memory): DAPE in fp32."""
    networks = {}
    for name, count in OFFICIAL_PARAMETERS.items():
        module = nn.Module()
        module.weight = nn.Parameter(torch.empty(count, device="meta", dtype=torch.float32 if name == "dape" else dtype))
        networks[name] = module
    return networks


class FakeCard:
    """torch.cuda as a budget sees it: only the card's total memory; what is free must never be asked."""

    def __init__(self, monkeypatch, total_gib: float):
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda _device: type("Props", (), {"total_memory": int(total_gib * GIB)})())

        def free(*_args):
            raise AssertionError("a budget must not depend on the memory free at the moment")

        monkeypatch.setattr(torch.cuda, "mem_get_info", free)
        monkeypatch.setattr(torch.cuda, "memory_allocated", free)


def test_the_budget_is_a_function_of_the_value_or_the_card_never_of_free_memory(monkeypatch):
    cuda, networks = torch.device("cuda", 0), official_networks()
    FakeCard(monkeypatch, 8)
    given = memory_budget(8, cuda, networks, torch.float16)
    assert given == check_max_vram(8, torch.float16)  # the loaded sizes are the official ones
    assert given.fit(DEFAULT, "cuda") == given.fit(DEFAULT, "cuda") == check_max_vram(8, torch.float16).fit(
        DEFAULT, "cuda")
    card = memory_budget(None, cuda, networks, torch.float16)  # an 8 GiB card: its size less 1 GiB
    assert card.offload and card.limit == 7 * GIB and card.source.startswith("the card's 8.0 GiB")
    fitted, notes = card.fit(DEFAULT, "cuda")
    assert fitted.tile_batch < DEFAULT.tile_batch and "--max-vram sets a budget" in notes[0]
    FakeCard(monkeypatch, 141)
    assert memory_budget(None, cuda, networks, torch.float16) is None  # a card that holds everything: unchanged
    assert memory_budget(8, cuda, networks, torch.float16) == given  # the value, whatever the card


def test_capped_tiles_are_what_the_result_records_and_its_notes_say(pipe):
    """A budget that holds 2 tiles per denoise forward but not 4: the image is made, recorded and noted
    with tile batch 2 (metadata as written next to the image), and equals a run asked for tile batch 2."""
    from seesr_cli.batch.job import image_metadata
    from seesr_cli.batch.plan import Job

    settings = UpscaleSettings(**FAST, tile_batch=4)
    probe = MemoryBudget(1 << 50, "probe", True, {}, 4)
    need = probe.stage_need("denoise", settings.resolved(False, "cpu").with_(tile_batch=2), "cpu")
    budget = MemoryBudget(need + GIB // 2, "--max-vram 0.8", True, {}, 4)  # _reserve: half a GiB below 5 GiB
    assert budget.usable == need
    result = offloading(pipe, budget).upscale(noisy(), settings)
    assert result.settings.tile_batch == 2 and result.run["tile_batch"] == 2
    assert "--max-vram 0.8: tile batch 4 -> 2 (to fit the budget)" in result.notes
    job = Job(input=Path("in.png"), rel="in.png", output=Path("out.png"), fmt="png", seed=3, action="run")
    metadata = image_metadata(job, result, base_seed=3)
    assert '"tile_batch": 2' in metadata["seesr:settings"] and "tile batch 4 -> 2" in metadata["seesr:run"]
    asked = pipe.upscale(noisy(), UpscaleSettings(**FAST, tile_batch=2))
    assert np.asarray(asked.image).tobytes() == np.asarray(result.image).tobytes()


@pytest.mark.parametrize("gib, offload, tile_batch, decoder_tile", [
    (4.5, True, 1, 128), (6, True, 2, 160), (8, True, 4, 192), (12, True, 8, 224), (16, False, 8, 224)])
def test_the_budgets_table_of_docs_cli_md(gib, offload, tile_batch, decoder_tile):
    for dtype in (torch.float16, torch.bfloat16):
        budget = check_max_vram(gib, dtype)
        fitted, _ = budget.fit(DEFAULT, "cuda")
        assert (budget.offload, fitted.tile_batch, fitted.vae_decoder_tile) == (offload, tile_batch, decoder_tile)
        assert fitted.vae_encoder_tile == DEFAULT.vae_encoder_tile

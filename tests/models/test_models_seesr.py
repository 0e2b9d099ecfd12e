"""SeeSR UNet and ControlNet: official checkpoints load unchanged and reproduce the official numbers."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors.torch import load_file

from seesr_cli.errors import WeightsError
from seesr_cli.models import SeeSRControlNet, SeeSRUNet

CASES = ("t999", "t500")
FULL_COUNTS = {"unet": 1_126_760_324, "controlnet": 489_031_440}


def assert_close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-5) -> float:
    """The fixture README's tolerance: few-ulp kernel differences, scaled by the output size."""
    assert got.shape == want.shape
    diff = (got.float() - want.float()).abs().max().item()
    assert diff <= rel * max(1.0, want.abs().max().item()), diff
    return diff


def run_controlnet(model, io, case, **kw):
    return model(io["sample"], io[f"{case}.timestep"], io["encoder_hidden_states"],
                 controlnet_cond=io["controlnet_cond"], conditioning_scale=float(io[f"{case}.conditioning_scale"]),
                 image_encoder_hidden_states=io["image_encoder_hidden_states"], **kw)


def run_unet(model, io, case, control: bool, **kw):
    residuals = {}
    if control:
        residuals = {"down_block_additional_residuals": [io[f"{case}.down_res_{i:02d}"] for i in range(12)],
                     "mid_block_additional_residual": io[f"{case}.mid_res"]}
    return model(io["sample"], io[f"{case}.timestep"], io["encoder_hidden_states"],
                 image_encoder_hidden_states=io["image_encoder_hidden_states"], **residuals, **kw)


@pytest.fixture(scope="module")
def tiny(reference_dir):
    root = reference_dir / "seesr_tiny"
    unet, unet_info = SeeSRUNet.from_pretrained(root / "unet", output_loading_info=True)
    controlnet, cn_info = SeeSRControlNet.from_pretrained(root / "controlnet", output_loading_info=True)
    return {"unet": unet.eval(), "controlnet": controlnet.eval(), "infos": (unet_info, cn_info),
            "io": load_file(root / "io.safetensors"), "root": root}


def test_official_folders_load_with_no_missing_or_unexpected_keys(tiny):
    for info in tiny["infos"]:
        assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    for model in (tiny["unet"], tiny["controlnet"]):
        assert model.config.use_image_cross_attention is True
        assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_every_attention_runs_through_sdpa(tiny):
    for model, blocks in ((tiny["unet"], 16), (tiny["controlnet"], 7)):
        processors = model.attn_processors
        assert all(isinstance(p, AttnProcessor2_0) for p in processors.values())
        assert sum(".image_attentions." in name and "attn2" in name for name in processors) == blocks


@pytest.mark.parametrize("case", CASES)
def test_controlnet_residuals_match_the_official_code(tiny, case):
    io = tiny["io"]
    with torch.no_grad():
        down, mid = run_controlnet(tiny["controlnet"], io, case, return_dict=False)
    assert len(down) == 12
    for i, residual in enumerate(down):
        assert_close(residual, io[f"{case}.down_res_{i:02d}"])
    assert_close(mid, io[f"{case}.mid_res"])


@pytest.mark.parametrize("case", CASES)
def test_unet_matches_the_official_code_with_and_without_control(tiny, case):
    io = tiny["io"]
    with torch.no_grad():
        out = run_unet(tiny["unet"], io, case, control=True).sample
        alone = run_unet(tiny["unet"], io, case, control=False, return_dict=False)[0]
    assert_close(out, io[f"{case}.unet_out"])
    assert_close(alone, io[f"{case}.unet_out_no_control"])


def test_output_object_and_conditioning_scale(tiny):
    io = tiny["io"]
    with torch.no_grad():
        half = tiny["controlnet"](
            io["sample"][:1], 500, io["encoder_hidden_states"][:1], io["controlnet_cond"][:1],
            conditioning_scale=0.5, image_encoder_hidden_states=io["image_encoder_hidden_states"][:1],
        )
    assert len(half.down_block_res_samples) == 12
    assert_close(half.mid_block_res_sample, io["t500.mid_res"][:1] * 0.5)
    assert_close(half.down_block_res_samples[5], io["t500.down_res_05"][:1] * 0.5)


def test_timestep_forms_agree(tiny):
    io = tiny["io"]
    sample, text, cond = io["sample"][..., :8, :8], io["encoder_hidden_states"], io["controlnet_cond"][..., :64, :64]
    kw = {"image_encoder_hidden_states": io["image_encoder_hidden_states"], "return_dict": False}
    forms = (500, torch.tensor(500), torch.tensor([500]), torch.tensor([500, 500]), 500.0)
    with torch.no_grad():
        outs = [tiny["unet"](sample, t, text, **kw)[0] for t in forms]
        mids = [tiny["controlnet"](sample, t, text, cond, **kw)[1] for t in forms[:2]]
    assert all(torch.equal(out, outs[0]) for out in outs[1:]) and torch.equal(mids[0], mids[1])


def test_missing_dape_states_or_half_residuals_are_clear_errors(tiny):
    io = tiny["io"]
    with pytest.raises(ValueError, match="image_encoder_hidden_states"):
        tiny["unet"](io["sample"], 10, io["encoder_hidden_states"])
    with pytest.raises(ValueError, match="image_encoder_hidden_states"):
        tiny["controlnet"](io["sample"], 10, io["encoder_hidden_states"], io["controlnet_cond"])
    with pytest.raises(ValueError, match="both"):
        tiny["unet"](io["sample"], 10, io["encoder_hidden_states"], io["image_encoder_hidden_states"],
                     mid_block_additional_residual=io["t500.mid_res"])


def test_latents_that_are_not_multiples_of_eight(tiny):
    io = tiny["io"]
    sample, cond = io["sample"][:1, :, :13, :21], io["controlnet_cond"][:1, :, :104, :168]
    states = {"image_encoder_hidden_states": io["image_encoder_hidden_states"][:1]}
    with torch.no_grad():
        down, mid = tiny["controlnet"](sample, 500, io["encoder_hidden_states"][:1], cond, **states, return_dict=False)
        out = tiny["unet"](sample, 500, io["encoder_hidden_states"][:1], **states,
                           down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    assert out.shape == sample.shape and torch.isfinite(out).all()


def _crop(io: dict, batch: int = 1) -> dict:
    """A small slice of the fixture inputs (8x8 latent, 64x64 control) for the cheaper checks."""
    return {"sample": io["sample"][:batch, :, :8, :8], "encoder_hidden_states": io["encoder_hidden_states"][:batch],
            "controlnet_cond": io["controlnet_cond"][:batch, :, :64, :64],
            "image_encoder_hidden_states": io["image_encoder_hidden_states"][:batch]}


def _step(unet, controlnet, x: dict, t=500) -> torch.Tensor:
    down, mid = controlnet(x["sample"], t, x["encoder_hidden_states"], x["controlnet_cond"],
                           image_encoder_hidden_states=x["image_encoder_hidden_states"], return_dict=False)
    return unet(x["sample"], t, x["encoder_hidden_states"], x["image_encoder_hidden_states"],
                down_block_additional_residuals=down, mid_block_additional_residual=mid).sample


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_loading_runs_close_to_float32(tiny, dtype):
    x = _crop(tiny["io"])
    unet = SeeSRUNet.from_pretrained(tiny["root"] / "unet", torch_dtype=dtype).eval()
    controlnet = SeeSRControlNet.from_pretrained(tiny["root"] / "controlnet", torch_dtype=dtype).eval()
    assert unet.dtype == dtype and controlnet.dtype == dtype
    with torch.no_grad():
        want = _step(tiny["unet"], tiny["controlnet"], x)
        got = _step(unet, controlnet, {k: v.to(dtype) for k, v in x.items()})
    assert got.dtype == dtype
    assert_close(got, want, rel=0.05)


def _plain_config(reference_dir, name):
    config = json.loads((reference_dir / "seesr_tiny" / name / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "use_image_cross_attention"}


def test_without_rca_our_forward_is_diffusers_forward(reference_dir, tiny):
    """Our block walk equals diffusers' own forward on the plain (no RCA) architecture."""
    io, case = tiny["io"], "t500"
    torch.manual_seed(0)
    base_unet = UNet2DConditionModel.from_config(_plain_config(reference_dir, "unet")).eval()
    base_cn = ControlNetModel.from_config(_plain_config(reference_dir, "controlnet")).eval()
    ours_unet = SeeSRUNet.from_config(base_unet.config).eval()
    ours_cn = SeeSRControlNet.from_config(base_cn.config).eval()
    ours_unet.load_state_dict(base_unet.state_dict())
    ours_cn.load_state_dict(base_cn.state_dict())
    x = _crop(io)
    args, control = (x["sample"], io[f"{case}.timestep"], x["encoder_hidden_states"]), x["controlnet_cond"]
    with torch.no_grad():
        want_down, want_mid = base_cn(*args, controlnet_cond=control, return_dict=False)
        got_down, got_mid = ours_cn(*args, controlnet_cond=control, return_dict=False)
        want = base_unet(*args, down_block_additional_residuals=want_down,
                         mid_block_additional_residual=want_mid).sample
        got = ours_unet(*args, down_block_additional_residuals=got_down, mid_block_additional_residual=got_mid).sample
    assert all(torch.equal(a, b) for a, b in zip(got_down, want_down, strict=True))
    assert torch.equal(got_mid, want_mid)
    assert torch.equal(got, want)


def test_save_and_reload_round_trip(tiny, tmp_path):
    tiny["unet"].save_pretrained(tmp_path / "unet")
    again, info = SeeSRUNet.from_pretrained(tmp_path / "unet", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert again.config.use_image_cross_attention is True
    original = tiny["unet"].state_dict()
    assert again.state_dict().keys() == original.keys()
    assert all(torch.equal(tensor, original[key]) for key, tensor in again.state_dict().items())


@pytest.mark.parametrize("name, cls", [("unet", SeeSRUNet), ("controlnet", SeeSRControlNet)])
def test_full_size_keys_shapes_and_counts_match_the_manifest(reference_dir, name, cls):
    manifests = reference_dir / "manifests"
    config = json.loads((manifests / f"seesr_{name}_config.json").read_text())
    want = json.loads((manifests / f"seesr_{name}_keys.json").read_text())
    with torch.device("meta"):
        model = cls.from_config(config)
    got = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}
    assert got.keys() == want.keys()
    assert all(got[key] == want[key]["shape"] for key in want)
    counts = json.loads((manifests / "param_counts.json").read_text())[name]
    total = sum(p.numel() for p in model.parameters())
    assert total == counts["total_unique_parameters"] == FULL_COUNTS[name]
    rca = sum(p.numel() for key, p in model.named_parameters() if ".image_attentions." in key)
    assert rca == counts["image_attentions_numel"]


def _save_plain_unet(folder, reference_dir, seed, **changes):
    config = {**_plain_config(reference_dir, "unet"), **changes}
    torch.manual_seed(seed)
    UNet2DConditionModel.from_config(config).save_pretrained(folder)


def test_turbo_lays_seesr_image_attentions_over_a_base_unet(reference_dir, tmp_path):
    _save_plain_unet(tmp_path / "base", reference_dir, seed=11)
    seesr = reference_dir / "seesr_tiny" / "unet"
    turbo = SeeSRUNet.from_turbo(tmp_path / "base", seesr)
    base = load_file(tmp_path / "base" / "diffusion_pytorch_model.safetensors")
    official = load_file(seesr / "diffusion_pytorch_model.safetensors")
    state = turbo.state_dict()
    assert state.keys() == official.keys()
    assert sum(".image_attentions." in key for key in state) > 0
    for key, tensor in state.items():
        assert torch.equal(tensor, official[key] if ".image_attentions." in key else base[key]), key
    assert not any(t.is_meta for t in [*turbo.parameters(), *turbo.buffers()])
    half = SeeSRUNet.from_turbo(tmp_path / "base", seesr, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("changes, message", [
    ({"block_out_channels": [16, 16, 16, 16]}, "wrong shape"),
    ({"attention_head_dim": [1, 2, 4, 4]}, "attention_head_dim"),
    ({"layers_per_block": 1}, "unexpected|missing"),
])
def test_turbo_refuses_a_base_of_another_architecture(reference_dir, tmp_path, changes, message):
    _save_plain_unet(tmp_path / "other", reference_dir, seed=1, **changes)
    with pytest.raises(WeightsError, match=f"does not fit.*({message})"):
        SeeSRUNet.from_turbo(tmp_path / "other", reference_dir / "seesr_tiny" / "unet")


def test_turbo_names_a_missing_weights_file(reference_dir, tmp_path):
    _save_plain_unet(tmp_path / "base", reference_dir, seed=1)
    with pytest.raises(WeightsError, match="fp16"):
        SeeSRUNet.from_turbo(tmp_path / "base", reference_dir / "seesr_tiny" / "unet", variant="fp16")


@pytest.mark.parametrize("changes", [{"time_cond_proj_dim": 8}, {"class_embed_type": "timestep"}])
def test_configs_our_forward_would_ignore_are_refused(reference_dir, changes):
    with pytest.raises(ValueError, match="does not support"):
        SeeSRUNet.from_config({**_plain_config(reference_dir, "unet"), **changes})

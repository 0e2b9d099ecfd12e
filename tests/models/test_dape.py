"""DAPE against the official RAMLora fixtures (dape_tiny), the full-size key manifest, and safe loading."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from seesr_cli.errors import UnsafeCheckpointError, WeightsError
from seesr_cli.models.dape import DAPE, DAPEConfig
from seesr_cli.weights.convert import convert_ram, lora_delta, merged_lora_delta, read_thresholds
from seesr_cli.weights.pickles import load_pickle_state_dict


def _close(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max |diff|, asserted within the fixtures' float32 tolerance."""
    diff = (got.float() - want.float()).abs().max().item()
    assert got.shape == want.shape
    assert diff <= 1e-5 * max(1.0, want.abs().max().item()), diff
    return diff


@pytest.fixture(scope="module")
def ref(reference_dir):
    from safetensors.torch import load_file

    tiny = reference_dir / "dape_tiny"
    return {
        "io": load_file(str(tiny / "io.safetensors")),
        "tags": json.loads((tiny / "tags.json").read_text()),
        "ram": tiny / "ram_tiny.pth",
        "lora": tiny / "dape_tiny.pth",
        "tag_file": reference_dir / "ram_data" / "ram_tag_list.txt",
        "threshold_file": reference_dir / "ram_data" / "ram_tag_list_threshold.txt",
        "manifests": reference_dir / "manifests",
    }


def _build(ref, ram=None, lora="default"):
    return DAPE.from_checkpoints(
        ram or ref["ram"], ref["lora"] if lora == "default" else lora,
        tags=ref["tag_file"], thresholds=ref["threshold_file"],
    )


@pytest.fixture(scope="module")
def dape(ref):
    return _build(ref)


@pytest.fixture(scope="module")
def outputs(dape, ref):
    with torch.no_grad():
        image = ref["io"]["image"]
        return {"swin": dape.encode(image), "analyse": dape.analyse(image), "logits": dape.logits(image)}


# ---------------------------------------------------------------- parity with the official code


def test_preprocess_matches_reference(dape, ref):
    raw = ref["io"]["image_uint8"].float() / 255
    assert torch.equal(dape.preprocess(raw), ref["io"]["image"])
    pil = Image.fromarray(ref["io"]["image_uint8"][0].permute(1, 2, 0).numpy())
    assert torch.equal(dape.preprocess([pil]), ref["io"]["image"])


def test_preprocess_resizes_bilinear_without_antialias(dape):
    image = torch.rand(1, 3, 200, 300)
    want = F.interpolate(image, size=(384, 384), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(dape.preprocess(image), (want - mean) / std)
    sizes = [Image.new("RGB", (50, 70)), Image.new("L", (90, 30))]
    assert dape.preprocess(sizes).shape == (2, 3, 384, 384)


def test_outputs_match_reference(outputs, ref):
    io = ref["io"]
    embeds, probs = outputs["analyse"]
    _close(outputs["swin"], io["swin_out"])
    _close(embeds, io["image_embeds"])
    _close(outputs["logits"], io["logits"])
    _close(probs, io["probs"])
    assert probs.dtype == torch.float32


def test_tag_string_matches_reference(dape, outputs, ref):
    _, probs = outputs["analyse"]
    want = ref["tags"]["tags"]
    assert dape.hard_prompts(probs) == [want]
    assert dape.tags(ref["io"]["image"]) == [want]
    assert torch.equal((probs > dape.thresholds).float(), ref["io"]["targets"])
    assert torch.equal(dape.thresholds, ref["io"]["class_threshold"])


def test_global_threshold_override(dape, outputs):
    _, probs = outputs["analyse"]
    assert dape.hard_prompts(probs, threshold=1.0) == [""]
    assert dape.hard_prompts(probs, threshold=0.0) == [", ".join(dape.tag_list)]


def test_ram_only_matches_reference(ref):
    ram_only = _build(ref, lora=None)
    io = ref["io"]
    with torch.no_grad():
        embeds, probs = ram_only.analyse(io["image"])
    _close(embeds, io["ram_only.image_embeds"])
    _close(ram_only.logits(io["image"]), io["ram_only.logits"])
    assert ram_only.hard_prompts(probs) == [ref["tags"]["ram_only_tags"]]


def test_batch_rows_equal_single_images(dape, ref):
    image = ref["io"]["image"]
    batch = torch.cat([image, image.flip(-1)])
    with torch.no_grad():
        embeds, probs = dape.analyse(batch)
        for row, single in enumerate((image, image.flip(-1))):
            one_embeds, one_probs = dape.analyse(single)
            _close(embeds[row : row + 1], one_embeds)
            _close(probs[row : row + 1], one_probs)


# ---------------------------------------------------------------- checkpoint formats


def test_vision_multi_naming_and_extra_entries_load_identically(dape, ref, tmp_path):
    state = torch.load(ref["ram"], map_location="cpu", weights_only=True)["model"]
    renamed = {k.replace("tagging_head", "vision_multi"): v for k, v in state.items()}
    path = tmp_path / "ram_vision_multi.pth"
    torch.save({"model": renamed, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 3,
                "config": {"vit": "swin_l"}}, path)
    other = _build(ref, ram=path)
    got, want = other.state_dict(), dape.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_save_load_round_trip(dape, ref, tmp_path):
    path = tmp_path / "dape.safetensors"
    dape.save(path)
    again = DAPE.load(path)
    image = ref["io"]["image"]
    with torch.no_grad():
        for got, want in zip(again(image), dape(image)):
            assert torch.equal(got, want)
    assert again.tag_list == dape.tag_list and again.config == dape.config
    assert torch.equal(again.thresholds, dape.thresholds)
    assert path.stat().st_size < 1.05 * sum(v.numel() * 4 for v in dape.state_dict().values()) + 200_000


def test_load_refuses_foreign_files(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not a DAPE file"):
        DAPE.load(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        DAPE.load(garbage)


def test_tag_count_must_match_head(ref, tmp_path):
    short = tmp_path / "tags.txt"
    short.write_text("\n".join(ref["tag_file"].read_text().splitlines()[:-1]))
    with pytest.raises(WeightsError, match="4585 labels"):
        DAPE.from_checkpoints(ref["ram"], ref["lora"], tags=short, thresholds=ref["threshold_file"])


def test_thresholds_python_literal_is_parsed_not_run(ref, tmp_path):
    want = read_thresholds(ref["threshold_file"])
    marker = tmp_path / "ran"
    source = tmp_path / "ram_tag_list_threshold.py"
    source.write_text(f"import os\nos.system('touch {marker}')\nram_class_threshold = [\n"
                      + ",\n".join(repr(v) for v in want) + "\n]\n")
    assert read_thresholds(source) == want
    assert not marker.exists()
    assert len(want) == 4585


class _Custom:
    pass


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["custom_class", "torch_save_reduce", "pickle_reduce"])
def test_unsafe_pickles_are_refused(tmp_path, how):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    if how == "custom_class":
        torch.save({"model": {"w": torch.zeros(1)}, "config": _Custom()}, path)
    elif how == "torch_save_reduce":
        torch.save({"model": {"w": torch.zeros(1)}, "x": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": _Evil(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_pickle_state_dict(path, entry="model")
    message = str(info.value)
    assert "evil.pth" in message and "refused" in message and "\n" not in message
    assert ("system" in message) or ("_Custom" in message)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a pickle at all\n", os.urandom(256)])
def test_corrupt_files_are_weights_errors(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="broken.pth") as info:
        load_pickle_state_dict(path)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_truncated_and_missing_files(ref, tmp_path):
    path = tmp_path / "cut.pth"
    path.write_bytes(ref["lora"].read_bytes()[:5000])
    with pytest.raises(WeightsError, match="cut.pth"):
        load_pickle_state_dict(path)
    with pytest.raises(WeightsError, match="not found"):
        load_pickle_state_dict(tmp_path / "absent.pth")


# ---------------------------------------------------------------- LoRA merge rules


def test_merged_linear_layout_matches_grouped_conv():
    """loralib.MergedLinear: conv1d of A by B with one group per enabled part, zero rows for k."""
    torch.manual_seed(0)
    dim, rank = 6, 2
    a, b = torch.randn(2 * rank, dim), torch.randn(2 * dim, rank)
    grouped = F.conv1d(a.unsqueeze(0), b.unsqueeze(-1), groups=2).squeeze(0)  # (2 * dim) x dim
    want = torch.cat([grouped[:dim], torch.zeros(dim, dim), grouped[dim:]]) / rank
    assert torch.allclose(merged_lora_delta(a, b, 3 * dim, (True, False, True)), want, atol=1e-6)


def test_tied_tag_encoder_lora_is_merged_into_the_head(ref):
    """RAMLora ties tag_encoder layers 0-1 to the tagging head: both deltas land in the shared weight."""
    ram = load_pickle_state_dict(ref["ram"], entry="model")
    lora = load_pickle_state_dict(ref["lora"])
    stem = "encoder.layer.0.crossattention.self.query"
    lora[f"tag_encoder.{stem}.lora_B"] = torch.randn_like(lora[f"tag_encoder.{stem}.lora_B"])
    merged = convert_ram(ram, lora).state_dict["head.0.query.weight"]
    want = (ram[f"tagging_head.{stem}.weight"]
            + lora_delta(lora[f"tagging_head.{stem}.lora_A"], lora[f"tagging_head.{stem}.lora_B"])
            + lora_delta(lora[f"tag_encoder.{stem}.lora_A"], lora[f"tag_encoder.{stem}.lora_B"]))
    assert torch.allclose(merged, want, atol=1e-6)


def test_unknown_or_missing_keys_raise(ref):
    ram = load_pickle_state_dict(ref["ram"], entry="model")
    with pytest.raises(WeightsError, match="unexpected"):
        convert_ram({**ram, "visual_encoder.extra.weight": torch.zeros(1)})
    lora = load_pickle_state_dict(ref["lora"])
    lora.pop(next(k for k in lora if k.endswith("qkv.lora_B")))
    with pytest.raises(WeightsError, match="lora_B"):
        convert_ram(ram, lora)
    incomplete = {k: v for k, v in ram.items() if not k.startswith("image_proj")}
    with pytest.raises(WeightsError):
        DAPE.from_state_dicts(incomplete, None, ["t"] * 4585, [0.5] * 4585)


# ---------------------------------------------------------------- full size (meta tensors, no data)


def test_full_size_conversion(ref):
    from transformers import SwinConfig, SwinModel

    manifests = ref["manifests"]
    keys = json.loads((manifests / "ram_lora_swin_l_keys.json").read_text())
    sets = json.loads((manifests / "ram_lora_swin_l_key_sets.json").read_text())
    counts = json.loads((manifests / "param_counts.json").read_text())["ram_lora_swin_l"]
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    fake = {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in keys.items()}
    ram = {k: v for k, v in fake.items() if "lora_" not in k}
    lora = {k: v for k, v in fake.items() if "lora_" in k}
    assert sorted(lora) == sorted(sets["lora_keys__what_DAPE.pth_holds"])

    conversion = convert_ram(ram, lora)
    tied = re.compile(r"tag_encoder\.encoder\.layer\.[01]\.crossattention\.self\.(query|key)\.lora_[AB]")
    expected_ignored = {k for k in fake if k.startswith(("tag_encoder.", "text_decoder.")) and not tied.match(k)}
    expected_ignored |= set(sets["buffers_the_loader_drops_and_rebuilds"])
    assert set(conversion.ignored) == expected_ignored

    model = DAPE.from_state_dicts(ram, lora, ["tag"] * 4585, [0.5] * 4585)
    config = model.config
    assert (config.embed_dim, config.depths, config.num_heads, config.window_size) == (192, (2, 2, 18, 2), (6, 12, 24, 48), 12)
    assert (config.image_size, config.patch_size, config.num_tokens, config.vision_width) == (384, 4, 145, 1536)
    assert (config.head_width, config.head_ffn, config.head_layers, config.num_labels) == (768, 3072, 2, 4585)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    swin_config = SwinConfig(image_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12)
    with torch.device("meta"):
        swin = SwinModel(swin_config)
    assert {k[len("swin."):]: s for k, s in state.items() if k.startswith("swin.")} == {
        k: tuple(v.shape) for k, v in swin.state_dict().items()}
    assert state["image_proj.weight"] == (512, 1536) and state["label_embed"] == (4585, 512)
    assert state["head.1.key.weight"] == (768, 512) and state["fc.weight"] == (1, 768)

    per_module, lora_numel = counts["per_top_level_module"], counts["lora_numel_by_top_level"]
    numel = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("swin", "image_proj", "head", "wordvec_proj", "fc")}
    assert numel["swin"] == per_module["visual_encoder"] - lora_numel["visual_encoder"]
    assert numel["head"] == per_module["tagging_head"] - lora_numel["tagging_head"]
    assert model.label_embed.numel() == per_module["label_embed"]
    assert all(numel[k] == per_module[k] for k in ("image_proj", "wordvec_proj", "fc"))

    embeds, logits = model(torch.empty(2, 3, 384, 384, device="meta"))
    assert embeds.shape == (2, 145, 512) and logits.shape == (2, 4585)


def test_config_is_read_from_shapes_only(dape):
    config = DAPEConfig.from_state_dict(dape.state_dict())
    assert config == dape.config
    assert (config.embed_dim, config.depths, config.num_heads) == (16, (2, 2, 2, 2), (1, 2, 2, 4))
    assert (config.head_width, config.head_ffn, config.head_layers, config.head_heads) == (32, 64, 2, 4)


"""Weights a careful user tampers with (issue 10, items 8-10): --verify hashes afresh, a file changed
with its mtime put back is caught, every file of a --weights DIR with a known sha256 is checked,
wrong files and plain pickles get messages that say what is wrong, the compact DAPE file is 0644."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from fakehub import build_official_layout, sha256, write_sources_override

from seesr_cli import weights
from seesr_cli.errors import WeightsError
from seesr_cli.weights.check import check_folders

UNET = "seesr/unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def layout(fake_hub, tiny_components, tmp_path, monkeypatch):
    """An official-layout --weights DIR, offline, nothing in the Hub cache."""
    fake_hub.apply(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    return build_official_layout(tmp_path / "w", tiny_components, turbo=False)


def _flip_last_byte_keeping_mtime(path: Path) -> None:
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _rows(**kwargs) -> dict:
    return {row.key: row for row in weights.describe_weights(**kwargs)}


def test_verify_hashes_afresh_and_a_byte_changed_with_its_mtime_put_back_is_caught(layout):
    weights.resolve_weights(weights_dir=layout)  # hashed and recorded
    assert _rows(weights_dir=layout)["dape_lora"].state == "verified"
    _flip_last_byte_keeping_mtime(layout / "DAPE.pth")
    assert _rows(weights_dir=layout)["dape_lora"].state == "not verified yet"  # the record no longer vouches
    assert _rows(weights_dir=layout, verify=True)["dape_lora"].state == "sha256 mismatch"
    with pytest.raises(WeightsError, match=r"DAPE.pth: sha256 mismatch"):
        weights.resolve_weights(weights_dir=layout)


def test_every_file_of_a_weights_dir_with_a_known_sha256_is_checked(layout, tiny_components, tmp_path,
                                                                   monkeypatch):
    """A flipped byte in the UNet of a --weights DIR was used silently: with its sha256 in the manifest
    (here through SEESR_SOURCES, as for the official digests) it is refused before anything loads."""
    sources = write_sources_override(tmp_path / "sources.json", tiny_components,
                                     unet={"sha256": {UNET: sha256(tiny_components.unet / UNET.rsplit("/", 1)[1])}})
    monkeypatch.setenv("SEESR_SOURCES", str(sources))
    rows = _rows(weights_dir=layout)
    assert rows["unet"].state == "not verified yet"
    assert rows["unet"].detail == "not verified yet: seesr/unet/diffusion_pytorch_model.safetensors; " \
                                  "no checksum known: seesr/unet/config.json"
    assert rows["controlnet"].state == "no checksum known"
    weights.resolve_weights(weights_dir=layout)
    assert _rows(weights_dir=layout)["unet"].state == "verified"
    _flip_last_byte_keeping_mtime(layout / UNET)
    with pytest.raises(WeightsError, match=r"diffusion_pytorch_model.safetensors: sha256 mismatch for SeeSR UNet"):
        weights.resolve_weights(weights_dir=layout)


def test_a_controlnet_file_replaced_by_the_unets_is_named_not_a_meta_tensor_error(layout):
    paths = weights.resolve_weights(weights_dir=layout)
    assert check_folders(paths) is None
    shutil.copyfile(layout / UNET, layout / "seesr/controlnet/diffusion_pytorch_model.safetensors")
    problem = check_folders(paths)
    assert problem.startswith(f"{layout / 'seesr/controlnet/diffusion_pytorch_model.safetensors'}: not the "
                              "ControlNet weights its config.json describes: ")
    assert "it holds UNet weights" in problem and "meta tensor" not in problem


def test_a_shape_mismatch_names_the_file_and_the_config_not_loader_flags(layout):
    paths = weights.resolve_weights(weights_dir=layout)
    config_path = layout / "seesr/unet/config.json"
    config = json.loads(config_path.read_text())
    config["cross_attention_dim"] = 64
    config_path.write_text(json.dumps(config))
    problem = check_folders(paths)
    assert f"{layout / UNET}: does not fit {config_path}: " in problem
    assert "where the config needs [8, 64]" in problem and "ignore_mismatched_sizes" not in problem


def test_the_loader_reports_a_wrong_file_in_words(layout):
    """Through the batch's model loader, as `seesr upscale --weights DIR` meets it."""
    from seesr_cli.batch import PipelineLoader
    from seesr_cli.settings import LoadOptions

    shutil.copyfile(layout / UNET, layout / "seesr/controlnet/diffusion_pytorch_model.safetensors")
    with pytest.raises(WeightsError, match="not the ControlNet weights its config.json describes") as info:
        PipelineLoader(LoadOptions(device="cpu"), weights_dir=layout)()
    assert "Cannot copy out of meta tensor" not in str(info.value)


def test_a_plain_pickle_is_named_as_such_without_torch_warnings(layout, tiny_components, tmp_path, monkeypatch,
                                                                recwarn):
    state = torch.load(layout / "DAPE.pth", weights_only=True)
    with open(layout / "DAPE.pth", "wb") as handle:
        pickle.dump(dict(state), handle, protocol=4)
    accept = write_sources_override(tmp_path / "accept.json", tiny_components, dape_lora={"sha256": None})
    monkeypatch.setenv("SEESR_SOURCES", str(accept))
    warnings.simplefilter("always")
    with pytest.raises(WeightsError) as info:
        weights.resolve_weights(weights_dir=layout)
    message = str(info.value)
    assert message.startswith(f"{layout / 'DAPE.pth'}: a plain Python pickle (written with pickle.dump), "
                              "not a PyTorch checkpoint")
    assert "Unsupported operand" not in message
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_the_converted_dape_file_follows_the_umask(layout):
    old = os.umask(0o022)
    try:
        dape = weights.resolve_weights(weights_dir=layout).dape
    finally:
        os.umask(old)
    assert dape.stat().st_mode & 0o777 == 0o644

"""seesr_cli.weights against a fake Hugging Face cache of tiny official-format files.

Everything runs offline through the real huggingface_hub code (`snapshot_download`
with HF_HUB_OFFLINE=1 resolves the fake cache), the real sha256 checks and the
real RAM + DAPE.pth -> compact DAPE conversion.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from fakehub import (
    SD2_REPO,
    build_official_layout,
    sha256,
    write_sources_override,
)
from huggingface_hub.utils import filter_repo_objects

from seesr_cli import weights
from seesr_cli.weights import compact, hub, verify
from seesr_cli.errors import UsageError, WeightsError
from seesr_cli.models.dape import DAPE

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_PARTS = ("sd2", "unet", "controlnet", "dape_lora", "ram", "tags", "thresholds", "turbo")


@pytest.fixture
def offline(fake_hub, tmp_path, monkeypatch):
    """Offline against the shared fake cache; derived files (compact DAPE, record) go to this test's HF_HOME."""
    fake_hub.apply(monkeypatch, tmp_path / "home")
    return fake_hub


@pytest.fixture
def private_hub(fake_hub, tmp_path, monkeypatch, offline):
    """A copy of the fake cache that a test may change (blobs, snapshots)."""
    copy = tmp_path / "hub"
    shutil.copytree(fake_hub.cache, copy, symlinks=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(copy))
    return copy


def _snapshot(hub: Path, folder: str) -> Path:
    return next((hub / folder / "snapshots").iterdir())


class _Counter:
    """Wraps a callable and counts the calls (the real function still runs)."""

    def __init__(self, func):
        self.func, self.calls = func, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.func(*args, **kwargs)


# ---------------------------------------------------------------------------- resolving


def test_offline_resolution_through_the_real_hub_code(offline):
    paths = weights.resolve_weights(turbo=True)
    snapshots = offline.cache
    assert paths.sd2.is_relative_to(snapshots / "models--sd2-community--stable-diffusion-2-base" / "snapshots")
    assert (paths.sd2 / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert paths.unet.parts[-2:] == ("seesr", "unet") and (paths.unet / "config.json").is_file()
    assert paths.controlnet.parts[-2:] == ("seesr", "controlnet")
    assert (paths.turbo / "unet" / "config.json").is_file()
    dape = DAPE.load(paths.dape)
    assert len(dape.tag_list) == 4585
    assert paths.dape.parent == Path(os.environ["HF_HOME"]) / "assets" / "seesr-cli"
    assert weights.resolve_weights(turbo=False).turbo is None


def test_thresholds_come_from_the_space_list_literal(offline, tiny_components):
    dape = DAPE.load(weights.resolve_dape())
    want = [float(line) for line in tiny_components.thresholds_txt.read_text().split()]
    assert dape.thresholds.tolist() == torch.tensor(want, dtype=torch.float32).tolist()


def test_download_all_offline_uses_the_cache(offline):
    assert weights.download_all(turbo=True) == weights.resolve_weights(turbo=True)


def test_never_fetches_the_sd2_unet(offline, monkeypatch, tmp_path, tiny_components):
    sd2 = weights.sources()["sd2"]
    tree = json.loads(next((offline.cache / "models--sd2-community--stable-diffusion-2-base" / "trees").iterdir())
                      .read_text())["files"]
    assert any(path.startswith("unet/") for path in tree)  # the listing has it; we must not ask for it
    fetched = list(filter_repo_objects(tree, allow_patterns=sd2.allow_patterns))
    assert fetched and not [p for p in fetched if p.startswith("unet/") or p.endswith((".bin", ".ckpt"))]
    assert not [p for p in fetched if "fp16" in p]
    # Control: asking for unet/* makes huggingface_hub's own completeness check refuse the snapshot.
    override = write_sources_override(tmp_path / "s.json", tiny_components,
                                      sd2={"extra_patterns": ["tokenizer/*", "unet/*"]})
    monkeypatch.setenv("SEESR_SOURCES", str(override))
    with pytest.raises(WeightsError, match="SD2-base"):
        weights.resolve_weights()


# ---------------------------------------------------------------------------- missing parts


def test_missing_while_offline_names_every_part_in_one_error(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError) as info:
        weights.resolve_weights(turbo=True)
    message = str(info.value)
    table = weights.sources()
    for key in ALL_PARTS:
        assert table[key].what in message and table[key].repo_id in message
    assert "HF_HUB_OFFLINE" in message and "go online" in message and "--weights DIR" in message
    assert "seesr download" not in message  # `seesr download` itself may be the command that failed
    assert message.count("\n  - ") == len(ALL_PARTS)


def test_missing_one_part_names_only_that_part(private_hub):
    shutil.rmtree(private_hub / "models--xinyu1205--recognize_anything_model")
    with pytest.raises(WeightsError) as info:
        weights.resolve_dape()
    message = str(info.value)
    assert "missing weights (1 part)" in message and "ram_swin_large_14m.pth" in message
    assert "DAPE.pth" not in message.split("\n")[1]


@pytest.mark.parametrize("tree_listing", [True, False])
def test_a_partial_snapshot_is_missing_not_half_loaded(private_hub, tree_listing):
    repo = private_hub / "models--CSWRY--SeeSR"
    if not tree_listing:  # caches filled by older huggingface_hub versions have none
        shutil.rmtree(repo / "trees")
    (_snapshot(private_hub, "models--CSWRY--SeeSR") / "seesr" / "controlnet" / "config.json").unlink()
    with pytest.raises(WeightsError, match="SeeSR ControlNet"):
        weights.resolve_weights()


# ---------------------------------------------------------------------------- checksums


def test_sha256_mismatch_is_refused_before_unpickling(offline, tmp_path, monkeypatch, tiny_components):
    wrong = "0" * 64
    override = write_sources_override(tmp_path / "s.json", tiny_components, ram={"sha256": wrong})
    monkeypatch.setenv("SEESR_SOURCES", str(override))
    loads = _Counter(torch.load)
    monkeypatch.setattr(torch, "load", loads)
    with pytest.raises(WeightsError) as info:
        weights.resolve_dape()
    message = str(info.value)
    assert "ram_swin_large_14m.pth" in message and wrong in message and sha256(tiny_components.ram) in message
    assert loads.calls == 0
    assert not list((tmp_path / "home").rglob("dape-*.safetensors"))


def test_a_corrupt_hub_blob_fails_its_lfs_checksum(private_hub):
    unet = _snapshot(private_hub, "models--CSWRY--SeeSR") / "seesr" / "unet" / "diffusion_pytorch_model.safetensors"
    blob = Path(os.path.realpath(unet))
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match=f"sha256 mismatch.*expected {blob.name}"):
        weights.resolve_weights()


def test_verification_is_recorded_not_repeated(private_hub, monkeypatch):
    weights.resolve_weights()
    hashes = _Counter(verify.sha256_file)
    monkeypatch.setattr(verify, "sha256_file", hashes)
    rows = {row.key: row for row in weights.describe_weights()}
    assert hashes.calls == 0
    assert {rows[k].state for k in ("sd2", "unet", "controlnet", "dape_lora", "ram")} == {"verified"}
    assert rows["tags"].state == "no checksum known" and rows["dape"].state == "converted"
    ram = _snapshot(private_hub, "models--xinyu1205--recognize_anything_model") / "ram_swin_large_14m.pth"
    os.utime(os.path.realpath(ram), ns=(1, 1))  # a changed stamp: the record no longer vouches for it
    assert {row.key: row for row in weights.describe_weights()}["ram"].state == "not verified yet"
    assert hashes.calls == 0
    assert {row.key: row for row in weights.describe_weights(verify=True)}["ram"].state == "verified"
    assert hashes.calls == 6  # --verify hashes every file with a known sha256, whatever the record says


def test_describe_reports_missing_parts_without_raising(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    rows = weights.describe_weights(turbo=True)
    assert [row.key for row in rows] == [*ALL_PARTS, "dape"]
    assert {row.state for row in rows[:-1]} == {"missing"} and rows[-1].state == "not converted yet"


# ---------------------------------------------------------------------------- compact DAPE


def test_compact_dape_is_converted_once(offline, monkeypatch):
    conversions = _Counter(compact.convert_files)
    monkeypatch.setattr(compact, "convert_files", conversions)
    first = weights.resolve_dape()
    stamp = first.stat().st_mtime_ns
    second = weights.resolve_weights().dape
    assert second == first and first.stat().st_mtime_ns >= stamp and conversions.calls == 1
    assert not [p for p in first.parent.iterdir() if ".tmp" in p.name]


def test_a_changed_input_reconverts(tmp_path, monkeypatch, offline, tiny_components):
    layout = build_official_layout(tmp_path / "w", tiny_components, turbo=False)
    first = weights.resolve_dape(weights_dir=layout)
    lines = (layout / "ram_tag_list_threshold.txt").read_text().split()
    lines[0] = "0.5"
    (layout / "ram_tag_list_threshold.txt").write_text("\n".join(lines))
    second = weights.resolve_dape(weights_dir=layout)
    assert second != first and first.is_file()
    assert DAPE.load(second).thresholds[0].item() == 0.5


def test_threshold_file_is_parsed_never_executed(private_hub, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    space = _snapshot(private_hub, "spaces--xinyu1205--recognize-anything") / "data" / "ram_tag_list_threshold.py"
    values = Path(os.path.realpath(space)).read_text().split("=", 1)[1]
    space.unlink()
    space.write_text(f"__import__('os').system('touch {marker}')\nthresholds = {values}")
    monkeypatch.chdir(tmp_path)
    assert DAPE.load(weights.resolve_dape()).thresholds.numel() == 4585
    space.write_text(f"__import__('os').system('touch {marker}')\nopen('{marker}', 'w')\n")
    with pytest.raises(WeightsError):
        weights.resolve_dape()
    assert not marker.exists() and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------- official layout


def test_official_layout(tmp_path, monkeypatch, offline, tiny_components):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # nothing may come from the cache
    layout = build_official_layout(tmp_path / "w", tiny_components)
    paths = weights.resolve_weights(weights_dir=layout, turbo=True)
    assert paths.sd2 == layout / "stable-diffusion-2-base"
    assert paths.unet == layout / "seesr" / "unet" and paths.controlnet == layout / "seesr" / "controlnet"
    assert paths.turbo == layout / "sd-turbo"
    assert DAPE.load(paths.dape).tag_list[0] == tiny_components.tags.read_text().splitlines()[0]
    monkeypatch.setenv("SEESR_WEIGHTS", str(layout))
    assert weights.resolve_weights(turbo=True) == paths


def test_official_layout_takes_tag_files_from_the_cache_when_absent(tmp_path, offline, tiny_components,
                                                                   monkeypatch):
    layout = build_official_layout(tmp_path / "w", tiny_components, tags=False, turbo=False)
    assert weights.resolve_dape(weights_dir=layout).is_file()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError) as info:
        weights.resolve_weights(weights_dir=layout)
    message = str(info.value)
    assert "missing weights (2 parts)" in message and "tag vocabulary" in message and "thresholds" in message


def test_official_layout_missing_unet_names_the_folder(tmp_path, offline, tiny_components):
    layout = build_official_layout(tmp_path / "w", tiny_components, turbo=False)
    shutil.rmtree(layout / "seesr" / "unet")
    with pytest.raises(WeightsError, match=r"SeeSR UNet: not in .*w.*seesr/unet/config.json"):
        weights.resolve_weights(weights_dir=layout)


def test_official_layout_checks_the_release_checksums(tmp_path, monkeypatch, offline, tiny_components):
    layout = build_official_layout(tmp_path / "w", tiny_components, turbo=False)
    monkeypatch.delenv("SEESR_SOURCES")  # the manifest's real sha256: the tiny DAPE.pth is not the release
    with pytest.raises(WeightsError, match=r"DAPE.pth: sha256 mismatch.*a7028be2.*--accept-local-weights"):
        weights.resolve_weights(weights_dir=layout)
    assert weights.resolve_weights(weights_dir=layout, accept_local=True).dape.is_file()  # the flag
    monkeypatch.setenv("SEESR_ACCEPT_LOCAL_WEIGHTS", "1")  # its environment spelling
    assert weights.resolve_weights(weights_dir=layout).dape.is_file()
    monkeypatch.delenv("SEESR_ACCEPT_LOCAL_WEIGHTS")
    accept = tmp_path / "accept.json"  # the per-part override still works too
    accept.write_text(json.dumps({"dape_lora": {"sha256": None}, "ram": {"sha256": None}}))
    monkeypatch.setenv("SEESR_SOURCES", str(accept))
    assert weights.resolve_weights(weights_dir=layout).dape.is_file()


def test_weights_dir_must_exist(tmp_path, offline):
    with pytest.raises(UsageError, match="^--weights .*nope: does not exist"):
        weights.resolve_weights(weights_dir=tmp_path / "nope")


# ---------------------------------------------------------------------------- sources and cache dirs


def test_sources_override_and_sd2_repo(private_hub, tmp_path, monkeypatch, tiny_components):
    shutil.copytree(private_hub / "models--sd2-community--stable-diffusion-2-base",
                    private_hub / "models--acme--sd2-mirror", symlinks=True)
    paths = weights.resolve_weights(sd2_repo="acme/sd2-mirror")
    assert paths.sd2.is_relative_to(private_hub / "models--acme--sd2-mirror")
    override = write_sources_override(tmp_path / "s.json", tiny_components, sd2={"repo_id": "acme/sd2-mirror"})
    monkeypatch.setenv("SEESR_SOURCES", str(override))
    assert weights.sources()["sd2"].repo_id == "acme/sd2-mirror"
    assert weights.resolve_weights().sd2 == paths.sd2
    write_sources_override(override, tiny_components, sd2={"repo_id": "elsewhere/sd2", "revision": "v1"})
    with pytest.raises(WeightsError, match="elsewhere/sd2@v1"):
        weights.resolve_weights()


@pytest.mark.parametrize("content, match", [
    ({"nope": {}}, "unknown part 'nope'"),
    ({"sd2": {"colour": 1}}, "unknown field 'colour'"),
    ({"ram": {"sha256": 5}}, "must be a string"),
    ([], "expected an object"),
])
def test_bad_sources_file_is_a_usage_error(tmp_path, monkeypatch, content, match):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    monkeypatch.setenv("SEESR_SOURCES", str(path))
    with pytest.raises(UsageError, match=match):
        weights.sources()


def test_manifest_matches_the_spec():
    table = {source.key: source for source in weights.SOURCES}
    assert table["sd2"].repo_id == SD2_REPO
    assert not [p for p in table["sd2"].allow_patterns if p.startswith("unet")]
    assert table["dape_lora"].expected_sha256("DAPE.pth").startswith("a7028be2")
    assert table["ram"].expected_sha256("ram_swin_large_14m.pth").startswith("15c729c7")
    assert table["tags"].repo_type == table["thresholds"].repo_type == "space"
    assert table["thresholds"].files == ("data/ram_tag_list_threshold.py",)


def test_cache_dirs(monkeypatch, tmp_path):
    for name in ("SEESR_CACHE", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    assert weights.cache_dirs().hub == REPO_ROOT / "weights"  # a source checkout keeps them here
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert weights.cache_dirs() == weights.CacheDirs(tmp_path / "hf" / "hub", tmp_path / "hf" / "assets" / "seesr-cli")
    monkeypatch.setenv("SEESR_CACHE", str(tmp_path / "s"))
    assert weights.cache_dirs() == weights.CacheDirs(tmp_path / "s", tmp_path / "s" / "seesr-cli")


def test_download_progress_is_forwarded_without_drawing():
    events = []
    bar = hub.bar_class("unet", events.append)(total=10, unit="B", name="huggingface_hub.snapshot_download")
    bar.update(4)
    bar.close()
    hub.bar_class("unet", events.append)(total=3, name="huggingface_hub.other").update(1)
    assert events == [weights.WeightsEvent("unet", "download", 4.0, 10)]


def test_a_fresh_process_resolves_offline(fake_hub, tmp_path):
    """huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE at import: the CLI's situation."""
    import subprocess
    import sys

    code = "from seesr_cli.weights import resolve_weights; print(resolve_weights(turbo=True).dape)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=fake_hub.environ(tmp_path / "home"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(tmp_path / "home") and done.stderr == ""


def test_out_of_memory_is_not_called_a_corrupt_checkpoint(tmp_path, monkeypatch):
    """Only what torch.load raises on a bad file becomes "not a readable checkpoint"."""
    from seesr_cli.weights import pickles

    path = tmp_path / "DAPE.pth"
    torch.save({"a.lora_A": torch.zeros(2)}, path)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(MemoryError):
        pickles.load_pickle(path)

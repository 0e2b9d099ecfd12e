"""OfficialCLIPTokenizer gives the official stack's ids (transformers 4.25.1 slow CLIP, no ftfy).

Expected ids come from that stack itself: the reference fixtures' tokenizer_cases.json and
tests/data/tokenizer_official_ids.json (made by tests/data/make_tokenizer_ids.py in a
transformers 4.25.1 venv), never from our implementation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from seesr_cli.errors import WeightsError
from seesr_cli.models.tokenizer import OfficialCLIPTokenizer

OFFICIAL = json.loads((Path(__file__).parents[1] / "data" / "tokenizer_official_ids.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tiny_folder(reference_dir) -> Path:
    return reference_dir / "step_tiny" / "tokenizer"


@pytest.fixture(scope="module")
def tiny(tiny_folder) -> OfficialCLIPTokenizer:
    return OfficialCLIPTokenizer.from_pretrained(tiny_folder)


def assert_cases_equal(tokenizer: OfficialCLIPTokenizer, cases: list[dict]) -> None:
    got = tokenizer([case["text"] for case in cases])
    wrong = [ascii(case["text"])[:60] for case, row in zip(cases, got.tolist()) if row != case["input_ids"]]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ from the official ids: {wrong}"


def test_fixture_cases_equal(tiny, reference_dir):
    cases = json.loads((reference_dir / "step_tiny" / "tokenizer_cases.json").read_text(encoding="utf-8"))
    assert cases["transformers"] == "4.25.1" and not cases["ftfy"]
    assert len(cases["cases"]) == 23
    assert_cases_equal(tiny, cases["cases"])


def test_more_scripts_controls_and_truncation_equal(tiny):
    # Arabic, Hebrew, Devanagari, Thai, Korean, emoji, Cyrillic, control characters, "!" and
    # special tokens inside the text, units, and prompts of 74-100+ tokens.
    assert OFFICIAL["transformers"] == "4.25.1" and not OFFICIAL["ftfy"]
    assert len(OFFICIAL["tiny"]) >= 60
    assert_cases_equal(tiny, OFFICIAL["tiny"])


def test_loads_the_fixture_folder(tiny):
    assert (tiny.model_max_length, tiny.bos_token_id, tiny.eos_token_id, tiny.pad_token_id) == (77, 512, 513, 0)
    batch = tiny(["a photo", "", "x" * 300])
    assert batch.dtype == torch.long and batch.shape == (3, 77)
    assert batch[2, 0] == 512 and batch[2, 76] == 513  # truncation keeps BOS ... EOS
    assert torch.equal(tiny("a photo"), batch[:1])  # one string = a batch of one


def write_synthetic_bpe(tiny_folder: Path, merges: list[list[str]], out: Path) -> dict[str, int]:
    """The tiny byte vocab (ids 0-511), one token per merge, then the specials: CLIP's vocab layout."""
    base = json.loads((tiny_folder / "vocab.json").read_text(encoding="utf-8"))
    vocab = {token: i for token, i in base.items() if i < 512}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (out / name).write_text((tiny_folder / name).read_text(encoding="utf-8"), encoding="utf-8")
    return vocab


def test_sd2_format_bpe_merges_equal(tiny_folder, tmp_path):
    """vocab.json + merges.txt with real merges (the fixture's merges file is header-only)."""
    merges = OFFICIAL["synthetic_bpe"]["merges"]
    vocab = write_synthetic_bpe(tiny_folder, merges, tmp_path)
    tokenizer = OfficialCLIPTokenizer.from_pretrained(tmp_path)
    assert_cases_equal(tokenizer, OFFICIAL["synthetic_bpe"]["cases"])
    hello, bos, eos = vocab["hello</w>"], vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert tokenizer("hello hello")[0, :5].tolist() == [bos, hello, hello, eos, 0]


def test_malformed_files_are_weights_errors(tiny_folder, tmp_path):
    write_synthetic_bpe(tiny_folder, [["h", "e"]], tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e x\n", encoding="utf-8")
    with pytest.raises(WeightsError, match="line 2"):
        OfficialCLIPTokenizer.from_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="not in the tokenizer vocabulary"):
        OfficialCLIPTokenizer({"a": 0}, [])
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3}
    with pytest.raises(WeightsError, match="'a b'"):
        OfficialCLIPTokenizer(vocab, [("a", "b")])


@pytest.mark.skipif(not os.environ.get("SEESR_SD2_TOKENIZER"), reason="set SEESR_SD2_TOKENIZER to SD2's tokenizer folder")
def test_real_sd2_tokenizer_equal():
    tokenizer = OfficialCLIPTokenizer.from_pretrained(os.environ["SEESR_SD2_TOKENIZER"])
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 0)
    assert_cases_equal(tokenizer, OFFICIAL["sd2"])

"""Regenerate tokenizer_official_ids.json with the OFFICIAL stack (not with seesr_cli).

Run in a throwaway venv that has transformers 4.25.1 (`pip install "transformers==4.25.1"
--no-deps` plus regex, numpy, packaging, filelock, tqdm, requests, pyyaml,
"huggingface-hub<0.20", "tokenizers<0.14") and NOT ftfy:

    python tests/data/make_tokenizer_ids.py TINY_TOKENIZER_DIR [SD2_TOKENIZER_DIR] > tests/data/tokenizer_official_ids.json

TINY_TOKENIZER_DIR is the reference fixtures' step_tiny/tokenizer. SD2_TOKENIZER_DIR (optional)
is a full 49408-token CLIP tokenizer folder; see SD2_NOTE for the one used.
"""

import json
import platform
import sys
import tempfile
import unicodedata
from pathlib import Path

import regex
import transformers
from transformers import CLIPTokenizer

CASES = [
    # other scripts
    "مَرْحَبًا ٣٤٥، كيف حالك؟", "שָׁלוֹם עוֹלָם־גָּדוֹל", "नमस्ते दुनिया। हिन्दी १२३", "ภาษาไทย ๑๒๓ สวัสดีครับ",
    "안녕하세요, 세계!", "\u1100\u1161\u11a8 jamo", "ひらがなカタカナ漢字", "Москва ЁЖИК ёж", "ΟΔΟΣ Σίσυφος ΑΣ.Β",
    "İstanbul ǅ ẞ ﬁ", "（括弧）「引用」、。",
    # emoji
    "🙂🙂 ok", "👨\u200d👩\u200d👧 family", "👍🏽 ❤️ 1️⃣ 🇫🇷",
    # control and invisible characters
    "a\x00b", "tab\tsep", "line\r\nbreak", "zero\u200bwidth", "soft\u00adhyphen", "\ufeffbom", "e\u0301cole n\u0303",
    "\x07bell\x7fdel", "nbsp\u00a0space\u3000ideo", "line\u2028sep", "private\ue000use", "\ufffd replacement",
    "\u0301 lone combining", "x\U000e0001tag",
    # empty, whitespace, punctuation, special tokens in text
    "", "   \t\n ", "!", "!!!", "...", "?!,;:", "wow! ! !", "<|endoftext|>", "<|startoftext|>hi<|endoftext|>x",
    "<|endoftext", "a!b", "-_-", "'''",
    # case and contractions
    "HeLLo WoRLD", "McDonald's", "I'M FINE", "it's we'll they've", "don’t",
    # numbers and units
    "8k", "4K UHD", "1920x1080px", "3.5mm f/1.8", "50%", "10°C", "$100 £5 €3", "2.5e-3", "1,000,000",
    "½ cup ²³", "Ⅻ ① ⑩", "a+b=c ≤ ≥ ∑", "https://example.com/a?b=c#d",
    # the official prompts
    "clean, high-resolution, 8k", "dotted, noise, blur, lowres, smooth",
    "cat, grass, , ,clean, high-resolution, 8k",
    # truncation at 77: 74, 75, 76 and many content tokens
    "x" * 74, "x" * 75, "x" * 76, "a photo of a cat, " * 12, "東京" * 50, "!" * 100,
]

# Synthetic BPE on the tiny byte vocabulary: (a, b) pairs in rank order, as merges.txt lists them.
WORD_MERGES = [
    ("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("c", "a"), ("ca", "t</w>"),
    ("p", "h"), ("o", "t"), ("ph", "ot"), ("phot", "o</w>"), ("a", "a"), ("aa", "a</w>"), ("aa", "aa"),
    ("a", "n"), ("b", "an"), ("an", "a</w>"), ("ban", "an"), ("h", "e</w>"), ("t", "he</w>"), ("t", "h"),
    ("c", "l"), ("e", "a"), ("cl", "ea"), ("clea", "n</w>"), ("o", "f</w>"),
]
BPE_CASES = [
    "hello hello", "Hello, cat!", "a photo of a cat", "banana bananas ban", "aaaaa aaaa aaa aa a",
    "the they th", "東京 東", "clean, high-resolution, 8k", "don't", "HELLO!!", "photos of cats",
]


SD2_NOTE = (
    "sd2: vocab.json/merges.txt rebuilt offline from openai/CLIP's bpe_simple_vocab_16e6.txt.gz in HF's "
    "layout (bytes, bytes</w>, first 48894 merges, <|startoftext|> 49406, <|endoftext|> 49407) with "
    "step_tiny's tokenizer_config.json/special_tokens_map.json (pad '!'); tests check these ids only "
    "when SEESR_SD2_TOKENIZER names a real SD2 tokenizer folder"
)


def byte_merges(text: str) -> list[str]:
    """The merges that build `text`'s UTF-8 bytes (byte-level characters) into one token."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = [bytes_to_unicode()[b] for b in text.encode("utf-8")]
    chars[-1] += "</w>"
    merges, current = [], chars[0]
    for char in chars[1:]:
        merges.append((current, char))
        current += char
    return merges


def synthetic_folder(tiny: Path, merges: list, out: Path) -> Path:
    """Byte vocab of the tiny tokenizer (ids 0-511), one token per merge, then the specials."""
    base = {t: i for t, i in json.loads((tiny / "vocab.json").read_text()).items() if i < 512}
    vocab = dict(base)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (out / name).write_text((tiny / name).read_text())
    return out


def ids(folder: Path, texts: list[str]) -> list[dict]:
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    assert tokenizer.fix_text is None, "ftfy is installed: uninstall it"
    return [
        {"text": t, "input_ids": tokenizer(t, padding="max_length", max_length=tokenizer.model_max_length,
                                           truncation=True).input_ids}
        for t in texts
    ]


def main() -> None:
    assert transformers.__version__ == "4.25.1", transformers.__version__
    tiny = Path(sys.argv[1])
    merges = WORD_MERGES + byte_merges("東京")
    with tempfile.TemporaryDirectory() as tmp:
        bpe = ids(synthetic_folder(tiny, merges, Path(tmp)), BPE_CASES)
    data = {
        "how": "tests/data/make_tokenizer_ids.py, run with transformers 4.25.1's slow CLIPTokenizer, no ftfy",
        "transformers": transformers.__version__, "ftfy": False, "python": platform.python_version(),
        "unicodedata": unicodedata.unidata_version, "regex": regex.__version__,
        "call": 'tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids',
        "tiny": ids(tiny, CASES),
        "synthetic_bpe": {"merges": [list(m) for m in merges], "cases": bpe},
    }
    if len(sys.argv) > 2:
        data["sd2_note"] = SD2_NOTE
        data["sd2"] = ids(Path(sys.argv[2]), CASES + BPE_CASES)
    lines = [f'  "{key}": {json.dumps(value, ensure_ascii=False)}' for key, value in data.items() if key not in ("tiny", "sd2", "synthetic_bpe")]
    body = ",\n".join(lines)
    cases = lambda rows: "[\n" + ",\n".join("    " + json.dumps(r, ensure_ascii=False) for r in rows) + "\n  ]"
    body += ',\n  "tiny": ' + cases(data["tiny"])
    body += ',\n  "synthetic_bpe": {"merges": ' + json.dumps(data["synthetic_bpe"]["merges"], ensure_ascii=False)
    body += ', "cases": ' + cases(bpe) + "}"
    if "sd2" in data:
        body += ',\n  "sd2": ' + cases(data["sd2"])
    print("{\n" + body + "\n}")


if __name__ == "__main__":
    main()

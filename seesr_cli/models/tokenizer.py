"""CLIP prompt tokenizer giving exactly the token ids of SeeSR's official stack.

The official code tokenises with transformers 4.25.1's slow `CLIPTokenizer`, without
ftfy installed. For any text that stack does (and so do we):

1. cut the special tokens (BOS, EOS, pad "!") out of the raw text; each keeps its vocab
   id, so "wow!!" ends in two "!" (id 0) rather than "!</w>" (id 256);
2. run each remaining piece through BERT's `BasicTokenizer(do_lower_case=True)`: drop
   control/format/unassigned characters, space out CJK ideographs, split on whitespace,
   lower-case, strip accents (NFD, drop Mn marks), split off every punctuation character;
3. join the words with spaces, split them with CLIP's regex, map UTF-8 bytes to
   characters and apply BPE with "</w>" on each word's last symbol;
4. keep BOS + the first 75 ids + EOS and pad with the pad id up to 77.

transformers 5 reproduces none of steps 1-2: its CLIPTokenizer is the fast one (NFC,
lowercase, no accent stripping, no punctuation split, no special "!"), and BERT's slow
`BasicTokenizer` only survives as a legacy module that has since added NFC. The
`tokenizers` BertNormalizer lower-cases character by character (no Greek final sigma)
with its own Unicode tables. So step 2 is written here, after 4.25.1's
`BasicTokenizer`, on Python's `unicodedata`; step 3 uses the `regex` module exactly as
the official code does, and the `tokenizers` library's byte-level BPE model.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import regex
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from seesr_cli.errors import WeightsError

# 4.25.1 CLIPTokenizer: `tokenization_clip.py`, pattern compiled with re.IGNORECASE.
CLIP_SPLIT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
MAX_MERGES = 49152 - 256 - 2  # the slow tokenizer reads only the first 48894 merges
DEFAULT_SPECIALS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}
# BERT's "Chinese character" blocks (`BasicTokenizer._is_chinese_char`); not Kana or Hangul.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    # BERT counts every non-alphanumeric printable ASCII character as punctuation ("$", "^", "`").
    return (33 <= ord(char) <= 126 and not char.isalnum()) or unicodedata.category(char).startswith("P")


def _clean(text: str) -> str:
    """`_clean_text` + `_tokenize_chinese_chars`: drop C* but tab/CR/LF, whitespace -> " "."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char in "\t\n\r" or category == "Zs":
            out.append(" ")
        elif category.startswith("C") or char == "\ufffd":
            continue
        elif _is_cjk(char):
            out.append(f" {char} ")
        else:
            out.append(char)
    return "".join(out)


def basic_words(text: str) -> list[str]:
    """BERT `BasicTokenizer(do_lower_case=True).tokenize` of transformers 4.25.1 (no NFC step)."""
    words: list[str] = []
    for token in _clean(text).split():
        token = unicodedata.normalize("NFD", token.lower())
        token = "".join(c for c in token if unicodedata.category(c) != "Mn")
        current = ""
        for char in token:
            if _is_punctuation(char):
                words += [current, char] if current else [char]
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    return " ".join(words).split()


def _token_content(value) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: cannot read tokenizer file ({error})") from error


class OfficialCLIPTokenizer:
    """CLIP BPE tokenizer with the official (transformers 4.25.1, no ftfy) pre-tokenisation."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int = 77,
    ):
        specials = {**DEFAULT_SPECIALS, **(special_tokens or {})}
        missing = sorted({t for t in specials.values() if t not in vocab})
        if missing:
            raise WeightsError(f"special tokens {missing} are not in the tokenizer vocabulary")
        if model_max_length < 2:
            raise WeightsError(f"model_max_length must be at least 2, got {model_max_length}")
        self.model_max_length = model_max_length
        self.bos_token_id = vocab[specials["bos_token"]]
        self.eos_token_id = vocab[specials["eos_token"]]
        self.pad_token_id = vocab[specials["pad_token"]]
        self._special_ids = {t: vocab[t] for t in specials.values()}
        # 4.25.1 cuts special tokens out with a longest-match trie; an alternation longest first is the same.
        alternatives = sorted(self._special_ids, key=len, reverse=True)
        self._special_split = regex.compile("(" + "|".join(map(regex.escape, alternatives)) + ")")
        bad = next((m for m in merges if not {m[0], m[1], m[0] + m[1]} <= vocab.keys()), None)
        if bad is not None:  # the slow tokenizer would emit unk ids; tokenizers refuses to build
            raise WeightsError(f"merge {' '.join(bad)!r} uses a token that is not in the vocabulary")
        bpe = models.BPE(
            vocab=dict(vocab),
            merges=list(merges),
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            unk_token=specials["unk_token"],
            fuse_unk=False,
            ignore_merges=False,  # always merge, as the slow tokenizer does
        )
        self._bpe = Tokenizer(bpe)
        self._bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    @classmethod
    def from_pretrained(cls, folder: str | PathLike) -> OfficialCLIPTokenizer:
        """Read a transformers tokenizer folder: vocab.json, merges.txt and the two token maps."""
        folder = Path(folder)
        vocab = _read_json(folder / "vocab.json")
        try:
            lines = (folder / "merges.txt").read_text(encoding="utf-8").strip().split("\n")
        except OSError as error:
            raise WeightsError(f"{folder / 'merges.txt'}: cannot read tokenizer file ({error})") from error
        merges = []
        for number, line in enumerate(lines[1 : MAX_MERGES + 1], start=2):  # line 1 is the "#version" header
            pair = tuple(line.split())
            if len(pair) != 2:
                raise WeightsError(f"{folder / 'merges.txt'} line {number}: expected two symbols, got {line!r}")
            merges.append(pair)
        config_file, map_file = folder / "tokenizer_config.json", folder / "special_tokens_map.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        overrides = _read_json(map_file) if map_file.is_file() else {}
        # As in 4.25.1's from_pretrained: special_tokens_map.json wins over tokenizer_config.json.
        specials = {
            key: _token_content(overrides.get(key, config[key]))
            for key in DEFAULT_SPECIALS
            if key in overrides or key in config
        }
        length = int(config.get("model_max_length", 77))  # CLIP's 77 text positions
        return cls(vocab, merges, special_tokens=specials, model_max_length=length)

    def text_ids(self, text: str) -> list[int]:
        """Token ids of `text` without BOS/EOS, padding or truncation."""
        ids: list[int] = []
        for piece in self._special_split.split(text):
            if piece in self._special_ids:
                ids.append(self._special_ids[piece])
            elif piece:
                words = CLIP_SPLIT.findall(" ".join(basic_words(piece)))
                if words:
                    ids += self._bpe.encode(words, is_pretokenized=True, add_special_tokens=False).ids
        return ids

    def __call__(self, prompts: str | Sequence[str]) -> torch.LongTensor:
        """N x model_max_length ids, as the official `tokenizer(prompt, padding="max_length",
        max_length=77, truncation=True, return_tensors="pt").input_ids`: BOS, at most 75 ids, EOS, pads."""
        if isinstance(prompts, str):
            prompts = [prompts]
        length = self.model_max_length
        rows = []
        for prompt in prompts:
            ids = [self.bos_token_id, *self.text_ids(prompt)[: length - 2], self.eos_token_id]
            rows.append(ids + [self.pad_token_id] * (length - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), length)

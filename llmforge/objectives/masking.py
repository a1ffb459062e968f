"""Masked-LM inputs from packed token windows: BERT's selection and 80/10/10 replacement rule (Devlin et al.
2019, §3.1 "Task #1: Masked LM"), done by transformers' `DataCollatorForLanguageModeling`.

Determinism: every row is masked by its own generator, seeded from the row's seed tuple (the run seed and the
window's position in the data), never from the global RNG. A row therefore gets the same mask whatever batch,
rank or process it is in: a resumed run and a DDP run (each rank masks its own rows) see what one uninterrupted
process sees.

Special tokens (document-separating EOS, pad, mask, unk, chat roles, sentinels: every special token of the
tokenizer) are never selected. A random replacement, though, is drawn from the whole vocabulary
(`len(tokenizer)`, the collator's rule) and may be any token.

Whole-word masking (`whole_word = true`) selects words instead of tokens: each word is picked with
`probability` and all its tokens are replaced by the mask token. The collator finds words from offset
mappings, which packed windows of ids do not have, so they are made up (`Masker.word_starts`) from a
per-tokenizer table of which tokens begin with, end with or are only whitespace (`WhitespaceTable`): a word is
a run of non-whitespace text together with the whitespace before it (as byte-level BPE's 'Ġword'), and the
first token of a window and the token after a special token begin a word. For WordPiece a word is a piece
without '##' and its continuations, BERT's own words.
Limits: outside WordPiece, punctuation does not split words ('foo.bar()' is one word; WordPiece's
pre-tokenizer splits it off, so there '.' is a word, as in BERT); only ASCII whitespace counts in byte-level
BPE (a non-breaking or ideographic space is inside a word), so text written without spaces (Chinese,
Japanese) is one long word up to the window edge; a word cut by a window edge is two words, one per window.
transformers has no random or kept share for whole words (it forces every selected token to the mask token),
so a rule with `whole_word` must say `mask_fraction = 1.0, random_fraction = 0.0`; any other split is
refused (ValueError) rather than silently changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


# GPT-2's byte-to-character map (Radford et al. 2019, §2.2) sends bytes 0-32 to chr(256 + byte), so the ASCII
# whitespace bytes \t \n \v \f \r and space are these characters in a byte-level token string.
BYTE_LEVEL_WHITESPACE = frozenset(chr(256 + b) for b in (9, 10, 11, 12, 13, 32))
_BYTE_FALLBACK_WHITESPACE = frozenset(  # SentencePiece byte-fallback pieces of those bytes
    f"<0x{b:02X}>" for b in (9, 10, 11, 12, 13, 32)
)


@dataclass(frozen=True)
class MaskingRule:
    """Which tokens masked-LM training scores and what the model sees in their place (BERT: 0.15, 0.8, 0.1)."""

    probability: float = 0.15  # share of (non-special) tokens / words selected
    mask_fraction: float = 0.8  # of the selected: replaced by the mask token
    random_fraction: float = 0.1  # of the selected: replaced by a random token; the rest stay unchanged
    whole_word: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.probability <= 1:
            raise ValueError(f"probability must be in (0, 1], got {self.probability}")
        for name in ("mask_fraction", "random_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mask_fraction + self.random_fraction > 1:
            raise ValueError(
                f"mask_fraction + random_fraction must be at most 1 (the rest stay unchanged), "
                f"got {self.mask_fraction} + {self.random_fraction}"
            )
        if self.whole_word and (self.mask_fraction != 1 or self.random_fraction != 0):
            raise ValueError(
                "whole_word = true replaces every token of a selected word by the mask token (transformers' "
                "collator has no random or kept share for whole words): set mask_fraction = 1.0 and "
                f"random_fraction = 0.0 (got {self.mask_fraction} and {self.random_fraction})"
            )


class Masker:
    """Masks packed windows of token ids for masked-LM training with `rule`, per row, deterministically."""

    def __init__(self, tokenizer_dir: Path | str, rule: MaskingRule):
        from transformers import AutoTokenizer, DataCollatorForLanguageModeling

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        if tokenizer.mask_token is None:
            raise ValueError(
                f"{tokenizer_dir}: the tokenizer has no mask token, which masked-LM training needs"
            )
        if rule.whole_word and not tokenizer.is_fast:
            raise ValueError(f"{tokenizer_dir}: whole-word masking needs a fast tokenizer (a tokenizer.json)")
        self.rule = rule
        self.mask_id: int = tokenizer.mask_token_id
        self.special_ids: frozenset[int] = special_token_ids(tokenizer)
        self.vocab_size = len(tokenizer)
        self._collator = DataCollatorForLanguageModeling(
            tokenizer,
            mlm_probability=rule.probability,
            mask_replace_prob=rule.mask_fraction,
            random_replace_prob=rule.random_fraction,
            whole_word_mask=rule.whole_word,
        )
        self._is_special = _id_table(self.vocab_size, self.special_ids)
        self._spaces = WhitespaceTable.of(tokenizer)

    def mask(self, rows: torch.Tensor, seeds: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) for int64 rows (B, T): labels = -100 except at selected positions (the original id
        there). `seeds[i]` (e.g. (run seed, window position)) alone decides row i's mask; give every row a
        tuple of the same length. `rows` (a CPU tensor) is left as it is."""
        import torch

        self._check(rows, seeds)
        special = torch.from_numpy(self._is_special[rows.numpy()])
        offsets = self._offsets(rows.numpy()) if self.rule.whole_word else None
        inputs, labels = [], []
        for i, seed in enumerate(seeds):
            self._collator.generator = torch.Generator().manual_seed(row_seed(seed))
            row_inputs, row_labels = self._collator.torch_mask_tokens(
                rows[i : i + 1].clone(),
                special_tokens_mask=special[i : i + 1],
                offset_mapping=None if offsets is None else offsets[i : i + 1],
            )
            inputs.append(row_inputs)
            labels.append(row_labels)
        self._collator.generator = None
        return torch.cat(inputs), torch.cat(labels)

    def _check(self, rows: torch.Tensor, seeds: Sequence[Sequence[int]]) -> None:
        import torch

        if rows.dtype != torch.int64 or rows.dim() != 2:
            raise ValueError(
                f"rows must be an int64 tensor (batch, length), got {rows.dtype} {tuple(rows.shape)}"
            )
        if len(seeds) != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {len(seeds)} seeds: give one seed tuple per row")
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}) (the tokenizer's vocabulary)")

    def word_starts(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) bool: the token begins a word; False at special tokens. A word is a run of non-whitespace
        with the whitespace before it: a token begins one when whitespace is at its start or at the end of
        the token before, unless that token is whitespace only; the first token of a window and the one
        after a special token begin a word too."""
        spaces, special = self._spaces, self._is_special
        prev = ids[:, :-1]
        begins = np.ones(ids.shape, dtype=bool)
        begins[:, 1:] = (
            (spaces.leading[ids[:, 1:]] | spaces.trailing[prev]) & ~spaces.blank[prev]
        ) | special[prev]
        return begins & ~special[ids]

    def _offsets(self, ids: np.ndarray) -> np.ndarray:
        """Offset mappings the collator's `_calc_word_ids_and_prob_mask` reads: every token one character
        long, with a one-character gap before a token that begins a word and none inside a word (the
        collator itself starts a word at the window start and after a special token)."""
        starts = np.arange(ids.shape[1]) + np.cumsum(self.word_starts(ids), axis=1)
        return np.stack([starts, starts + 1], axis=-1)


def row_seed(seed: Sequence[int]) -> int:
    """A 64-bit generator seed from a tuple of non-negative ints; tuples of different content or length give
    unrelated seeds."""
    text = ",".join(str(int(s)) for s in seed)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    """Every special id: the declared ones (bos/eos/pad/unk/mask, additional) and every added token marked
    special (llmforge keeps a `<|bos|>` that is not the declared bos_token; sentinels are added as special)."""
    added = (i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
    return frozenset({*tokenizer.all_special_ids, *added})


@dataclass(frozen=True)
class WhitespaceTable:
    """Boolean tables over the vocabulary: the token's text begins with whitespace (`leading`), ends with it
    (`trailing`), is whitespace only (`blank`); read from the token strings by the tokenizer's convention:

    - byte-level BPE: the characters GPT-2's byte map gives ASCII whitespace ('Ġ' space, 'Ċ' newline, ...);
    - Metaspace (unigram): the replacement character ('▁'), whitespace, and byte-fallback whitespace pieces;
    - WordPiece: every piece not starting with the continuation prefix ('##') is `leading` (its
      pre-tokenizer has split whitespace and punctuation off, so pieces hold no whitespace);
    - anything else (char, word level): the characters themselves."""

    leading: np.ndarray
    trailing: np.ndarray
    blank: np.ndarray

    @classmethod
    def of(cls, tokenizer: Any) -> WhitespaceTable:
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        if spec["model"]["type"] == "WordPiece":
            prefix = spec["model"].get("continuing_subword_prefix") or "##"
            none = np.zeros(len(pieces), dtype=bool)
            return cls(np.array([not (p or prefix).startswith(prefix) for p in pieces]), none, none)
        space = _whitespace_test(spec)
        byte_pieces = _BYTE_FALLBACK_WHITESPACE if spec["model"].get("byte_fallback") else frozenset()

        def flags(piece: str | None) -> tuple[bool, bool, bool]:
            if piece in byte_pieces:
                return True, True, True
            if not piece:  # an id with no token (a hole in the vocabulary)
                return False, False, False
            return space(piece[0]), space(piece[-1]), all(map(space, piece))

        table = np.array([flags(p) for p in pieces], dtype=bool).reshape(-1, 3)
        return cls(*table.T.copy())


def _whitespace_test(spec: dict) -> Any:
    """`test(char)`: does this character of a token string stand for whitespace in the text?"""
    if _component(spec, "ByteLevel"):
        return BYTE_LEVEL_WHITESPACE.__contains__
    metaspace = _component(spec, "Metaspace")
    mark = metaspace.get("replacement", "\u2581") if metaspace else None
    return lambda char: char == mark or char.isspace()


def _component(spec: Any, kind: str) -> dict | None:
    """The first pre-tokenizer or decoder of type `kind` in a tokenizer.json spec (searching Sequences)."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == kind:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([spec.get("pre_tokenizer"), spec.get("decoder")])
    return found[0] if found else None


def _id_table(size: int, ids: frozenset[int]) -> np.ndarray:
    table = np.zeros(size, dtype=bool)
    table[[i for i in ids if i < size]] = True
    return table

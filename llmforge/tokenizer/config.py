"""`[tokenizer]` table: how to train a tokenizer and how to encode a dataset into token shards.

The table is discriminated by `algorithm`: a key that the chosen algorithm does not use (`min_frequency`
with unigram, `whitespace` with anything but bpe, ...) is refused with the reason instead of being ignored.
Such keys default to None (the algorithm's default), so a dumped recipe
(`llmforge recipe show`) leaves them out and loads again.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from llmforge.recipe_base import Table

# Above every released vocabulary (Gemma 3: 262,144) and far below what a uint32 token id holds; the HF
# trainers allocate per requested entry, so 1e9 aborts the process in Rust instead of failing politely.
MAX_VOCAB_SIZE = 1 << 20
# T5 reserves 100; a span-corruption example needs one per noise span, far fewer than 1000 in any context.
MAX_SENTINELS = 1000

Algorithm = Literal["bpe", "wordpiece", "unigram", "char", "word"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

_REGEX_ONLY_IN_BPE = "it picks the byte-level pre-tokenisation regex, which only bpe has"
# key → {algorithm that does not use it: why}; every other algorithm uses the key
ALGORITHM_KEYS: dict[str, dict[str, str]] = {
    "min_frequency": {
        "unigram": "the unigram trainer prunes its vocabulary by likelihood, not by count",
        "char": "char keeps every character it sees",
    },
    "whitespace": {a: _REGEX_ONLY_IN_BPE for a in ALGORITHMS if a != "bpe"},
    "split_digits": {"char": "char already makes every digit a token of its own"},
}


class SpecialTokens(Table):
    """Names of the special tokens; they get the first ids, in this order, then the chat-role tokens.

    `bos` names a reserved token (id 0, kept so ids do not shift) that is *not* the tokenizer's declared
    `bos_token`: training data separates documents with EOS and never holds a BOS, so the declared
    bos_token is `eos` (the GPT-2 convention) and anything that prefixes a sequence with "bos" (lm-eval's
    rolling log-likelihood) uses the token training saw before every document.

    `sentinels` reserves N tokens `<extra_id_0>` … `<extra_id_{N-1}>` for span corruption (Raffel et al.
    2020, §3.1.4) at the top of the vocabulary in the order of T5's released vocabulary: `<extra_id_0>` has
    the highest id (32099 of 32100 there), `<extra_id_1>` the next lower, …"""

    bos: str = "<|bos|>"
    eos: str = "<|eos|>"
    pad: str = "<|pad|>"
    unk: str = "<|unk|>"
    mask: str = "<|mask|>"
    chat_roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant"])
    sentinels: int = Field(0, ge=0, le=MAX_SENTINELS)

    def role_token(self, role: str) -> str:
        return f"<|{role}|>"

    def sentinel_tokens(self) -> list[str]:
        """`<extra_id_k>` for k = 0 … sentinels - 1 (k-th sentinel first)."""
        return [sentinel_token(k) for k in range(self.sentinels)]


def sentinel_token(k: int) -> str:
    return f"<extra_id_{k}>"


class TokenizerConfig(Table):
    algorithm: Algorithm = "bpe"
    vocab_size: int = Field(8192, ge=2, le=MAX_VOCAB_SIZE)
    normalization: Literal["none", "nfc", "nfkc"] = "nfc"
    lowercase: bool = False
    split_digits: bool | None = None  # None: false
    # bpe: "gpt2" (default), GPT-2's pre-tokenisation regex; "code": newline and indentation runs are pieces.
    whitespace: Literal["gpt2", "code"] | None = None
    min_frequency: int | None = Field(None, ge=1)  # bpe, wordpiece, word: rarer merges/words are left out (2)
    sample_bytes: int = Field(50_000_000, ge=1)
    special_tokens: SpecialTokens = Field(default_factory=SpecialTokens)
    val_fraction: float = Field(0.01, ge=0, lt=1)
    workers: int = Field(1, ge=1)

    @property
    def min_count(self) -> int:
        """The trainer's min_frequency (1 for char: every character seen is kept)."""
        if self.algorithm == "char":
            return 1
        return 2 if self.min_frequency is None else self.min_frequency

    @model_validator(mode="after")
    def _keys_apply_to_the_algorithm(self) -> TokenizerConfig:
        for key, unused_by in ALGORITHM_KEYS.items():
            if getattr(self, key) is not None and self.algorithm in unused_by:
                users = ", ".join(a for a in ALGORITHMS if a not in unused_by)
                raise ValueError(
                    f"tokenizer.{key} does not apply to algorithm {self.algorithm!r} "
                    f"({unused_by[self.algorithm]}; used by {users} only): remove the key"
                )
        return self

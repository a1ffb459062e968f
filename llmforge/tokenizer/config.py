"""`[tokenizer]` table: how to train a tokenizer and how to encode a dataset into token shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmforge.recipe_base import Table


class SpecialTokens(Table):
    """Names of the special tokens; they get the first ids, in this order, then the chat-role tokens."""

    bos: str = "<|bos|>"
    eos: str = "<|eos|>"
    pad: str = "<|pad|>"
    unk: str = "<|unk|>"
    mask: str = "<|mask|>"
    chat_roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant"])

    def role_token(self, role: str) -> str:
        return f"<|{role}|>"


class TokenizerConfig(Table):
    algorithm: Literal["bpe", "wordpiece", "unigram", "char", "word"] = "bpe"
    vocab_size: int = Field(8192, ge=2)
    normalization: Literal["none", "nfc", "nfkc"] = "nfc"
    lowercase: bool = False
    split_digits: bool = False
    # "gpt2": GPT-2's pre-tokenisation regex; "code": newlines and indentation runs are pieces of their own.
    whitespace: Literal["gpt2", "code"] = "gpt2"
    min_frequency: int = Field(2, ge=1)  # bpe, wordpiece, word: rarer merges/words are left out
    sample_bytes: int = Field(50_000_000, ge=1)
    special_tokens: SpecialTokens = Field(default_factory=SpecialTokens)
    val_fraction: float = Field(0.01, ge=0, lt=1)
    workers: int = Field(1, ge=1)

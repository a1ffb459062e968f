"""`[tokenizer]` table: how to train a tokenizer and how to encode a dataset into token shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmforge.recipe_base import Table


class TokenizerConfig(Table):
    algorithm: Literal["bpe", "wordpiece", "unigram", "char", "word"] = "bpe"
    vocab_size: int = Field(8192, ge=2)
    normalization: Literal["none", "nfc", "nfkc"] = "nfc"
    lowercase: bool = False
    split_digits: bool = False
    sample_bytes: int = Field(50_000_000, ge=1)
    val_fraction: float = Field(0.01, ge=0, lt=1)
    workers: int = Field(1, ge=1)

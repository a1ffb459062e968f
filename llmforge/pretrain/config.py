"""`[model]` and `[train]` tables for pretraining."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmforge.recipe_base import Table


class ModelConfig(Table):
    arch: Literal["llama", "gpt-neox", "gpt2"] = "llama"
    n_layers: int = Field(4, ge=1)
    d_model: int = Field(256, ge=8)
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int | None = Field(None, ge=1)
    ffn_dim: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=2)
    max_seq_len: int = Field(256, ge=8)
    tie_embeddings: bool = True
    init_from: str | None = None


class TrainConfig(Table):
    seq_len: int = Field(256, ge=8)
    global_batch_tokens: int = Field(8192, ge=1)
    micro_batch: int = Field(8, ge=1)
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant", "inverse-sqrt", "wsd"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    precision: Literal["fp32", "bf16-mixed", "fp16-mixed"] = "fp32"
    eval_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(250, ge=1)

"""`[model]` and `[train]` tables for pretraining (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmforge.recipe_base import Table


class ModelConfig(Table):
    """`[model]`: a decoder-only transformer built from a transformers config.

    `llama`: RMSNorm, SwiGLU, rotary, grouped-query attention. `gpt-neox`: rotary on `rotary_pct` of each
    head's dims and parallel attention + MLP (Black et al. 2022, GPT-NeoX-20B §2.1). `gpt2`: learned
    positions, LayerNorm, GELU MLP. With `init_from` (a local HF causal-LM directory) the shape comes from
    that checkpoint and the shape keys must be left out.
    """

    arch: Literal["llama", "gpt-neox", "gpt2"] = "llama"
    n_layers: int = Field(4, ge=1)
    d_model: int = Field(256, ge=8)
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int | None = Field(None, ge=1)
    ffn_dim: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=2)
    max_seq_len: int = Field(256, ge=8)
    tie_embeddings: bool = True
    rotary_pct: float = Field(0.25, gt=0, le=1)
    rope_theta: float = Field(10000.0, gt=0)
    init_std: float = Field(0.02, gt=0)
    init_from: str | None = None

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        shape_keys = sorted(self.model_fields_set - {"init_from"})
        if self.init_from and shape_keys:
            raise ValueError(
                f"model.init_from takes the shape from the checkpoint: leave out model.{', model.'.join(shape_keys)}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"model.n_heads = {self.n_heads} must divide model.d_model = {self.d_model}")
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise ValueError(f"model.n_kv_heads = {kv} must divide model.n_heads = {self.n_heads}")
        if kv != self.n_heads and self.arch != "llama":
            raise ValueError(
                f"model.n_kv_heads: grouped-query attention needs arch = 'llama', not {self.arch!r}"
            )
        return self


class SpikeGuardConfig(Table):
    """`[train.spike]`: loss-spike / divergence guard.

    A step whose loss is non-finite, or above the running mean of the last `window` accepted losses by
    more than `sigma` standard deviations, is a spike. `skip` drops that batch's update (as BLOOM's
    operators did by hand); `rollback` restores the last checkpoint, skips the next `skip_batches`
    batches and multiplies the LR by `lr_factor` (the PaLM recipe, Chowdhery et al. 2022 §5.1).
    """

    enabled: bool = True
    policy: Literal["skip", "rollback"] = "skip"
    sigma: float = Field(6.0, gt=0)
    window: int = Field(50, ge=2)
    min_history: int = Field(20, ge=2)
    skip_batches: int = Field(10, ge=0)
    lr_factor: float = Field(0.5, gt=0, le=1)
    max_events: int = Field(20, ge=1)


class DistributedConfig(Table):
    """`[train.distributed]`: maps onto Accelerate's plugins when launched with several processes.

    `ddp`: replicated model (Accelerate's DDP). `fsdp`: parameters sharded with FSDP2
    (`full-shard` = ZeRO-3, `shard-grad-op` = ZeRO-2).
    """

    strategy: Literal["ddp", "fsdp"] = "ddp"
    fsdp_sharding: Literal["full-shard", "shard-grad-op"] = "full-shard"


class TrainConfig(Table):
    seq_len: int = Field(256, ge=8)
    global_batch_tokens: int = Field(8192, ge=1)
    micro_batch: int = Field(8, ge=1)
    max_steps: int = Field(1000, ge=1)
    batch_ramp_tokens: int = Field(0, ge=0)
    batch_ramp_start_tokens: int | None = Field(None, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant", "inverse-sqrt", "wsd"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    decay_fraction: float = Field(0.2, gt=0, le=1)
    weight_decay: float = Field(0.1, ge=0)
    decay_embeddings: bool = False
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, ge=0)
    precision: Literal["fp32", "bf16-mixed", "fp16-mixed"] = "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    eval_every: int = Field(100, ge=1)
    eval_tokens: int = Field(65536, ge=1)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    checkpoint_minutes: float | None = Field(None, gt=0)
    keep_last: int = Field(2, ge=1)
    keep_every: int | None = Field(None, ge=1)
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    peak_flops: float | None = Field(None, gt=0)
    spike: SpikeGuardConfig = Field(default_factory=SpikeGuardConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="after")
    def _batch_fits(self) -> TrainConfig:
        if self.global_batch_tokens % self.seq_len:
            raise ValueError(
                f"train.global_batch_tokens = {self.global_batch_tokens} must be a multiple of "
                f"train.seq_len = {self.seq_len}"
            )
        rows = self.global_batch_tokens // self.seq_len
        if rows % self.micro_batch:
            raise ValueError(
                f"train.micro_batch = {self.micro_batch} must divide the global batch of {rows} sequences "
                f"(global_batch_tokens / seq_len)"
            )
        if (
            self.batch_ramp_start_tokens is not None
            and self.batch_ramp_start_tokens > self.global_batch_tokens
        ):
            raise ValueError("train.batch_ramp_start_tokens must not exceed train.global_batch_tokens")
        return self

"""`[model]` and `[train]` tables for pretraining (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_serializer, model_validator

from llmforge.recipe_base import RecipePath, Table

# Keys that mean something for some architectures only; given for another one they are refused rather
# than silently ignored (llama rotates every head dimension; gpt2 has learned positions, no rotary).
ARCH_ONLY_KEYS = {
    "n_kv_heads": ("llama",),
    "rotary_pct": ("gpt-neox",),
    "rope_theta": ("llama", "gpt-neox"),
}
# Upper bounds on sizes: far above any published model, low enough that a typo (1e9) is refused before
# a model is allocated (Gemma's 262k vocabulary, Llama 3 405B's 126 layers × 16,384 width).
MAX_VOCAB = 1 << 22
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_CONTEXT = 1 << 22


class _FiniteTable(Table):
    """A table whose floats must be finite: `lr = inf` or `nan` is refused, not trained with."""

    model_config = ConfigDict(**{**Table.model_config, "allow_inf_nan": False})


class ModelConfig(_FiniteTable):
    """`[model]`: a decoder-only transformer built from a transformers config.

    `llama`: RMSNorm, SwiGLU, rotary, grouped-query attention. `gpt-neox`: rotary on `rotary_pct` of each
    head's dims and parallel attention + MLP (Black et al. 2022, GPT-NeoX-20B §2.1). `gpt2`: learned
    positions, LayerNorm, GELU MLP. `n_kv_heads`, `rotary_pct` and `rope_theta` are accepted only for the
    architectures they apply to (ARCH_ONLY_KEYS). With `init_from` (a local HF causal-LM directory) the shape comes from
    that checkpoint and the shape keys must be left out.
    """

    arch: Literal["llama", "gpt-neox", "gpt2"] = "llama"
    n_layers: int = Field(4, ge=1, le=MAX_LAYERS)
    d_model: int = Field(256, ge=8, le=MAX_WIDTH)
    n_heads: int = Field(4, ge=1, le=MAX_WIDTH)
    n_kv_heads: int | None = Field(None, ge=1, le=MAX_WIDTH)
    ffn_dim: int | None = Field(None, ge=1, le=4 * MAX_WIDTH)
    vocab_size: int | None = Field(None, ge=2, le=MAX_VOCAB)
    max_seq_len: int = Field(256, ge=8, le=MAX_CONTEXT)
    tie_embeddings: bool = True
    rotary_pct: float = Field(0.25, gt=0, le=1)
    rope_theta: float = Field(10000.0, gt=0)
    init_std: float = Field(0.02, gt=0)
    init_from: RecipePath | None = None

    @model_serializer(mode="wrap")
    def _only_keys_that_apply(self, handler):  # noqa: ANN001 - pydantic's serializer protocol
        """The resolved recipe (recipe.toml, manifests) leaves out the defaults of keys another arch uses."""
        data = handler(self)
        for key, archs in ARCH_ONLY_KEYS.items():
            if self.arch not in archs:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        shape_keys = sorted(self.model_fields_set - {"init_from"})
        if self.init_from and shape_keys:
            raise ValueError(
                f"model.init_from takes the shape from the checkpoint: leave out model.{', model.'.join(shape_keys)}"
            )
        for key, archs in ARCH_ONLY_KEYS.items():
            if key in self.model_fields_set and self.arch not in archs:
                raise ValueError(
                    f"model.{key} applies to arch = {' or '.join(map(repr, archs))} only, not {self.arch!r}; "
                    f"remove it"
                )
        if self.d_model % self.n_heads:
            raise ValueError(f"model.n_heads = {self.n_heads} must divide model.d_model = {self.d_model}")
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise ValueError(f"model.n_kv_heads = {kv} must divide model.n_heads = {self.n_heads}")
        return self


class SpikeGuardConfig(_FiniteTable):
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


class TrainConfig(_FiniteTable):
    seq_len: int = Field(256, ge=8, le=MAX_CONTEXT)
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
    keep_every: int | None = Field(None, ge=0)  # 0 or left out: no checkpoints kept besides keep_last
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    peak_flops: float | None = Field(None, gt=0)
    tokens: RecipePath | None = Field(
        None, min_length=1
    )  # tokens artifact; default <run dir>/tokens (--tokens wins)
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

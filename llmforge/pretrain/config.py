"""`[model]` and `[train]` tables for pretraining (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_serializer, model_validator

from llmforge.archs import ARCHS, family
from llmforge.recipe_base import RecipePath, Table

OBJECTIVES = ("clm", "mlm", "span-corruption")
# Upper bounds on sizes: far above any published model, low enough that a typo (1e9) is refused before
# a model is allocated (Gemma's 262k vocabulary, Llama 3 405B's 126 layers × 16,384 width).
MAX_VOCAB = 1 << 22
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_CONTEXT = 1 << 22


class _FiniteTable(Table):
    """A table whose floats must be finite: `lr = inf` or `nan` is refused, not trained with."""

    model_config = ConfigDict(**{**Table.model_config, "allow_inf_nan": False})


class MaskingConfig(_FiniteTable):
    """`[model.mlm]`: which tokens a masked-LM step predicts (Devlin et al. 2019, BERT §3.1: 15%, of which 80%
    become the mask token, 10% a random token, 10% stay). With `whole_word` every piece of a selected word is
    predicted; transformers' collator then replaces all of them by the mask token (no random or kept ones)."""

    probability: float = Field(0.15, gt=0, lt=1)
    mask_fraction: float = Field(0.8, ge=0, le=1)
    random_fraction: float = Field(0.1, ge=0, le=1)
    whole_word: bool = False

    @model_validator(mode="after")
    def _fractions(self) -> MaskingConfig:
        if self.mask_fraction + self.random_fraction > 1:
            raise ValueError("model.mlm.mask_fraction + model.mlm.random_fraction must not exceed 1")
        if self.whole_word and (self.mask_fraction != 1 or self.random_fraction != 0):
            raise ValueError(
                "model.mlm.whole_word = true replaces every selected piece by the mask token: set "
                "model.mlm.mask_fraction = 1.0 and model.mlm.random_fraction = 0.0"
            )
        return self


class SpanConfig(_FiniteTable):
    """`[model.span]`: T5's span corruption (Raffel et al. 2020 §3.1.4: 15% noise, mean span length 3)."""

    noise_density: float = Field(0.15, gt=0, lt=1)
    mean_span_length: float = Field(3.0, ge=1)


class ModelConfig(_FiniteTable):
    """`[model]`: a transformer built from a transformers config; `arch` picks the family (llmforge/archs).

    Decoders for next-token prediction (`objective = "clm"`): `llama` (RMSNorm, SwiGLU, rotary, grouped-query
    attention), `gpt-neox` (rotary on `rotary_pct` of each head's dims, parallel attention + MLP; Black et al.
    2022), `gpt2` (learned positions, LayerNorm, GELU). `bert`: an encoder for masked LM (`"mlm"`, options in
    `[model.mlm]`). `t5`: a T5 v1.1 encoder–decoder for span corruption (`"span-corruption"`, options in
    `[model.span]`; `n_decoder_layers` defaults to `n_layers`). `objective` defaults to the family's; keys
    some families take only (`n_kv_heads`, `rotary_pct`, `rope_theta`, `n_decoder_layers`, ...) are refused
    for the others. With `init_from` (a local HF model directory) the shape comes from that checkpoint and
    the shape keys must be left out.
    """

    arch: Literal[ARCHS] = "llama"  # type: ignore[valid-type]
    objective: Literal["clm", "mlm", "span-corruption"] | None = None
    n_layers: int = Field(4, ge=1, le=MAX_LAYERS)
    n_decoder_layers: int | None = Field(None, ge=1, le=MAX_LAYERS)
    d_model: int = Field(256, ge=8, le=MAX_WIDTH)
    n_heads: int = Field(4, ge=1, le=MAX_WIDTH)
    n_kv_heads: int | None = Field(None, ge=1, le=MAX_WIDTH)
    ffn_dim: int | None = Field(None, ge=1, le=4 * MAX_WIDTH)
    vocab_size: int | None = Field(None, ge=2, le=MAX_VOCAB)
    max_seq_len: int = Field(256, ge=8, le=MAX_CONTEXT)
    tie_embeddings: bool | None = None  # None: tied, except for t5 (v1.1 unties its head)
    # t5: relative-position buckets per head (the encoder's halves need ≥ 2 each, the decoder's stay below
    # the maximum distance of 128)
    relative_attention_buckets: int = Field(32, ge=4, le=254)
    rotary_pct: float = Field(0.25, gt=0, le=1)
    rope_theta: float = Field(10000.0, gt=0)
    init_std: float = Field(0.02, gt=0)
    init_from: RecipePath | None = None
    mlm: MaskingConfig | None = None
    span: SpanConfig | None = None

    @property
    def family(self):  # noqa: ANN201 - llmforge.archs.Family
        return family(self.arch)

    @property
    def training_objective(self) -> str:
        return self.objective or self.family.objective

    @property
    def tied(self) -> bool:
        if self.tie_embeddings is not None:
            return self.tie_embeddings
        return self.family.default_tied if self.family.encoder_decoder else True

    @property
    def masking(self) -> MaskingConfig:
        return self.mlm or MaskingConfig()

    @property
    def corruption(self) -> SpanConfig:
        return self.span or SpanConfig()

    @model_serializer(mode="wrap")
    def _only_keys_that_apply(self, handler, info):  # noqa: ANN001 - pydantic's serializer protocol
        """The resolved recipe (recipe.toml, manifests) leaves out the defaults of keys another arch uses;
        with defaults (manifests, resume checks) it names the tying and FFN width the model is built with."""
        data = handler(self)
        if not info.exclude_unset and not self.init_from:
            data["tie_embeddings"] = self.tied
            data["ffn_dim"] = self.ffn_dim or self.family.default_ffn(self.d_model)
        for key in arch_only_keys():
            if key not in self.family.arch_keys:
                data.pop(key, None)
        for key in ("objective", "mlm", "span", "tie_embeddings", "n_decoder_layers"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        shape_keys = sorted(self.model_fields_set - {"init_from", "arch", "objective", "mlm", "span"})
        if self.init_from and shape_keys:
            raise ValueError(
                f"model.init_from takes the shape from the checkpoint: leave out model.{', model.'.join(shape_keys)}"
            )
        for key, archs in arch_only_keys().items():
            if key in self.model_fields_set and self.arch not in archs:
                raise ValueError(
                    f"model.{key} applies to arch = {' or '.join(map(repr, archs))} only, not {self.arch!r}; "
                    f"remove it"
                )
        trains = self.family.objective
        if self.objective is not None and self.objective != trains:
            users = [a for a in ARCHS if family(a).objective == self.objective]
            raise ValueError(
                f"model.objective = {self.objective!r} does not fit arch = {self.arch!r}, which trains with "
                f"{trains!r}; {self.objective!r} needs arch = {' or '.join(map(repr, users))}"
            )
        for table, objective in (("mlm", "mlm"), ("span", "span-corruption")):
            if getattr(self, table) is not None and self.training_objective != objective:
                raise ValueError(
                    f"[model.{table}] configures objective {objective!r}; this model trains with "
                    f"{self.training_objective!r}: remove the table"
                )
        if not self.tied and not self.family.untied_allowed:
            raise ValueError(f"model.tie_embeddings = false: arch {self.arch!r} has a tied output layer only")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.n_heads = {self.n_heads} must divide model.d_model = {self.d_model}")
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise ValueError(f"model.n_kv_heads = {kv} must divide model.n_heads = {self.n_heads}")
        return self


def arch_only_keys() -> dict[str, tuple[str, ...]]:
    """Recipe keys some families take only → those families (from each family's `arch_keys`)."""
    keys: dict[str, list[str]] = {}
    for arch in ARCHS:
        for key in family(arch).arch_keys:
            keys.setdefault(key, []).append(arch)
    return {k: tuple(v) for k, v in keys.items()}


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
    report_to: (
        Literal["none", "tensorboard", "wandb", "mlflow"] | list[Literal["tensorboard", "wandb", "mlflow"]]
    ) = "none"
    tracker_tags: list[str] = Field(default_factory=list)  # W&B tags / MLflow tags (a sweep adds its ids)
    tracker_group: str | None = Field(None, min_length=1)  # W&B group: the runs of one sweep or ablation
    peak_flops: float | None = Field(None, gt=0)
    tokens: RecipePath | None = Field(
        None, min_length=1
    )  # tokens artifact; default <run dir>/tokens (--tokens wins)
    spike: SpikeGuardConfig = Field(default_factory=SpikeGuardConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @property
    def trackers(self) -> tuple[str, ...]:
        """The Accelerate trackers `report_to` names ("none" or [] = none)."""
        if isinstance(self.report_to, str):
            return () if self.report_to == "none" else (self.report_to,)
        return tuple(dict.fromkeys(self.report_to))

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

"""The shape of a transformer and the base class of a model family (no torch, no transformers here).

Training FLOPs per token follow Chowdhery et al. 2022 ("PaLM", Appendix B): 6·N + 12·L·T·d_attn, where N counts
every parameter that takes part in the forward pass except the lookup tables (token, position and token-type
embeddings; T5's relative-position biases), with the output projection counted even when it is tied, and the
second term is attention's QKᵀ and AV products (the causal mask is not discounted, as there). The `matmul` entry
leaves out the norm gains and biases too: it is what a FLOP counter that sees only matrix products measures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmforge.console import UserError

# Shape fields that are also recipe keys of some families only (Family.arch_keys).
ARCH_FIELDS = ("n_kv_heads", "n_decoder_layers", "relative_attention_buckets")


@dataclass(frozen=True)
class Shape:
    """The sizes of one model. `seq_len` is the training sequence (the encoder input for t5); `context` the
    position-table size (gpt2 wpe, bert position embeddings, the rotary families' max_position_embeddings)."""

    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int
    seq_len: int
    tied: bool
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    context: int | None = None
    n_decoder_layers: int | None = None  # t5 only; None = n_layers
    target_len: int | None = None  # t5 only: decoder tokens per example; None = seq_len
    relative_attention_buckets: int | None = None  # t5 only; None = 32

    def __post_init__(self) -> None:
        fam = _family(self.arch)
        for name in ("n_layers", "d_model", "n_heads", "vocab_size", "seq_len"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} = {getattr(self, name)}: expected a positive integer")
        for name in ARCH_FIELDS + ("ffn_dim", "context", "target_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} = {value}: expected a positive integer")
        for name in ARCH_FIELDS:
            if getattr(self, name) is not None and name not in fam.arch_keys:
                raise UserError(f"{name} applies to {_takers(name)} only, not arch {self.arch!r}")
        if not self.tied and not fam.untied_allowed:
            raise UserError(
                f"arch {self.arch!r}: its output head is the token embeddings and cannot be untied "
                f"(tie_embeddings = true, --tied)"
            )
        if self.target_len is not None and not fam.encoder_decoder:
            raise UserError(f"target_len applies to encoder-decoder archs only, not arch {self.arch!r}")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model = {self.d_model}: not divisible by n_heads = {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise UserError(f"n_heads = {self.n_heads}: not divisible by n_kv_heads = {self.kv_heads}")
        if self.context is not None and self.context < self.seq_len:
            raise UserError(f"seq_len = {self.seq_len}: longer than the context of {self.context} positions")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        return self.ffn_dim or _family(self.arch).default_ffn(self.d_model)

    @property
    def positions(self) -> int:
        return self.context or self.seq_len

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def targets(self) -> int:
        return self.target_len or self.seq_len


class Family:
    """One model family: its transformers config, module names, and exact parameter and FLOP counts.

    A subclass lives in its own module of `llmforge.archs` and registers one instance there as `FAMILY`.
    Decoder-only and encoder-only families describe their stack with `_layer` and `_outside`; encoder-decoder
    ones override `param_counts` and `flops_per_token`. `build` is where a family fixes up what transformers
    cannot express from a config alone (t5's untied head).
    """

    name: str
    objective: str
    model_type: str
    auto_class: str
    layer_classes: tuple[str, ...]
    residual_projections: tuple[str, ...]
    default_vocab: int
    default_tied: bool
    arch_keys: frozenset[str] = frozenset()
    encoder_decoder: bool = False
    untied_allowed: bool = True

    def default_ffn(self, d_model: int) -> int:
        return 4 * d_model

    def param_counts(self, s: Shape) -> dict[str, int]:
        """Parameters by part; `total` equals `sum(p.numel() for p in model.parameters())` of the HF model.
        `vectors` (norm gains and biases) is the part a FLOP counter does not see; `non_embedding` leaves out
        the lookup tables and an untied output head (Kaplan et al. 2020, §2.1)."""
        layer, layer_vectors = self._layer(s)
        outside = dict(self._outside(s))
        outside_vectors = outside.pop("vectors")
        lookups = sum(v for k, v in outside.items() if k.endswith("_embedding"))
        layers = s.n_layers * layer
        lm_head = 0 if s.tied else s.vocab_size * s.d_model
        total = layers + sum(outside.values()) + lm_head
        return {
            "total": total,
            "non_embedding": total - lookups - lm_head,
            "layers": layers,
            "per_layer": layer,
            "lm_head": lm_head,
            **outside,
            "vectors": s.n_layers * layer_vectors + outside_vectors,
        }

    def flops_per_token(self, s: Shape) -> dict[str, float]:
        """Training (forward + backward) FLOPs per token, PaLM Appendix B (see the module docstring): `train` =
        `dense` + `attention`, `forward` a third of it, `matmul` = `train` less 6 per norm gain and bias."""
        counts = self.param_counts(s)
        dense = 6 * (counts["non_embedding"] + s.vocab_size * s.d_model)
        attention = 12 * s.n_layers * s.seq_len * s.n_heads * s.head_dim
        return flops_breakdown(dense, attention, 6 * counts["vectors"])

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        """The transformers PretrainedConfig (SDPA, no dropout). `options` holds the arch-only recipe values
        (rope_theta, rotary_pct, relative_attention_buckets, ...); a missing one takes the family default and
        one this family does not read is ignored (the recipe validator refuses it)."""
        raise NotImplementedError

    def build(self, config: Any, **kwargs: Any) -> Any:
        """A freshly initialised model for `config` (the auto class's `from_config`; kwargs go to it). A family
        whose transformers class cannot express its shape from the config alone adjusts the model here."""
        import transformers

        return getattr(transformers, self.auto_class).from_config(config, **kwargs)

    def _layer(self, s: Shape) -> tuple[int, int]:
        """(parameters, of which norm gains and biases) of one block."""
        raise NotImplementedError

    def _outside(self, s: Shape) -> dict[str, int]:
        """Parameters outside the blocks and the untied head: `*_embedding` lookup tables, `final_norm`, any
        other part by name, and `vectors` (the norm gains and biases among them)."""
        raise NotImplementedError


def biased_block(s: Shape) -> tuple[int, int]:
    """(parameters, of which biases and LayerNorm gains/biases) of a block with biased q/k/v and output
    projections, a two-matrix MLP and two LayerNorms (GPT-2, GPT-NeoX and BERT blocks all hold these)."""
    d, kv_dim, f = s.d_model, s.kv_heads * s.head_dim, s.ffn
    vectors = (d + 2 * kv_dim) + d + (f + d) + 4 * d
    return d * (d + 2 * kv_dim) + d * d + 2 * d * f + vectors, vectors


def swiglu_ffn(d_model: int, multiple_of: int = 256) -> int:
    """A gated FFN's width 2/3·4·d rounded up to a multiple of 256, so it holds as many weights as a 4·d
    two-matrix MLP (Shazeer 2020, GLU variants; Touvron et al. 2023, LLaMA §2.2: 11,008 for d = 4,096)."""
    return multiple_of * math.ceil(int(8 * d_model / 3) / multiple_of)


def flops_breakdown(dense: float, attention: float, vectors: float) -> dict[str, float]:
    """The flops_per_token entries from 6·N (`dense`), attention, and the part of 6·N due to vectors."""
    train = dense + attention
    return {
        "train": float(train),
        "dense": float(dense),
        "attention": float(attention),
        "forward": train / 3,
        "matmul": float(train - vectors),
    }


def _family(arch: str) -> Family:
    from llmforge.archs import family

    return family(arch)


def _takers(key: str) -> str:
    from llmforge.archs import FAMILIES

    return " or ".join(repr(name) for name, fam in FAMILIES.items() if key in fam.arch_keys)

"""Build the model of `[model]` from its family in the registry (llmforge/archs), initialise it, and size it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmforge.archs import Shape, family, family_of_model_type
from llmforge.pretrain.config import ModelConfig, arch_only_keys

if TYPE_CHECKING:
    import torch


def shape_of(cfg: ModelConfig, vocab_size: int, seq_len: int, target_len: int | None = None) -> Shape:
    """The registry's shape of a `[model]` table trained at `seq_len` (t5: `target_len` decoder tokens)."""
    return Shape(
        arch=cfg.arch,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        vocab_size=vocab_size,
        seq_len=seq_len,
        tied=cfg.tied,
        n_kv_heads=cfg.n_kv_heads,
        ffn_dim=cfg.ffn_dim,
        context=cfg.max_seq_len,
        n_decoder_layers=cfg.n_decoder_layers,
        target_len=target_len,
        relative_attention_buckets=options_of(cfg).get("relative_attention_buckets"),
    )


def shape_of_config(config: Any, seq_len: int, target_len: int | None = None, *, tied: bool) -> Shape:
    """The registry's shape of a built model's transformers config (an `init_from` checkpoint's too); `tied`:
    whether its head shares the input embedding (T5's config says so even for v1.1's untied head)."""
    fam = family_of_model_type(config.model_type)
    ffn = config.n_inner if config.model_type == "gpt2" else None
    ffn = ffn or getattr(config, "intermediate_size", None) or getattr(config, "d_ff", None)
    takes = fam.arch_keys
    return Shape(
        arch=fam.name,
        n_layers=config.num_hidden_layers,
        d_model=config.hidden_size,
        n_heads=config.num_attention_heads,
        vocab_size=config.vocab_size,
        seq_len=seq_len,
        tied=tied,
        n_kv_heads=getattr(config, "num_key_value_heads", None) if "n_kv_heads" in takes else None,
        ffn_dim=ffn,
        context=getattr(config, "max_position_embeddings", None),
        n_decoder_layers=getattr(config, "num_decoder_layers", None) if "n_decoder_layers" in takes else None,
        target_len=target_len if fam.encoder_decoder else None,
        relative_attention_buckets=(
            getattr(config, "relative_attention_num_buckets", None)
            if "relative_attention_buckets" in takes
            else None
        ),
    )


def options_of(cfg: ModelConfig) -> dict[str, Any]:
    """The arch-only recipe values this family takes (rope_theta, rotary_pct, ...)."""
    return {key: getattr(cfg, key) for key in arch_only_keys() if key in cfg.family.arch_keys}


def build_model(
    cfg: ModelConfig, vocab_size: int, eos_id: int, seed: int, *, pad_id: int | None = None
) -> torch.nn.Module:
    """A freshly initialised model of `cfg`'s family, identical on every rank for the same seed. BOS is EOS
    (checkpoint.py); PAD defaults to EOS."""
    import torch

    fam = family(cfg.arch)
    config = fam.hf_config(
        shape_of(cfg, vocab_size, cfg.max_seq_len),
        bos_id=eos_id,
        eos_id=eos_id,
        pad_id=eos_id if pad_id is None else pad_id,
        init_std=cfg.init_std,
        options=options_of(cfg),
    )
    torch.manual_seed(seed)
    model = fam.build(config, attn_implementation="sdpa")
    init_weights(model, cfg.init_std, fam.residual_projections, layers_of(config))
    return model


def load_model(path: str) -> torch.nn.Module:
    """A model from a local Hugging Face directory (continued pretraining), in fp32 with SDPA."""
    import json
    from pathlib import Path

    import torch
    import transformers

    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type", "")
    auto = getattr(transformers, family_of_model_type(model_type).auto_class)
    return auto.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")


def layers_of(config: Any) -> int:
    """Residual blocks a signal passes (encoder plus decoder for encoder–decoders)."""
    return config.num_hidden_layers + (getattr(config, "num_decoder_layers", 0) or 0)


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward (transformers ≥ 5.x renamed the method)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def init_weights(model: torch.nn.Module, std: float, residual: tuple[str, ...], n_layers: int) -> None:
    """N(0, std) for matrices and embeddings, std/√(2L) for residual output projections (Radford et al.
    2019, GPT-2 §2.3; Shoeybi et al. 2019, Megatron-LM §3), ones/zeros for norms and biases."""
    import torch

    with torch.no_grad():
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.zero_()
            if not isinstance(weight, torch.nn.Parameter):
                continue
            if weight.dim() == 1:  # LayerNorm / RMSNorm gain
                weight.fill_(1.0)
            elif name.endswith(residual):
                weight.normal_(0.0, std / math.sqrt(2 * n_layers))
            else:
                weight.normal_(0.0, std)
    if model.config.tie_word_embeddings:
        model.tie_weights()


@dataclass(frozen=True)
class ModelSize:
    params: int
    non_embedding_params: int
    flops_per_token: float


def model_size(model: torch.nn.Module, seq_len: int, target_len: int | None = None) -> ModelSize:
    """Parameter counts and training FLOPs per (encoder input) token, from the family's formulas
    (llmforge/archs: 6·N + attention, PaLM App. B). MFU counts matrix products only (`matmul`: norm gains and
    biases left out, what a FLOP counter measures); `params` is counted on the built model."""
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    shape = shape_of_config(model.config, seq_len, target_len, tied=tied)
    fam = family(shape.arch)
    counts = fam.param_counts(shape)
    return ModelSize(
        params=sum(p.numel() for p in model.parameters()),
        non_embedding_params=counts["non_embedding"],
        flops_per_token=float(fam.flops_per_token(shape)["matmul"]),
    )

"""Build the decoder from a transformers config, initialise it, and count its parameters and FLOPs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmforge.pretrain.config import ModelConfig

if TYPE_CHECKING:
    import torch

# Output projections that write into the residual stream, per transformers model type.
RESIDUAL_PROJECTIONS = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt_neox": ("attention.dense", "mlp.dense_4h_to_h"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
}


def llama_ffn_dim(d_model: int, multiple_of: int = 64) -> int:
    """SwiGLU hidden size 2/3·4d rounded up (Touvron et al. 2023, LLaMA §2.2; Shazeer 2020)."""
    hidden = int(2 * 4 * d_model / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def hf_config(cfg: ModelConfig, vocab_size: int, eos_id: int) -> Any:
    """The transformers config for `cfg` (SDPA attention; the KV cache stays on for generation, training
    passes use_cache=False)."""
    common = dict(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id)
    if cfg.arch == "llama":
        from transformers import LlamaConfig

        config = LlamaConfig(
            hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads or cfg.n_heads,
            intermediate_size=cfg.ffn_dim or llama_ffn_dim(cfg.d_model),
            max_position_embeddings=cfg.max_seq_len,
            tie_word_embeddings=cfg.tie_embeddings,
            initializer_range=cfg.init_std,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
            **common,
        )
    elif cfg.arch == "gpt-neox":
        from transformers import GPTNeoXConfig

        config = GPTNeoXConfig(
            hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            intermediate_size=cfg.ffn_dim or 4 * cfg.d_model,
            max_position_embeddings=cfg.max_seq_len,
            tie_word_embeddings=cfg.tie_embeddings,
            use_parallel_residual=True,
            initializer_range=cfg.init_std,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": cfg.rope_theta,
                "partial_rotary_factor": cfg.rotary_pct,
            },
            **common,
        )
    else:
        from transformers import GPT2Config

        config = GPT2Config(
            n_embd=cfg.d_model,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_inner=cfg.ffn_dim or 4 * cfg.d_model,
            n_positions=cfg.max_seq_len,
            tie_word_embeddings=cfg.tie_embeddings,
            initializer_range=cfg.init_std,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    config._attn_implementation = "sdpa"
    return config


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int, seed: int) -> torch.nn.Module:
    """A freshly initialised causal LM, identical on every rank for the same seed."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(cfg, vocab_size, eos_id), attn_implementation="sdpa")
    init_weights(model, cfg.init_std)
    return model


def load_model(path: str) -> torch.nn.Module:
    """A causal LM from a local Hugging Face directory (continued pretraining), in fp32 with SDPA."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward (transformers ≥ 5.x renamed the method)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def init_weights(model: torch.nn.Module, std: float) -> None:
    """N(0, std) for matrices and embeddings, std/√(2L) for residual output projections (Radford et al.
    2019, GPT-2 §2.3; Shoeybi et al. 2019, Megatron-LM §3), ones/zeros for norms and biases."""
    import torch

    n_layers = model.config.num_hidden_layers
    residual = RESIDUAL_PROJECTIONS[model.config.model_type]
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


def model_size(model: torch.nn.Module, seq_len: int) -> ModelSize:
    """Parameter counts and training FLOPs per token.

    FLOPs/token = 6·(weights of every matmul, output head included, embedding lookups excluded)
    + 6·2·L·d_attn·T for the attention scores and weighted sum (Chowdhery et al. 2022, PaLM App. B:
    6N + 12·L·H·Q·T; the causal mask is not discounted, as there).
    Non-embedding parameters leave out token and position embeddings and an untied output head
    (Kaplan et al. 2020 §2.1).
    """
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()
    positions = model.transformer.wpe.weight.numel() if config.model_type == "gpt2" else 0
    head = model.get_output_embeddings().weight
    untied_head = 0 if config.tie_word_embeddings else head.numel()
    matmul_params = params - embeddings - positions + (head.numel() if config.tie_word_embeddings else 0)
    matmul_params -= sum(p.numel() for n, p in model.named_parameters() if p.dim() == 1)
    d_attn = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    attention = 12 * config.num_hidden_layers * d_attn * seq_len
    return ModelSize(
        params=params,
        non_embedding_params=params - embeddings - positions - untied_head,
        flops_per_token=float(6 * matmul_params + attention),
    )

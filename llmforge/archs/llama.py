"""LLaMA (Touvron et al. 2023): RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention, no biases.

LLaMA-7B (32 × 4,096, FFN 11,008, vocab 32,000, untied) has 6,738,415,616 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmforge.archs.base import Family, Shape, swiglu_ffn

ROPE_THETA = 10000.0


class Llama(Family):
    name = "llama"
    objective = "clm"
    model_type = "llama"
    auto_class = "AutoModelForCausalLM"
    layer_classes = ("LlamaDecoderLayer",)
    residual_projections = ("self_attn.o_proj", "mlp.down_proj")
    default_vocab = 32000
    default_tied = False
    arch_keys = frozenset({"n_kv_heads", "rope_theta"})

    def default_ffn(self, d_model: int) -> int:
        return swiglu_ffn(d_model)

    def _layer(self, s: Shape) -> tuple[int, int]:
        d, kv_dim = s.d_model, s.kv_heads * s.head_dim
        attention = d * (d + 2 * kv_dim) + d * d  # q, k, v, o without biases
        mlp = 3 * d * s.ffn  # gate, up, down
        return attention + mlp + 2 * d, 2 * d  # two RMSNorm gains

    def _outside(self, s: Shape) -> dict[str, int]:
        d = s.d_model
        return {"token_embedding": s.vocab_size * d, "position_embedding": 0, "final_norm": d, "vectors": d}

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        from transformers import LlamaConfig

        config = LlamaConfig(
            vocab_size=s.vocab_size,
            hidden_size=s.d_model,
            num_hidden_layers=s.n_layers,
            num_attention_heads=s.n_heads,
            num_key_value_heads=s.kv_heads,
            intermediate_size=s.ffn,
            max_position_embeddings=s.positions,
            tie_word_embeddings=s.tied,
            initializer_range=init_std,
            rope_parameters={"rope_type": "default", "rope_theta": options.get("rope_theta", ROPE_THETA)},
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        config._attn_implementation = "sdpa"
        return config


FAMILY = Llama()

"""GPT-2 (Radford et al. 2019): learned positions, pre-LayerNorm, GELU MLP, biased projections, tied head.

GPT-2 small (12 × 768, vocab 50,257, 1,024 positions, tied) has 124,439,808 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmforge.archs.base import Family, Shape, biased_block


class GPT2(Family):
    name = "gpt2"
    objective = "clm"
    model_type = "gpt2"
    auto_class = "AutoModelForCausalLM"
    layer_classes = ("GPT2Block",)
    residual_projections = ("attn.c_proj", "mlp.c_proj")
    default_vocab = 50257
    default_tied = True

    def _layer(self, s: Shape) -> tuple[int, int]:
        return biased_block(s)

    def _outside(self, s: Shape) -> dict[str, int]:
        d = s.d_model
        return {
            "token_embedding": s.vocab_size * d,
            "position_embedding": s.positions * d,
            "final_norm": 2 * d,
            "vectors": 2 * d,
        }

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        from transformers import GPT2Config

        config = GPT2Config(
            vocab_size=s.vocab_size,
            n_embd=s.d_model,
            n_layer=s.n_layers,
            n_head=s.n_heads,
            n_inner=s.ffn,
            n_positions=s.positions,
            tie_word_embeddings=s.tied,
            initializer_range=init_std,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        config._attn_implementation = "sdpa"
        return config


FAMILY = GPT2()

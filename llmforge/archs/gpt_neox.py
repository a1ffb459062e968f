"""GPT-NeoX (Black et al. 2022, GPT-NeoX-20B §2.1): rotary positions on `rotary_pct` of each head's dims,
attention and MLP in parallel off one residual, LayerNorm, biased projections.

Pythia-160M (12 × 768, vocab 50,304, untied) has 162,322,944 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmforge.archs.base import Family, Shape, biased_block

ROPE_THETA = 10000.0
ROTARY_PCT = 0.25


class GPTNeoX(Family):
    name = "gpt-neox"
    objective = "clm"
    model_type = "gpt_neox"
    auto_class = "AutoModelForCausalLM"
    layer_classes = ("GPTNeoXLayer",)
    residual_projections = ("attention.dense", "mlp.dense_4h_to_h")
    default_vocab = 50304
    default_tied = False
    arch_keys = frozenset({"rotary_pct", "rope_theta"})

    def _layer(self, s: Shape) -> tuple[int, int]:
        return biased_block(s)

    def _outside(self, s: Shape) -> dict[str, int]:
        d = s.d_model
        return {
            "token_embedding": s.vocab_size * d,
            "position_embedding": 0,
            "final_norm": 2 * d,
            "vectors": 2 * d,
        }

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        from transformers import GPTNeoXConfig

        config = GPTNeoXConfig(
            vocab_size=s.vocab_size,
            hidden_size=s.d_model,
            num_hidden_layers=s.n_layers,
            num_attention_heads=s.n_heads,
            intermediate_size=s.ffn,
            max_position_embeddings=s.positions,
            tie_word_embeddings=s.tied,
            use_parallel_residual=True,
            initializer_range=init_std,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": options.get("rope_theta", ROPE_THETA),
                "partial_rotary_factor": options.get("rotary_pct", ROTARY_PCT),
            },
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        config._attn_implementation = "sdpa"
        return config


FAMILY = GPTNeoX()

"""BERT (Devlin et al. 2019) as a masked LM, trained RoBERTa-style (Liu et al. 2019: MLM only, no next-sentence
task, no pooler): learned positions, post-LayerNorm blocks, GELU MLP, biased projections, and the MLM head
(dense + GELU + LayerNorm, then a decoder tied to the token embeddings with its own bias).

BERT-base as a masked LM (12 × 768, FFN 3,072, vocab 30,522, 512 positions) has 109,514,298 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmforge.archs.base import Family, Shape, biased_block

TYPE_VOCAB = 2  # segment A / B embeddings, as BERT's checkpoints have them


class Bert(Family):
    name = "bert"
    objective = "mlm"
    model_type = "bert"
    auto_class = "AutoModelForMaskedLM"
    layer_classes = ("BertLayer",)
    residual_projections = ("attention.output.dense", "output.dense")
    default_vocab = 30522
    default_tied = True
    # Untied, transformers' BertForMaskedLM keeps the head's old bias as a parameter no loss reaches (DDP
    # refuses such a model), so the decoder stays tied as in BERT.
    untied_allowed = False

    def _layer(self, s: Shape) -> tuple[int, int]:
        return biased_block(s)

    def _outside(self, s: Shape) -> dict[str, int]:
        d, vocab = s.d_model, s.vocab_size
        return {
            "token_embedding": vocab * d,
            "position_embedding": s.positions * d,
            "token_type_embedding": TYPE_VOCAB * d,
            "embedding_norm": 2 * d,
            "final_norm": 0,  # post-LN: each block ends in its own LayerNorm
            "mlm_transform": d * d + d + 2 * d,
            "lm_head_bias": vocab,
            "vectors": 2 * d + 3 * d + vocab,
        }

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        from transformers import BertConfig

        config = BertConfig(
            vocab_size=s.vocab_size,
            hidden_size=s.d_model,
            num_hidden_layers=s.n_layers,
            num_attention_heads=s.n_heads,
            intermediate_size=s.ffn,
            hidden_act="gelu",
            max_position_embeddings=s.positions,
            type_vocab_size=TYPE_VOCAB,
            hidden_dropout_prob=0.0,  # deterministic, and equal under DDP
            attention_probs_dropout_prob=0.0,
            initializer_range=init_std,
            tie_word_embeddings=True,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        config._attn_implementation = "sdpa"
        return config


FAMILY = Bert()

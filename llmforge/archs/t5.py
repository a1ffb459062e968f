"""T5 v1.1 (Raffel et al. 2020, with the v1.1 changes: gated-GELU FFN, no dropout in pretraining, an output head
of its own): an encoder-decoder with RMS-style LayerNorms (gain only), no biases, relative-position buckets shared
by the blocks of each stack (held by the first block), and d_kv = d_model / n_heads.

Parameters: the shared token embedding; per encoder block q, k, v, o, wi_0, wi_1, wo and two norms; per decoder
block self- and cross-attention (q, k, v, o each), the FFN and three norms; the relative-attention bias of the
first encoder and the first decoder block; each stack's final norm; the head when untied. T5 v1.1-base (12 + 12 ×
768, FFN 2,048, 12 heads, vocab 32,128, untied) has 247,577,856 parameters.

FLOPs of one example of L_in encoder and L_tgt decoder tokens, 6·N + attention as for the decoders (Chowdhery et
al. 2022, PaLM App. B): each weight costs 6 per token it is applied to, which is L_in for the encoder and for the
cross-attention's k and v (they read the encoder output), L_tgt for the rest of the decoder and the head;
attention 12·d_attn·(L_enc·L_in² + L_dec·L_tgt² + L_dec·L_tgt·L_in) (encoder self, decoder self, cross; no causal
discount). Per token means per encoder input token: the example's FLOPs / L_in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmforge.archs.base import Family, Shape, flops_breakdown, swiglu_ffn

RELATIVE_BUCKETS = 32
RELATIVE_MAX_DISTANCE = 128


class T5(Family):
    name = "t5"
    objective = "span-corruption"
    model_type = "t5"
    auto_class = "AutoModelForSeq2SeqLM"
    layer_classes = ("T5Block",)
    residual_projections = ("SelfAttention.o", "EncDecAttention.o", "DenseReluDense.wo")
    default_vocab = 32128  # 32,000 SentencePiece pieces + 100 sentinels, padded to a multiple of 128
    default_tied = False
    arch_keys = frozenset({"n_decoder_layers", "relative_attention_buckets"})
    encoder_decoder = True

    def default_ffn(self, d_model: int) -> int:
        """Gated FFN width as for LLaMA; gives T5 v1.1-base's 2,048 and -large's 2,816."""
        return swiglu_ffn(d_model)

    def param_counts(self, s: Shape) -> dict[str, int]:
        d, vocab = s.d_model, s.vocab_size
        attention = 4 * d * s.n_heads * s.head_dim
        ffn = 3 * d * s.ffn
        encoder_block, decoder_block = attention + ffn + 2 * d, 2 * attention + ffn + 3 * d
        encoder, decoder = s.n_layers * encoder_block, s.decoder_layers * decoder_block
        relative = 2 * buckets(s) * s.n_heads
        lm_head = 0 if s.tied else vocab * d
        total = vocab * d + relative + encoder + decoder + 2 * d + lm_head
        return {
            "total": total,
            "non_embedding": total - vocab * d - relative - lm_head,
            "token_embedding": vocab * d,
            "position_embedding": relative,  # relative-attention bias tables
            "layers": encoder + decoder,
            "per_layer": encoder_block + decoder_block,
            "encoder_layers": encoder,
            "decoder_layers": decoder,
            "per_encoder_layer": encoder_block,
            "per_decoder_layer": decoder_block,
            "lm_head": lm_head,
            "final_norm": 2 * d,
            "vectors": (2 * s.n_layers + 3 * s.decoder_layers + 2) * d,
        }

    def flops_per_token(self, s: Shape) -> dict[str, float]:
        d, d_attn, f = s.d_model, s.n_heads * s.head_dim, s.ffn
        l_in, l_tgt, enc, dec = s.seq_len, s.targets, s.n_layers, s.decoder_layers
        encoder_weights = enc * (4 * d * d_attn + 3 * d * f + 2 * d) + d
        cross_kv = dec * 2 * d * d_attn
        decoder_weights = dec * (6 * d * d_attn + 3 * d * f + 3 * d) + d + s.vocab_size * d
        dense = 6 * ((encoder_weights + cross_kv) * l_in + decoder_weights * l_tgt)
        attention = 12 * d_attn * (enc * l_in**2 + dec * l_tgt**2 + dec * l_tgt * l_in)
        vectors = 6 * ((2 * enc + 1) * d * l_in + (3 * dec + 1) * d * l_tgt)
        per_token = flops_breakdown(dense, attention, vectors)
        return {k: v / l_in for k, v in per_token.items()}

    def hf_config(
        self, s: Shape, *, bos_id: int, eos_id: int, pad_id: int, init_std: float, options: Mapping[str, Any]
    ) -> Any:
        """T5 has no BOS (bos_id is unused) and starts decoding from PAD. `init_std` is not part of T5's config
        (its init scales each matrix by its fan-in); the trainer's own init applies it. The bucket count may come
        in `options` or in the shape; `param_counts` sees only the shape's, so put it there for exact totals."""
        from transformers import T5Config

        given = options.get("relative_attention_buckets")
        if (
            given is not None
            and s.relative_attention_buckets is not None
            and given != s.relative_attention_buckets
        ):
            raise ValueError(
                f"relative_attention_buckets = {given} in options, {s.relative_attention_buckets} in the shape"
            )
        config = T5Config(
            vocab_size=s.vocab_size,
            d_model=s.d_model,
            d_kv=s.head_dim,
            d_ff=s.ffn,
            num_layers=s.n_layers,
            num_decoder_layers=s.decoder_layers,
            num_heads=s.n_heads,
            relative_attention_num_buckets=s.relative_attention_buckets or given or RELATIVE_BUCKETS,
            relative_attention_max_distance=options.get(
                "relative_attention_max_distance", RELATIVE_MAX_DISTANCE
            ),
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            # transformers 5 reads False as T5 v1.1's unscaled decoder output and still ties the head; `build`
            # gives the head its own weights.
            tie_word_embeddings=s.tied,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            decoder_start_token_id=pad_id,
        )
        config._attn_implementation = "sdpa"
        return config

    def build(self, config: Any, **kwargs: Any) -> Any:
        """The model, with an untied head of its own when the config is v1.1-style (unscaled output)."""
        import torch

        model = super().build(config, **kwargs)
        if not config.scale_decoder_outputs:
            head = torch.empty_like(model.shared.weight).normal_(0.0, config.initializer_factor)
            model.lm_head.weight = torch.nn.Parameter(head)
            # An instance mapping without the head, so later tie_weights() calls and save_pretrained keep it.
            model._tied_weights_keys = {
                k: v for k, v in type(model)._tied_weights_keys.items() if k != "lm_head.weight"
            }
            model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)
        return model


def buckets(s: Shape) -> int:
    return s.relative_attention_buckets or RELATIVE_BUCKETS


FAMILY = T5()

"""The objective a run trains with, built from `[model]` and what the tokens artifact provides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.objectives.base import Objective
from llmforge.pretrain.config import ModelConfig


def make_objective(
    model: ModelConfig, seq_len: int, *, index: dict[str, Any], tokenizer_dir: Path | None, pad_id: int
) -> Objective:
    name = model.training_objective
    if name == "clm":
        from llmforge.objectives.clm import CausalLM

        return CausalLM()
    if name == "mlm":
        from llmforge.objectives.masking import Masker, MaskingRule
        from llmforge.objectives.mlm import MaskedLM

        m = model.masking
        rule = MaskingRule(m.probability, m.mask_fraction, m.random_fraction, m.whole_word)
        if tokenizer_dir is None:
            raise UserError(
                "model.objective = 'mlm' masks with the tokenizer's mask token, but the tokens artifact names "
                "no tokenizer (index.json tokenizer_path); tokenize with `llmforge tokenize encode`"
            )
        try:
            return MaskedLM(Masker(tokenizer_dir, rule))
        except ValueError as e:
            raise UserError(f"model.objective = 'mlm': {tokenizer_dir}: {e}") from None
    from llmforge.objectives.span import SpanCorruptionObjective
    from llmforge.objectives.span_corruption import SpanCorruption

    s = model.corruption
    try:
        corruption = SpanCorruption(s.noise_density, s.mean_span_length)
        raw_length, _ = corruption.lengths(seq_len)
        spans = corruption.num_spans(raw_length)
    except ValueError as e:
        raise UserError(f"[model.span] with train.seq_len = {seq_len}: {e}") from None
    sentinels = list(index.get("sentinel_ids") or [])
    if len(sentinels) < spans:
        raise UserError(
            f"span corruption of train.seq_len = {seq_len} tokens makes {spans} noise spans, each needing a "
            f"sentinel token, but the tokens artifact has {len(sentinels)}; set tokenizer.special_tokens."
            f"sentinels >= {spans} and tokenize again, or lower train.seq_len or model.span.noise_density"
        )
    return SpanCorruptionObjective(
        corruption, sentinel_ids=sentinels, eos_id=int(index["eos_id"]), decoder_start_id=pad_id
    )

"""Target perplexity of an encoder-decoder on span-corruption examples (T5's pretraining objective).

Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
§3.1.4: the encoder reads the text with noise spans replaced by sentinels, the decoder predicts the sentinels
and the spans. Here the stream is cut into non-overlapping raw windows of `SpanCorruption().lengths(window)[0]`
tokens (a corrupted full window is exactly `window` encoder tokens; a shorter last window of at least 2 tokens
is scored too), and raw window k is corrupted with the seed (0, k): the same examples at every evaluation, so
checkpoints compare. The model gets `input_ids=inputs, labels=targets`, and

    target perplexity = exp(Σ NLL of the target tokens / number of target tokens)

over every target token (sentinels and the final EOS included), what the model's own `loss` averages.

Bits per byte does not apply: the targets are sentinels and EOS (no bytes) plus a random ~15% of the text,
predicted with the rest of the text in view, so an NLL per byte would not compare with a causal LM's bits per
byte over the whole text. The report gives null.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.console import UserError, track
from llmforge.eval.perplexity import Perplexity

SENTINEL = re.compile(r"<extra_id_(\d+)>")


def sentinel_ids(tokenizer: Any, model_dir: Path) -> list[int]:
    """ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order, or exit 2 when the tokenizer has none."""
    found = {int(m.group(1)): i for t, i in tokenizer.get_vocab().items() if (m := SENTINEL.fullmatch(t))}
    if not found:
        raise UserError(
            f"{model_dir}: the tokenizer has no <extra_id_N> sentinel tokens; target perplexity needs them "
            "(span corruption)"
        )
    return [found[k] for k in sorted(found)]


def raw_length(window: int) -> int:
    """Raw tokens per example, so a corrupted example is exactly `window` encoder tokens (EOS included)."""
    from llmforge.objectives.span_corruption import SpanCorruption

    try:
        return SpanCorruption().lengths(window)[0]
    except ValueError as e:
        raise UserError(f"--window {window}: {e}") from None


def examples(
    ids: np.ndarray, raw: int, sentinels: list[int], eos_id: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) of every raw window of `raw` tokens of the stream, window k corrupted with seed (0, k)."""
    from llmforge.objectives.span_corruption import SpanCorruption

    corruption = SpanCorruption()
    spans_needed = corruption.num_spans(min(raw, len(ids)))
    if spans_needed > len(sentinels):
        raise UserError(
            f"--window: its examples have {spans_needed} noise spans, the tokenizer has {len(sentinels)} "
            "sentinel tokens (<extra_id_N>); give a smaller --window"
        )
    starts = [b for b in range(0, len(ids), raw) if len(ids) - b >= 2]
    return [corruption.example(ids[b : b + raw], (0, k), sentinels, eos_id) for k, b in enumerate(starts)]


def total_target_nll(
    model: Any, pairs: list[tuple[np.ndarray, np.ndarray]], batch_size: int
) -> tuple[float, int]:
    """(Σ NLL of the target tokens in nats, number of target tokens); examples of one shape are batched."""
    import torch

    device = next(model.parameters()).device
    by_shape: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for inputs, targets in pairs:
        by_shape.setdefault((len(inputs), len(targets)), []).append((inputs, targets))
    batches = [
        group[i : i + batch_size] for group in by_shape.values() for i in range(0, len(group), batch_size)
    ]
    nll, count = 0.0, 0
    with torch.inference_mode():
        for batch in track(batches, description="target perplexity", unit="batches"):
            x = torch.tensor(np.stack([i for i, _ in batch]), dtype=torch.long, device=device)
            y = torch.tensor(np.stack([t for _, t in batch]), dtype=torch.long, device=device)
            logits = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y).logits
            nll += float(
                torch.nn.functional.cross_entropy(logits.flatten(0, 1).double(), y.flatten(), reduction="sum")
            )
            count += y.numel()
    return nll, count


def measure(
    model: Any, ids: np.ndarray, *, window: int, batch_size: int, sentinels: list[int], eos_id: int
) -> Perplexity:
    """Target perplexity of the span-corruption examples of `ids` (bits per byte: None, see the module)."""
    if len(ids) < 2:
        raise UserError(f"the text has {len(ids)} token(s); span corruption needs at least 2")
    raw = raw_length(window)
    nll, count = total_target_nll(model, examples(ids, raw, sentinels, eos_id), batch_size)
    return Perplexity.from_nll(nll, count, None, window=window, stride=raw, metric="target-perplexity")

"""Pseudo-perplexity and pseudo bits-per-byte of a masked LM on a token stream.

Salazar et al., 2020, "Masked Language Model Scoring" (ACL): each token is masked in turn and scored by the
model's probability of it given all the others,

    pseudo-perplexity    = exp(-(1/N) · Σ_i log P(w_i | W\\i))
    pseudo bits per byte = -Σ_i log P(w_i | W\\i) / (ln 2 · UTF-8 bytes of the N scored tokens)

The stream is cut into non-overlapping windows of `window` tokens (at most the model's context); each token is
scored with the context of its own window only, both sides up to the window's edges. One forward pass scores
`batch_size` copies of a window, each with one different position masked. Special tokens (the EOS between
documents, pad, mask, ...) are context but never scored, as EOS is in the causal path; they have no bytes,
so the byte sum covers exactly the scored tokens.

A pseudo-perplexity is not a perplexity (the model sees both sides of each token): compare it only with another
pseudo-perplexity, never with a causal LM's perplexity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.console import UserError, track
from llmforge.eval.perplexity import Perplexity, bytes_without

# one job: (start of the window in the stream, position of the masked token inside the window)
Job = tuple[int, int]


def mask_token_id(tokenizer: Any, model_dir: Path) -> int:
    """The id pseudo-perplexity masks with, or exit 2 when the tokenizer declares no mask token."""
    if tokenizer.mask_token_id is None:
        raise UserError(
            f"{model_dir}: the tokenizer has no mask_token; pseudo-perplexity masks each token in turn with it"
        )
    return int(tokenizer.mask_token_id)


def one_mask_jobs(ids: np.ndarray, window: int, special_ids: list[int]) -> dict[int, list[Job]]:
    """Every token to score, as a job, grouped by the length of its window (so a batch stacks evenly)."""
    scorable = ~np.isin(ids, special_ids)
    jobs: dict[int, list[Job]] = {}
    for begin in range(0, len(ids), window):
        end = min(begin + window, len(ids))
        jobs.setdefault(end - begin, []).extend((begin, int(p)) for p in np.flatnonzero(scorable[begin:end]))
    return jobs


@contextmanager
def head_at(model: Any, rows: Any, positions: Any) -> Iterator[bool]:
    """While active, the model's output projection (hidden -> vocabulary, most of a small model's FLOPs) runs
    only at (rows, positions), so `logits` come back as (batch, 1, vocab); yields False where the model has
    no output projection to hook and the logits stay whole."""
    head = model.get_output_embeddings()
    if head is None:
        yield False
        return
    handle = head.register_forward_pre_hook(lambda _, args: (args[0][rows, positions][:, None], *args[1:]))
    try:
        yield True
    finally:
        handle.remove()


def total_pseudo_nll(
    model: Any, ids: np.ndarray, window: int, batch_size: int, mask_id: int, special_ids: list[int]
) -> tuple[float, int]:
    """(Σ -log P(w_i | W\\i) in nats, number of scored tokens) over the stream `ids`."""
    import torch

    device = next(model.parameters()).device
    batches = [
        (length, group[i : i + batch_size])
        for length, group in one_mask_jobs(ids, window, special_ids).items()
        for i in range(0, len(group), batch_size)
    ]
    nll, count = 0.0, 0
    with torch.inference_mode():
        for length, batch in track(batches, description="pseudo-perplexity", unit="batches"):
            x = torch.tensor(
                np.stack([ids[b : b + length] for b, _ in batch]), dtype=torch.long, device=device
            )
            rows = torch.arange(len(batch), device=device)
            positions = torch.tensor([p for _, p in batch], dtype=torch.long, device=device)
            targets = x[rows, positions].clone()
            x[rows, positions] = mask_id
            with head_at(model, rows, positions) as hooked:
                logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
            logits = logits[:, 0] if hooked else logits[rows, positions]
            logp = torch.log_softmax(logits.double(), dim=-1)
            nll -= float(logp.gather(-1, targets[:, None]).sum())
            count += len(batch)
    return nll, count


def measure(
    model: Any,
    tokenizer: Any,
    ids: np.ndarray,
    n_bytes: int,
    *,
    window: int,
    batch_size: int,
    mask_id: int,
) -> Perplexity:
    """Pseudo-perplexity and pseudo bits per byte; `n_bytes` are the UTF-8 bytes `ids` cover."""
    special_ids = sorted(set(tokenizer.all_special_ids))
    nll, count = total_pseudo_nll(model, ids, window, batch_size, mask_id, special_ids)
    if count == 0:
        raise UserError("the text has no token to score besides special tokens; pseudo-perplexity needs one")
    scored_bytes = bytes_without(tokenizer, ids, n_bytes, np.flatnonzero(np.isin(ids, special_ids)))
    return Perplexity.from_nll(
        nll, count, scored_bytes, window=window, stride=window, metric="pseudo-perplexity"
    )

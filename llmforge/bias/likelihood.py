"""Log-likelihoods of sentences under a causal LM, computed in-process (the likelihood-scored bias probes).

Every text is scored after the token llmforge's training put before each document: documents are separated by
EOS in the token shards (DESIGN §2, `tokens`), so EOS is what the model saw before a document's first token —
the same prefix `eval.harness.make_lm` gives lm-eval (its `prefix_token_id`). The log-probability of a text is
then the sum over its tokens of log p(token | EOS, earlier tokens), the chain rule of a causal LM; it is what
StereoSet's own GPT-2 scorer computes before it normalises (Nadeem et al. 2021, code/eval_generative_models.py:
the first token scored after "<|endoftext|>").

Texts are encoded and checked first (no model call until every row fits), then scored in right-padded batches
with an attention mask, longest first, under `torch.inference_mode` with the model in eval mode. Right padding
leaves every real token at the position it has unbatched, so a text's score does not depend on which texts share
its batch (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmforge.console import UserError


def sentence_logprobs(
    loaded: Any,
    sentences: Sequence[str],
    batch_size: int,
    *,
    names: Sequence[str] | None = None,
    description: str = "scoring sentences",
) -> list[tuple[float, int]]:
    """(sum of log p over the sentence's tokens, number of tokens) for each sentence, conditioned on EOS.

    `loaded` is a `generation.loading.Loaded` (model, tokenizer, context); `names[i]` names row i in errors (a
    probe passes "file: example id"). UserError naming the row when the tokenizer cannot encode it or it does
    not fit the model's context."""
    names = _names(names, len(sentences))
    tokenizer = loaded.tokenizer
    prefix = prefix_id(tokenizer)
    rows = []
    for text, name in zip(sentences, names, strict=True):
        ids = encode(tokenizer, text, name)
        rows.append(([prefix, *ids], len(ids)))
    return score_rows(loaded, rows, batch_size, names=names, description=description)


def continuation_logprobs(
    loaded: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
    *,
    names: Sequence[str] | None = None,
    description: str = "scoring continuations",
) -> list[tuple[float, int]]:
    """(sum of log p over the continuation's tokens, number of them) for each (context, continuation), the
    context itself conditioned on EOS and not scored.

    The pair is encoded as one text and split where the context's own encoding ends, so a BPE merge across the
    boundary is not invented; whitespace ending the context moves to the continuation (" he" is one token in
    byte-level BPE, a trailing space alone is not how text is tokenized). Where the two encodings still
    disagree, the tokens from the first difference on count as continuation."""
    names = _names(names, len(pairs))
    tokenizer = loaded.tokenizer
    prefix = prefix_id(tokenizer)
    rows = []
    for (context, continuation), name in zip(pairs, names, strict=True):
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        whole = encode(tokenizer, stripped + continuation, name)
        head = tokenizer(stripped, add_special_tokens=False)["input_ids"] if stripped else []
        n_cont = len(whole) - len(head) if whole[: len(head)] == head else len(whole) - _common(whole, head)
        if n_cont <= 0:
            raise UserError(f"{name}: the continuation {continuation!r} encodes to no tokens of its own")
        rows.append(([prefix, *whole], n_cont))
    return score_rows(loaded, rows, batch_size, names=names, description=description)


def prefix_id(tokenizer: Any) -> int:
    """EOS (what precedes a document in training), else BOS for a tokenizer that declares only that."""
    for token_id in (tokenizer.eos_token_id, tokenizer.bos_token_id):
        if isinstance(token_id, int):
            return token_id
    raise UserError("the tokenizer declares neither an EOS nor a BOS token to condition the first token on")


def encode(tokenizer: Any, text: str, name: str) -> list[int]:
    """The text's token ids (no special tokens added); UserError naming the row when the tokenizer cannot encode
    it: no ids at all, or the unknown token for most of them."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"{name}: tokenizer cannot encode the data ({text!r} gives no tokens)")
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(unk, int) and 2 * sum(i == unk for i in ids) > len(ids):
        raise UserError(
            f"{name}: tokenizer cannot encode the data (most of {text!r} becomes the unknown token "
            f"{tokenizer.unk_token!r}: a tokenizer for another language or alphabet?)"
        )
    return list(ids)


def score_rows(
    loaded: Any,
    rows: Sequence[tuple[list[int], int]],
    batch_size: int,
    *,
    names: Sequence[str] | None = None,
    description: str = "scoring",
) -> list[tuple[float, int]]:
    """Sum of log p over the last `n` ids of each row (`ids[0]` is the prefix, never scored), and `n`."""
    names = _names(names, len(rows))
    context = getattr(loaded, "context", None)
    for (ids, n), name in zip(rows, names, strict=True):
        if not 0 < n < len(ids):
            raise ValueError(f"{name}: {n} scored ids in a row of {len(ids)}")
        if isinstance(context, int) and len(ids) > context:
            raise UserError(
                f"{name}: {len(ids) - 1} tokens (+1 for the EOS before it) do not fit the model's context of "
                f"{context} tokens"
            )
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: expected at least 1")
    return _score(loaded, rows, batch_size, description)


def _score(loaded: Any, rows: Sequence[tuple[list[int], int]], batch_size: int, description: str) -> list:
    import time

    import torch

    from llmforge.console import progress, rate_text

    model = loaded.model
    model.eval()
    pad = loaded.tokenizer.pad_token_id
    pad = pad if isinstance(pad, int) else rows[0][0][0] if rows else 0  # masked out: any id will do
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))  # longest first: any OOM comes at once
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    with progress(transient=True) as bar, torch.inference_mode():
        task = bar.add_task(description, total=len(rows), rate="")
        start, done = time.perf_counter(), 0
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            for i, value in zip(batch, _score_batch(model, [rows[i][0] for i in batch], pad), strict=True):
                ids, n = rows[i]
                out[i] = (float(value[len(ids) - 1 - n : len(ids) - 1].sum()), n)
            done += len(batch)
            bar.update(task, completed=done, rate=rate_text(done, time.perf_counter() - start, "rows"))
    return out


def _score_batch(model: Any, batch: list[list[int]], pad: int) -> Any:
    """Per row, log p(ids[t+1] | ids[:t+1]) for t < len(ids)-1 (a float32 tensor row, padded past the end)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, ids in enumerate(batch):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[r, : len(ids)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    return (logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1)).cpu()


def _names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"row {i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} names for {n} rows")
    return list(names)


def _common(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k

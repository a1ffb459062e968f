"""Perplexity and bits-per-byte of a causal LM on a token stream, with a sliding window.

Windows of `window` tokens start every `stride` tokens; each token is scored once, in the first window that
predicts it with the most context (the strided evaluation of the Hugging Face "Perplexity of fixed-length
models" guide; with stride = window the windows do not overlap and each window's first token goes unscored).

    perplexity    = exp(sum NLL / scored tokens)
    bits per byte = sum NLL / (ln 2 · UTF-8 bytes of the scored tokens)

Both sums run over exactly the same tokens: the targets the windows score, EOS excluded. Token 0 (and, at
stride = window, the first token of every window) is never a target, so its bytes are not counted. EOS
separates documents and has no bytes; following lm-eval's rolling log-likelihood (each document is scored
after an EOS/BOS prefix and its end is never predicted), EOS is used as context but is not a target, so its
NLL is in neither sum.

Bits per byte does not depend on the tokenizer, so models with different vocabularies compare fairly
(the reason Gao et al., 2020, "The Pile", report BPB rather than perplexity).

Masked LMs and encoder-decoders are measured in `masked_perplexity` and `target_perplexity`; every measure
returns a `Perplexity` whose `metric` names it, and `as_results` keys each measure's numbers by its own name
(`pseudo_perplexity,none`, ...) so a report never shows one measure under another's name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.console import UserError, track


@dataclass(frozen=True)
class Span:
    begin: int
    end: int
    scored: int  # the last `scored` tokens of [begin, end) are scored in this window


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    bits_per_byte: float | None  # None where it does not apply (target perplexity)
    nll_per_token: float
    tokens: int
    bytes: int | None
    window: int
    stride: int
    metric: str = "perplexity"  # a key of METRIC_PREFIX

    @classmethod
    def from_nll(
        cls,
        nll: float,
        tokens: int,
        n_bytes: int | None,
        *,
        window: int,
        stride: int,
        metric: str = "perplexity",
    ) -> Perplexity:
        """From the summed NLL (nats) of `tokens` scored tokens covering `n_bytes` UTF-8 bytes (None: no bytes)."""
        return cls(
            perplexity=math.exp(nll / tokens),
            bits_per_byte=None if n_bytes is None else nll / (math.log(2) * n_bytes),
            nll_per_token=nll / tokens,
            tokens=tokens,
            bytes=n_bytes,
            window=window,
            stride=stride,
            metric=metric,
        )


# How results.json names each measure's numbers: `<prefix>perplexity`, `<prefix>bits_per_byte`, ...
METRIC_PREFIX = {"perplexity": "", "pseudo-perplexity": "pseudo_", "target-perplexity": "target_"}


def spans(n_tokens: int, window: int, stride: int) -> list[Span]:
    """Windows over a stream of `n_tokens`; together they score tokens 1..n-1 once each (token 0 has no context)."""
    if not 0 < stride <= window:
        raise UserError(f"--stride {stride}: must be between 1 and the window ({window})")
    out, scored_to, begin = [], 1, 0
    while scored_to < n_tokens:
        end = min(begin + window, n_tokens)
        first = max(scored_to, begin + 1)
        if end > first:
            out.append(Span(begin, end, end - first))
        scored_to = max(scored_to, end)
        begin += stride
    return out


def never_scored(n_tokens: int, plan: list[Span]) -> list[int]:
    """Positions no window scores: token 0, and at stride = window the first token of every window."""
    scored = np.zeros(n_tokens, dtype=bool)
    for s in plan:
        scored[s.end - s.scored : s.end] = True
    return np.flatnonzero(~scored).tolist()


def token_bytes(tokenizer: Any, ids: np.ndarray, i: int, context: int = 8) -> int:
    """UTF-8 bytes that token `i` adds to the decoded text. A few tokens before it are decoded with it, so a
    character split across tokens is counted once and a decoder's start-of-text rule does not apply to it."""
    lo = max(0, i - context)

    def decoded(end: int) -> int:
        return len(tokenizer.decode(ids[lo:end].tolist(), skip_special_tokens=True).encode("utf-8"))

    return decoded(i + 1) - decoded(i)


def bytes_without(tokenizer: Any, ids: np.ndarray, n_bytes: int, unscored: Any) -> int:
    """The UTF-8 bytes of the scored tokens: `n_bytes` less the bytes of the tokens at the `unscored` positions."""
    return n_bytes - sum(token_bytes(tokenizer, ids, int(i)) for i in unscored)


def total_nll(
    model: Any, ids: np.ndarray, window: int, stride: int, batch_size: int, eos_id: int | None = None
) -> tuple[float, int]:
    """(sum of next-token NLL in nats, number of scored tokens) over the stream `ids`; EOS targets excluded."""
    import torch

    device = next(model.parameters()).device
    plan = spans(len(ids), window, stride)
    by_length: dict[int, list[Span]] = {}
    for s in plan:
        by_length.setdefault(s.end - s.begin, []).append(s)
    batches = [
        group[i : i + batch_size] for group in by_length.values() for i in range(0, len(group), batch_size)
    ]
    nll, count = 0.0, 0
    with torch.inference_mode():
        for batch in track(batches, description="perplexity", unit="windows"):
            x = torch.tensor(np.stack([ids[s.begin : s.end] for s in batch]), dtype=torch.long, device=device)
            logp = torch.log_softmax(model(x).logits[:, :-1].float(), dim=-1)
            targets = x[:, 1:]
            token_nll = -logp.gather(-1, targets[..., None]).squeeze(-1)
            for row, target, s in zip(token_nll, targets, batch, strict=True):
                keep = target[-s.scored :] != (-1 if eos_id is None else eos_id)
                nll += float(row[-s.scored :][keep].double().sum())
                count += int(keep.sum())
    return nll, count


def measure(
    model: Any,
    tokenizer: Any,
    ids: np.ndarray,
    n_bytes: int,
    *,
    window: int,
    stride: int,
    batch_size: int,
) -> Perplexity:
    """Perplexity and bits per byte over the scored tokens; `n_bytes` are the UTF-8 bytes `ids` cover."""
    if len(ids) < 2:
        raise UserError(f"the text has {len(ids)} token(s); perplexity needs at least 2")
    eos_id = tokenizer.eos_token_id
    nll, count = total_nll(model, ids, window, stride, batch_size, eos_id)
    if count == 0:
        raise UserError("the text has no token to score besides EOS; perplexity needs at least 2 tokens")
    unscored = never_scored(len(ids), spans(len(ids), window, stride))
    scored_bytes = bytes_without(tokenizer, ids, n_bytes, unscored)
    return Perplexity.from_nll(nll, count, scored_bytes, window=window, stride=stride)


def text_stream(tokenizer: Any, path: Path, max_tokens: int | None) -> tuple[np.ndarray, int]:
    """Token ids of a UTF-8 text file and the byte count of the text they cover."""
    if not path.is_file():
        raise UserError(f"{path}: no such text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[:max_tokens]
        return ids, len(tokenizer.decode(ids).encode("utf-8"))
    return ids, len(text.encode("utf-8"))


def tokens_stream(tokenizer: Any, path: Path, max_tokens: int | None) -> tuple[np.ndarray, int]:
    """The val split of a tokens artifact and its byte count, found by decoding each document (EOS-separated)."""
    from llmforge.artifacts import require
    from llmforge.artifacts.tokens import TokenShards

    require(path, "tokens")
    shards = TokenShards(path, "val")
    if shards.vocab_size > len(tokenizer):
        raise UserError(
            f"{path}: tokens use a vocabulary of {shards.vocab_size}, the model's tokenizer has {len(tokenizer)}"
        )
    n = len(shards) if max_tokens is None else min(max_tokens, len(shards))
    ids = shards.read(0, n)
    cuts = np.flatnonzero(ids == shards.eos_id)
    docs = np.split(ids, cuts + 1)
    n_bytes = sum(len(tokenizer.decode(d, skip_special_tokens=True).encode("utf-8")) for d in docs if len(d))
    return ids, n_bytes


def as_results(name: str, p: Perplexity, model_dir: Path) -> dict[str, Any]:
    """lm-eval-shaped results for the report artifact; the metric keys carry the measure's name."""
    prefix = METRIC_PREFIX[p.metric]
    return {
        "results": {
            name: {
                "alias": name,
                "metric": p.metric,
                f"{prefix}perplexity,none": p.perplexity,
                f"{prefix}bits_per_byte,none": p.bits_per_byte,
                f"{prefix}nll_per_token,none": p.nll_per_token,
                "tokens": p.tokens,
                "bytes": p.bytes,
            }
        },
        "config": {"model": str(model_dir.resolve()), **asdict(p)},
        "model_name": str(model_dir.resolve()),
    }

"""Compare tokenizers on held-out text: bytes per token, fertility (tokens per whitespace word),
vocabulary utilisation, unknown-token rate and the share of long tokens.

Bytes per token is the efficiency measure of Jurassic-1 (Lieber et al. 2021, §2.1: a larger vocabulary
covers the same text with fewer tokens); fertility is from Rust et al. 2021 ("How Good is Your Tokenizer?",
§3).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.artifacts import MANIFEST, TOKENS_DIR
from llmforge.artifacts.dataset import iter_documents
from llmforge.artifacts.split import is_val
from llmforge.artifacts.tokens import INDEX
from llmforge.console import UserError
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.encode import load_tokenizer_file

LONG_TOKEN_BYTES = 8
BATCH_DOCS = 256


def held_out_fraction(dataset: Path, tokenizers: list[Path], given: float | None) -> tuple[float, str]:
    """(val_fraction, where it comes from) of the held-out split to measure on: `given`, else the split of
    the tokens artifact encoded from `dataset` in its run directory, else the split our first tokenizer was
    trained with (recorded in its manifest), else the `[tokenizer]` default."""
    if given is not None:
        return given, "--val-fraction"
    tokens = dataset.parent / TOKENS_DIR
    manifest, index = _json(tokens / MANIFEST), _json(tokens / INDEX)
    encoded_from = {i.get("path") for i in manifest.get("inputs", [])}
    if str(dataset.resolve()) in encoded_from and "val_fraction" in index.get("split", {}):
        return index["split"]["val_fraction"], f"the split of {tokens}"
    for t in tokenizers:
        m = _json(t / MANIFEST)
        if m.get("kind") == "tokenizer" and isinstance(m.get("recipe", {}).get("val_fraction"), (int, float)):
            return m["recipe"]["val_fraction"], f"the split {t} was trained with"
    return TokenizerConfig.model_fields["val_fraction"].default, "the [tokenizer] default"


def _json(f: Path) -> dict[str, Any]:
    """A JSON object from `f`, or {} when it is missing or not one."""
    try:
        obj = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def held_out_texts(dataset: Path, max_bytes: int, val_fraction: float) -> tuple[list[dict], bool]:
    """(documents, held_out): the val split (the documents `train` left out) up to `max_bytes`, or every
    document with held_out False when that split is empty (val_fraction 0 or a tiny dataset)."""
    docs = list(_take(iter_documents(dataset), max_bytes, lambda d: is_val(d, val_fraction)))
    if docs:
        return docs, True
    docs = list(_take(iter_documents(dataset), max_bytes, lambda d: True))
    if not docs:
        raise UserError(f"{dataset}: no non-empty documents to compare on (empty dataset?)")
    return docs, False


def _take(docs, max_bytes: int, keep):
    total = 0
    for d in docs:
        if total >= max_bytes:
            return
        if d["text"] and keep(d):
            total += len(d["text"].encode("utf-8", "surrogatepass"))
            yield d


def tokenizer_metrics(tokenizer: Path, docs: list[dict]) -> dict[str, Any]:
    """Metrics of one tokenizer directory (ours or any Hugging Face one with tokenizer.json) on `docs`."""
    tok = load_tokenizer_file(tokenizer)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    unk_id = _unk_id(tok)
    counts: Counter[int] = Counter()
    per_source: dict[str, list[int]] = {}
    n_bytes = n_words = 0
    for i in range(0, len(docs), BATCH_DOCS):
        batch = docs[i : i + BATCH_DOCS]
        for doc, enc in zip(
            batch, tok.encode_batch_fast([d["text"] for d in batch], add_special_tokens=False), strict=True
        ):
            b = len(doc["text"].encode("utf-8", "surrogatepass"))
            counts.update(enc.ids)
            n_bytes += b
            n_words += len(doc["text"].split())
            src = per_source.setdefault(doc["source"], [0, 0])
            src[0] += b
            src[1] += len(enc.ids)
    n_tokens = sum(counts.values())
    ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    freq = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    token_bytes = np.array([_token_bytes(tok, int(i)) for i in ids], dtype=np.int64)
    return {
        "tokenizer": str(tokenizer),
        "vocab_size": vocab_size,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else None,
        "fertility": n_tokens / n_words if n_words else None,
        "vocab_utilisation": len(counts) / vocab_size,
        "unk_rate": counts.get(unk_id, 0) / n_tokens if unk_id is not None and n_tokens else 0.0,
        "long_token_share": float(freq[token_bytes >= LONG_TOKEN_BYTES].sum() / n_tokens)
        if n_tokens
        else 0.0,
        "bytes_per_token_by_source": {s: b / t if t else None for s, (b, t) in sorted(per_source.items())},
    }


def _unk_id(tok: Any) -> int | None:
    unk = getattr(tok.model, "unk_token", None)
    if isinstance(unk, str):
        return tok.token_to_id(unk)
    unk_index = getattr(tok.model, "unk_id", None)
    return unk_index if isinstance(unk_index, int) else None


def _token_bytes(tok: Any, token_id: int) -> int:
    """UTF-8 length of what one token stands for (a byte-level piece may decode to a partial character)."""
    return len(tok.decode([token_id], skip_special_tokens=False).encode("utf-8", "surrogatepass"))


def compare_tokenizers(
    tokenizers: list[Path], dataset: Path, max_bytes: int, val_fraction: float | None = None
) -> dict[str, Any]:
    """Metrics of every tokenizer on the held-out split of `dataset` (see `held_out_fraction`)."""
    val_fraction, split_from = held_out_fraction(dataset, tokenizers, val_fraction)
    docs, held_out = held_out_texts(dataset, max_bytes, val_fraction)
    return {
        "dataset": str(dataset),
        "documents": len(docs),
        "held_out": held_out,
        "val_fraction": val_fraction,
        "val_fraction_from": split_from,
        "long_token_bytes": LONG_TOKEN_BYTES,
        "tokenizers": [tokenizer_metrics(t, docs) for t in tokenizers],
    }


def plot_comparison(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["tokenizers"]
    names = [Path(r["tokenizer"]).name or r["tokenizer"] for r in rows]
    metrics = [
        ("bytes_per_token", "bytes / token (higher = shorter sequences)"),
        ("fertility", "tokens / word"),
        ("vocab_utilisation", "vocabulary used"),
        ("long_token_share", f"tokens ≥ {LONG_TOKEN_BYTES} bytes"),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, (key, title) in zip(axes, metrics, strict=True):
        ax.bar(names, [r[key] or 0 for r in rows], color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(
        f"tokenizers on {result['documents']} {sample_label(result)} documents of {Path(result['dataset']).name}"
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def sample_label(result: dict[str, Any]) -> str:
    """How to name the documents a comparison ran on."""
    return "held-out" if result["held_out"] else "(not held-out)"

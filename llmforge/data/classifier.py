"""Quality classifier: a fastText model of reference-quality text vs raw text, saved as a `classifier` artifact.

GPT-3 (Brown et al. 2020, Appendix A) trained a logistic-regression classifier with curated text (WebText,
Wikipedia, books) as positives and raw Common Crawl as negatives and kept crawl documents by its score;
LLaMA (Touvron et al. 2023, §2) did the same with a linear model on Wikipedia-referenced pages. We train a
fastText linear classifier (Joulin et al. 2017) on word unigrams and bigrams, hold out a seeded fraction of
both classes, and report precision/recall/accuracy on it.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, TIMINGS, atomic_dir, require, write_json, write_manifest
from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError, warn

MODEL_FILE = "model.bin"
REPORT = "report.json"
SCORES_PLOT = "scores.png"
POSITIVE, NEGATIVE = "__label__positive", "__label__negative"
MIN_WORDS = 5  # shorter texts (headings, stray lines) carry no signal about quality
_TOKEN = re.compile(r"\w+|[^\w\s]")
_FOLDER_FILES = (".jsonl", ".jsonl.gz", ".txt", ".md")  # what a folder input contributes


def fasttext_line(text: str) -> str:
    """One lowercased line of words and punctuation marks: fastText reads a document per line, split on spaces."""
    return " ".join(_TOKEN.findall(text.lower()))


# ------------------------------------------------------------------------------------------ inputs


def _paragraphs(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    yield from (p for p in re.split(r"\n\s*\n", text) if p.strip())


def _jsonl_texts(path: Path, text_key: str) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get(text_key), str):
                    raise UserError(f"{path}:{n}: record has no string field {text_key!r}")
                yield record[text_key]
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable JSON Lines ({e})") from None


def _file_texts(path: Path, text_key: str) -> Iterator[str]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl_texts(path, text_key)
    else:
        yield from _paragraphs(path)


def read_texts(path: str | Path, text_key: str = "text") -> Iterator[str]:
    """Texts of a `dataset` artifact, a .jsonl/.jsonl.gz file (`text_key`), any other text file (one text per
    blank-line-separated paragraph), or a folder of .jsonl/.jsonl.gz/.txt/.md files."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if (path / MANIFEST).is_file():
        require(path, "dataset")
        yield from (doc["text"] for doc in iter_documents(path))
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_FOLDER_FILES))
        for f in files:
            yield from _file_texts(f, text_key)
    else:
        yield from _file_texts(path, text_key)


def load_examples(path: str | Path, text_key: str, max_docs: int, rng: random.Random) -> list[str]:
    """fastText lines of the texts at `path` with at least MIN_WORDS words; a seeded sample of `max_docs`."""
    lines = [line for t in read_texts(path, text_key) if len((line := fasttext_line(t)).split()) >= MIN_WORDS]
    if len(lines) < 2:
        raise UserError(f"{path}: needs at least 2 texts of {MIN_WORDS}+ words, found {len(lines)}")
    return rng.sample(lines, max_docs) if len(lines) > max_docs else lines


# ------------------------------------------------------------------------------------------ model


class QualityModel:
    """A trained classifier: `score(text)` is P(reference quality)."""

    def __init__(self, model_file: str | Path):
        from fasttext.FastText import _FastText

        self._model = _FastText(str(model_file))

    @classmethod
    def load(cls, artifact: str | Path) -> QualityModel:
        require(artifact, "classifier")
        model_file = Path(artifact) / MODEL_FILE
        if not model_file.is_file():
            raise UserError(f"{artifact}: classifier artifact has no {MODEL_FILE}")
        return cls(model_file)

    def score_line(self, line: str) -> float:
        # fasttext's Python predict() calls np.array(copy=False), which NumPy 2 rejects: use the C++ binding
        for prob, label in self._model.f.predict(line, 2, 0.0, "strict"):
            if label == POSITIVE:
                return min(float(prob), 1.0)
        return 0.0

    def score(self, text: str) -> float:
        return self.score_line(fasttext_line(text))


def _metrics(pos_scores: list[float], neg_scores: list[float], threshold: float = 0.5) -> dict[str, float]:
    tp = sum(s >= threshold for s in pos_scores)
    fp = sum(s >= threshold for s in neg_scores)
    fn, tn = len(pos_scores) - tp, len(neg_scores) - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "threshold": threshold,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "accuracy": round((tp + tn) / (tp + tn + fp + fn), 4),
        "positives": len(pos_scores),
        "negatives": len(neg_scores),
    }


def _split(lines: list[str], holdout: float) -> tuple[list[str], list[str]]:
    n_test = max(1, round(len(lines) * holdout))
    return lines[n_test:], lines[:n_test]


def train_classifier(
    positive: str | Path,
    negative: str | Path,
    out: str | Path,
    *,
    text_key: str = "text",
    holdout: float = 0.1,
    epochs: int = 10,
    max_docs: int = 100_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on (positive, negative) texts, evaluate on the held-out fraction, write the artifact at `out`."""
    import fasttext

    start = time.perf_counter()
    rng = random.Random(seed)
    pos_train, pos_test = _split(load_examples(positive, text_key, max_docs, rng), holdout)
    neg_train, neg_test = _split(load_examples(negative, text_key, max_docs, rng), holdout)
    train = [f"{POSITIVE} {x}" for x in pos_train] + [f"{NEGATIVE} {x}" for x in neg_train]
    rng.shuffle(train)
    out = Path(out)
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        train_file = Path(scratch) / "train.txt"
        train_file.write_text("\n".join(train) + "\n", encoding="utf-8")
        # one thread: fastText's Hogwild updates make multi-threaded training non-deterministic.
        # 2^19 bigram buckets x 16 dims keep the model at ~35 MB (fastText's defaults make it 0.8 GB);
        # with 2^17 buckets fastText 0.9.3 stopped with "Encountered NaN" in 2 of 3 runs on the same file
        # (WikiText-2 vs Tiny Shakespeare), never with 2^19 or more.
        model, lr = _train_fasttext(fasttext, train_file, epochs, seed)
        model.save_model(str(tmp / MODEL_FILE))
        scorer = QualityModel(tmp / MODEL_FILE)
        pos_scores = [scorer.score_line(x) for x in pos_test]
        neg_scores = [scorer.score_line(x) for x in neg_test]
        report = {
            "positive": {"path": str(positive), "train_docs": len(pos_train), "heldout_docs": len(pos_test)},
            "negative": {"path": str(negative), "train_docs": len(neg_train), "heldout_docs": len(neg_test)},
            "heldout": _metrics(pos_scores, neg_scores),
            "options": {"epochs": epochs, "holdout": holdout, "max_docs": max_docs, "seed": seed, "lr": lr},
        }
        write_json(tmp / REPORT, report)
        report["seconds"] = round(time.perf_counter() - start, 2)
        write_json(tmp / TIMINGS, {"seconds": report["seconds"]})
        _plot_scores(pos_scores, neg_scores, tmp / SCORES_PLOT)
        write_manifest(
            tmp,
            "classifier",
            recipe={"text_key": text_key, **report["options"]},
            inputs=[positive, negative],
            stats=report["heldout"],
        )
    return report


def _train_fasttext(fasttext: Any, train_file: Path, epochs: int, seed: int) -> tuple[Any, float]:
    """fastText at lr 0.5; when it diverges ("Encountered NaN", which its SGD can do on some inputs), again
    at half the rate, down to 0.0625. Returns the model and the rate that trained it."""
    lr = 0.5
    while True:
        try:
            model = fasttext.train_supervised(
                str(train_file),
                epoch=epochs,
                lr=lr,
                wordNgrams=2,
                dim=16,
                bucket=2**19,
                thread=1,
                seed=seed,
                verbose=0,
            )
            return model, lr
        except RuntimeError as e:
            if "NaN" not in str(e) or lr <= 0.0625:
                raise
            warn(f"fastText diverged at lr {lr} (Encountered NaN); retrying at lr {lr / 2}")
            lr /= 2


def _plot_scores(pos: list[float], neg: list[float], path: Path) -> None:
    """Histogram of held-out P(reference quality) for each class: two humps far apart = a useful classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = [i / 20 for i in range(21)]
    ax.hist(neg, bins=bins, alpha=0.6, label=f"negative (raw), n={len(neg)}", color="#c44e52")
    ax.hist(pos, bins=bins, alpha=0.6, label=f"positive (reference), n={len(pos)}", color="#4c72b0")
    ax.set_xlabel("P(reference quality)")
    ax.set_ylabel("held-out documents")
    ax.set_title("quality classifier on held-out documents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

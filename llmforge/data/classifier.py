"""Quality classifier: a fastText model of reference-quality text vs raw text, saved as a `classifier` artifact.

GPT-3 (Brown et al. 2020, Appendix A) trained a logistic-regression classifier with curated text (WebText,
Wikipedia, books) as positives and raw Common Crawl as negatives and kept crawl documents by its score;
LLaMA (Touvron et al. 2023, §2) did the same with a linear model on Wikipedia-referenced pages. We train a
fastText linear classifier (Joulin et al. 2017) on word unigrams and bigrams, hold out a seeded fraction of
both classes, and report precision/recall/accuracy on it.

The same trainer takes labelled rows (`train_classifier_labelled`: a CSV or JSON Lines file, a text and a label
column, the labels that count as positive), e.g. Davidson et al. (2017)'s tweets labelled hate / offensive /
neither, to make the toxicity scorer of `llmforge bias`. The artifact is read through
`llmforge.artifacts.classifier`, which every stage may use.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, TIMINGS, atomic_dir, require, write_json, write_manifest
from llmforge.artifacts.classifier import (
    MODEL_FILE,
    NEGATIVE,
    POSITIVE,
    ClassifierModel,
    fasttext_line,
)
from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError, warn

__all__ = ["MODEL_FILE", "NEGATIVE", "POSITIVE", "QualityModel", "fasttext_line", "read_labelled",
           "read_texts", "train_classifier", "train_classifier_labelled"]  # fmt: skip

REPORT = "report.json"
SCORES_PLOT = "scores.png"
MIN_WORDS = 5  # shorter texts (headings, stray lines) carry no signal about quality
_FOLDER_FILES = (".jsonl", ".jsonl.gz", ".txt", ".md")  # what a folder input contributes
QUALITY_MEANING = "reference-quality text (the positive inputs)"
# Labelled rows (tweets, comments) are short and creatively spelled: every row with a token counts, and
# character 2- to 4-grams (fastText's subword features) let "b1tch" share weights with "bitch".
LABELLED_SUBWORDS = {"minn": 2, "maxn": 4}

QualityModel = ClassifierModel  # the data stage's name for it (steps/classifier.py, benchmarks)


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


# ------------------------------------------------------------------------------------------ labelled rows


def parse_labels(text: str | Sequence[str]) -> tuple[str, ...]:
    """`"0,1"` (or a list) as label strings, the way `read_labelled` spells them."""
    items = text.split(",") if isinstance(text, str) else list(text)
    labels = tuple(dict.fromkeys(s for s in (label_text(x) for x in items) if s))
    if not labels:
        raise UserError(f"--positive-labels: no labels in {text!r} (expected e.g. 0,1 or toxic)")
    return labels


def label_text(value: Any) -> str:
    """A label as a string: 1, "1", 1.0 and " 1 " are the same label; true/false for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _row_fields(where: str, record: Any, text_key: str, label_key: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an object with fields {text_key!r} and {label_key!r}")
    for key in (text_key, label_key):
        if key not in record:
            raise UserError(f"{where}: no field {key!r} (fields: {', '.join(map(str, record))})")
    text, label = record[text_key], record[label_key]
    if not isinstance(text, str):
        raise UserError(f"{where}: field {text_key!r} is not a string")
    if label is None or label_text(label) == "":
        raise UserError(f"{where}: empty label in field {label_key!r}")
    return text, label_text(label)


def _csv_rows(path: Path, text_key: str, label_key: str) -> Iterator[tuple[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [k for k in (text_key, label_key) if k not in (reader.fieldnames or [])]
            if missing:
                columns = ", ".join(repr(c) for c in reader.fieldnames or [])
                raise UserError(f"{path}: no column {missing[0]!r} (columns: {columns or 'none'})")
            for n, record in enumerate(reader, 1):
                yield _row_fields(f"{path}: row {n}", record, text_key, label_key)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: unreadable CSV ({e})") from None


def _jsonl_rows(path: Path, text_key: str, label_key: str) -> Iterator[tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: not JSON ({e})") from None
                yield _row_fields(f"{path}:{n}", record, text_key, label_key)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable JSON Lines ({e})") from None


def read_labelled(
    path: str | Path, text_key: str = "text", label_key: str = "label"
) -> list[tuple[str, str]]:
    """(text, label) of every row of a .csv (header row naming the columns) or .jsonl/.jsonl.gz file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.name.endswith(".csv"):
        return list(_csv_rows(path, text_key, label_key))
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return list(_jsonl_rows(path, text_key, label_key))
    raise UserError(f"{path}: labelled rows must be a .csv or .jsonl(.gz) file")


# ------------------------------------------------------------------------------------------ metrics


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def roc_auc(pos_scores: Sequence[float], neg_scores: Sequence[float]) -> float:
    """P(a random positive outscores a random negative), ties counting one half: the Mann-Whitney U statistic
    over n_pos·n_neg (Hanley & McNeil 1982). 0.5 is chance, whatever the class balance."""
    if not pos_scores or not neg_scores:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos_scores for n in neg_scores)
    return wins / (len(pos_scores) * len(neg_scores))


def _metrics(
    pos_scores: list[float],
    neg_scores: list[float],
    threshold: float = 0.5,
    majority_positive: bool | None = None,
) -> dict[str, float]:
    """Held-out precision/recall/F1 of the positive class, accuracy, balanced accuracy (mean of the two recalls),
    macro F1 and ROC AUC, beside what always answering the majority class scores (`majority_positive`: which
    class that is, from the training rows; the larger held-out class when None). On imbalanced rows (Davidson
    et al. 2017: 85% hate or offensive) accuracy alone rewards the majority answer; the balanced metrics do not."""
    tp = sum(s >= threshold for s in pos_scores)
    fp = sum(s >= threshold for s in neg_scores)
    fn, tn = len(pos_scores) - tp, len(neg_scores) - fp
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / n_neg if n_neg else 0.0
    if majority_positive is None:
        majority_positive = n_pos >= n_neg
    major, minor = (n_pos, n_neg) if majority_positive else (n_neg, n_pos)
    return {
        "threshold": threshold,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "accuracy": round((tp + tn) / (tp + tn + fp + fn), 4),
        "positives": n_pos,
        "negatives": n_neg,
        "balanced_accuracy": round((recall + specificity) / 2, 4),
        "macro_f1": round((_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2, 4),
        "roc_auc": round(roc_auc(pos_scores, neg_scores), 4),
        "majority_class": "positive" if majority_positive else "negative",
        "majority_accuracy": round(major / (major + minor), 4) if major + minor else 0.0,
        "majority_macro_f1": round(_f1(major, minor, 0) / 2, 4),
    }


def _split(lines: list[str], holdout: float) -> tuple[list[str], list[str]]:
    n_test = max(1, round(len(lines) * holdout))
    return lines[n_test:], lines[:n_test]


# ------------------------------------------------------------------------------------------ training


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
    rng = random.Random(seed)
    pos_train, pos_test = _split(load_examples(positive, text_key, max_docs, rng), holdout)
    neg_train, neg_test = _split(load_examples(negative, text_key, max_docs, rng), holdout)
    head = {
        "positive": {"path": str(positive), "train_docs": len(pos_train), "heldout_docs": len(pos_test)},
        "negative": {"path": str(negative), "train_docs": len(neg_train), "heldout_docs": len(neg_test)},
    }
    options = {"epochs": epochs, "holdout": holdout, "max_docs": max_docs, "seed": seed}
    recipe = {"text_key": text_key, "positive_meaning": QUALITY_MEANING}
    fit = _Fit(pos_train, pos_test, neg_train, neg_test, head, options, recipe, [positive, negative])
    return _fit_and_write(
        fit, out, rng, plot=("positive (reference)", "negative (raw)", "P(reference quality)")
    )


def train_classifier_labelled(
    labelled: str | Path,
    out: str | Path,
    *,
    positive_labels: str | Sequence[str],
    text_key: str = "text",
    label_key: str = "label",
    holdout: float = 0.1,
    epochs: int = 10,
    max_docs: int = 100_000,
    seed: int = 0,
    balance: bool = True,
) -> dict[str, Any]:
    """Train on labelled rows (`positive_labels` positive, every other label negative): each class is shuffled
    (seeded) and `holdout` of it held out, so the held-out rows keep the file's class balance. With `balance`
    the smaller class's training rows are repeated (seeded) up to the larger's count, so the model does not learn
    to answer the majority class; the held-out rows are never repeated."""
    positives = parse_labels(positive_labels)
    rows = read_labelled(labelled, text_key, label_key)
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    _check_labels(labelled, label_key, positives, counts)
    rng = random.Random(seed)
    lines = [(line, label in positives) for text, label in rows if (line := fasttext_line(text))]
    pos = _sampled([x for x, p in lines if p], max_docs, rng)
    neg = _sampled([x for x, p in lines if not p], max_docs, rng)
    for name, part in (("positive", pos), ("negative", neg)):
        if len(part) < 2:
            raise UserError(f"{labelled}: needs at least 2 non-empty {name} rows, found {len(part)}")
    pos_train, pos_test = _split(pos, holdout)
    neg_train, neg_test = _split(neg, holdout)
    negatives = sorted(set(counts) - set(positives))
    where = f"{labelled} ({label_key} in {', '.join(positives)})"
    head = {
        "labelled": {
            "path": str(labelled),
            "text_key": text_key,
            "label_key": label_key,
            "positive_labels": list(positives),
            "negative_labels": negatives,
            "rows": len(rows),
            "label_counts": dict(sorted(counts.items())),
            "skipped_empty": len(rows) - len(lines),
        },
        "positive": {"path": where, "train_docs": len(pos_train), "heldout_docs": len(pos_test)},
        "negative": {
            "path": f"{labelled} ({label_key} in {', '.join(negatives)})",
            "train_docs": len(neg_train),
            "heldout_docs": len(neg_test),
        },
    }
    majority_positive = len(pos_train) >= len(neg_train)
    if balance:
        pos_train, neg_train = _balanced(pos_train, neg_train, rng)
        head["positive"]["balanced_train_docs"] = len(pos_train)
        head["negative"]["balanced_train_docs"] = len(neg_train)
    options = {"epochs": epochs, "holdout": holdout, "max_docs": max_docs, "seed": seed, "balance": balance,
               **LABELLED_SUBWORDS}  # fmt: skip
    recipe = {
        "text_key": text_key,
        "label_key": label_key,
        "positive_labels": list(positives),
        "positive_meaning": f"{label_key} in {', '.join(positives)} of {Path(labelled).name}",
    }
    fit = _Fit(pos_train, pos_test, neg_train, neg_test, head, options, recipe, [labelled])
    plot = (
        f"positive ({label_key} {', '.join(positives)})",
        f"negative ({', '.join(negatives)})",
        "P(positive)",
    )
    return _fit_and_write(fit, out, rng, plot=plot, majority_positive=majority_positive,
                          fasttext_options=LABELLED_SUBWORDS)  # fmt: skip


def _check_labels(
    path: str | Path, label_key: str, positives: tuple[str, ...], counts: dict[str, int]
) -> None:
    found = ", ".join(sorted(counts)) or "none"
    absent = [p for p in positives if p not in counts]
    if absent:
        raise UserError(
            f"{path}: --positive-labels {absent[0]!r} never occurs in {label_key!r} (labels: {found})"
        )
    if not set(counts) - set(positives):
        raise UserError(f"{path}: every label ({found}) is positive; no negative rows to learn from")


def _sampled(lines: list[str], max_docs: int, rng: random.Random) -> list[str]:
    """A seeded shuffle of `lines`, cut to `max_docs`."""
    return rng.sample(lines, min(len(lines), max_docs))


def _balanced(pos: list[str], neg: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """The smaller list repeated (whole copies, then a seeded sample of the rest) to the larger's length."""

    def grow(small: list[str], n: int) -> list[str]:
        whole, rest = divmod(n, len(small))
        return small * whole + rng.sample(small, rest)

    if len(pos) < len(neg):
        return grow(pos, len(neg)), neg
    return pos, grow(neg, len(pos))


@dataclass
class _Fit:
    """What one training run is given: the split lines and what its report and manifest say about them."""

    pos_train: list[str]
    pos_test: list[str]
    neg_train: list[str]
    neg_test: list[str]
    head: dict[str, Any]
    options: dict[str, Any]
    recipe: dict[str, Any]
    inputs: list[str | Path]


def _fit_and_write(
    fit: _Fit,
    out: str | Path,
    rng: random.Random,
    *,
    plot: tuple[str, str, str],
    majority_positive: bool | None = None,
    fasttext_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train fastText on the training lines, score the held-out ones, write model, report, plot and manifest."""
    import fasttext

    start = time.perf_counter()
    train = [f"{POSITIVE} {x}" for x in fit.pos_train] + [f"{NEGATIVE} {x}" for x in fit.neg_train]
    rng.shuffle(train)
    out = Path(out)
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        train_file = Path(scratch) / "train.txt"
        train_file.write_text("\n".join(train) + "\n", encoding="utf-8")
        # one thread: fastText's Hogwild updates make multi-threaded training non-deterministic.
        # 2^19 bigram buckets x 16 dims keep the model at ~35 MB (fastText's defaults make it 0.8 GB);
        # with 2^17 buckets fastText 0.9.3 stopped with "Encountered NaN" in 2 of 3 runs on the same file
        # (WikiText-2 vs Tiny Shakespeare), never with 2^19 or more.
        model, lr = _train_fasttext(fasttext, train_file, fit.options["epochs"], fit.options["seed"],
                                    **(fasttext_options or {}))  # fmt: skip
        model.save_model(str(tmp / MODEL_FILE))
        scorer = ClassifierModel(tmp / MODEL_FILE)
        pos_scores = [scorer.score_line(x) for x in fit.pos_test]
        neg_scores = [scorer.score_line(x) for x in fit.neg_test]
        report = {
            **fit.head,
            "heldout": _metrics(pos_scores, neg_scores, majority_positive=majority_positive),
            "options": {**fit.options, "lr": lr},
        }
        write_json(tmp / REPORT, report)
        report["seconds"] = round(time.perf_counter() - start, 2)
        write_json(tmp / TIMINGS, {"seconds": report["seconds"]})
        _plot_scores(pos_scores, neg_scores, tmp / SCORES_PLOT, *plot)
        write_manifest(
            tmp,
            "classifier",
            recipe={**fit.recipe, **report["options"]},
            inputs=fit.inputs,
            stats=report["heldout"],
        )
    return report


def _train_fasttext(
    fasttext: Any, train_file: Path, epochs: int, seed: int, **extra: Any
) -> tuple[Any, float]:
    """fastText at lr 0.5; when it diverges ("Encountered NaN", which its SGD can do on some inputs), again
    at half the rate, down to 0.0625. Returns the model and the rate that trained it. `extra`: more
    `train_supervised` options (the labelled trainer's subword n-grams)."""
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
                **extra,
            )
            return model, lr
        except RuntimeError as e:
            if "NaN" not in str(e) or lr <= 0.0625:
                raise
            warn(f"fastText diverged at lr {lr} (Encountered NaN); retrying at lr {lr / 2}")
            lr /= 2


def _plot_scores(
    pos: list[float], neg: list[float], path: Path, pos_name: str, neg_name: str, xlabel: str
) -> None:
    """Histogram of held-out P(positive) for each class: two humps far apart = a useful classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = [i / 20 for i in range(21)]
    ax.hist(neg, bins=bins, alpha=0.6, label=f"{neg_name}, n={len(neg)}", color="#c44e52")
    ax.hist(pos, bins=bins, alpha=0.6, label=f"{pos_name}, n={len(pos)}", color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out documents")
    ax.set_title("classifier on held-out documents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

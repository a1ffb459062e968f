"""Classification metrics from label ids (pure Python): accuracy, macro-F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], n_classes: int) -> list[list[int]]:
    """matrix[t][p]: how many rows of true class t were predicted as p."""
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(truth, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def classification_metrics(
    truth: Sequence[int], predicted: Sequence[int], names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 (the unweighted mean of per-class F1, a class never predicted nor present
    counting 0), per-class counts and the confusion matrix."""
    matrix = confusion_matrix(truth, predicted, len(names))
    per_class, f1s = {}, []
    for k, name in enumerate(names):
        correct = matrix[k][k]
        support = sum(matrix[k])
        predicted_k = sum(row[k] for row in matrix)
        precision = correct / predicted_k if predicted_k else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {"support": support, "predicted": predicted_k, "correct": correct, "f1": f1}
    total = len(truth)
    return {
        "accuracy": sum(matrix[k][k] for k in range(len(names))) / total if total else 0.0,
        "macro_f1": sum(f1s) / len(f1s),
        "rows": total,
        "per_class": per_class,
        "confusion_matrix": matrix,
    }

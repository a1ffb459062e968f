"""`quality_classifier` step: keep documents by a trained quality classifier's score (`llmforge data
train-classifier`), by threshold or by GPT-3's Pareto sampling."""

from __future__ import annotations

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from xxhash import xxh64_intdigest

from llmforge.data.classifier import QualityModel


def pareto_keep(score: float, alpha: float, key: str) -> bool:
    """GPT-3's rule (Brown et al. 2020, Appendix A): keep a document if np.random.pareto(α) > 1 − score, so
    high scorers are almost always kept and some low scorers still get in (more diverse than a threshold).
    The draw is seeded by `key` (seed and document id): the same choice on every run and every worker."""
    rng = np.random.default_rng(xxh64_intdigest(key))
    return float(rng.pareto(alpha)) > 1 - score


class QualityClassifierFilter(BaseFilter):
    """Scores each document with the classifier at `model` (metadata `quality_score`) and keeps it when the
    score is at least `threshold` (`mode="threshold"`) or by Pareto sampling with `alpha` (`mode="pareto"`,
    α = 9 as in GPT-3)."""

    name = "🏅 quality classifier"

    def __init__(
        self, model: str, mode: str = "threshold", threshold: float = 0.5, alpha: float = 9.0, seed: int = 0
    ):
        super().__init__()
        self.model_path = model
        self.mode, self.threshold, self.alpha, self.seed = mode, threshold, alpha, seed
        self._model: QualityModel | None = None  # loaded in the worker: fastText models do not pickle

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._model is None:
            self._model = QualityModel.load(self.model_path)
        score = self._model.score(doc.text)
        doc.metadata["quality_score"] = round(score, 4)
        if self.mode == "pareto":
            return pareto_keep(score, self.alpha, f"{self.seed}:{doc.id}") or (False, "pareto_rejected")
        return score >= self.threshold or (False, "low_quality_score")

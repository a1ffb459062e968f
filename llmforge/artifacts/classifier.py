"""The `classifier` artifact, read side: a fastText linear classifier (Joulin et al. 2017) in `model.bin`,
trained by `llmforge data train-classifier` with two labels, `__label__positive` and `__label__negative`.

What "positive" means is in the manifest's recipe: reference-quality text (the data stage's quality filter), or
the labels given with `--labelled ... --positive-labels` (e.g. Davidson et al. 2017's hate and offensive
classes, for the bias stage's toxicity scorer). The data stage writes it; any stage may read it through here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmforge.artifacts import read_manifest, require
from llmforge.console import UserError

MODEL_FILE = "model.bin"
POSITIVE, NEGATIVE = "__label__positive", "__label__negative"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def fasttext_line(text: str) -> str:
    """One lowercased line of words and punctuation marks: fastText reads a document per line, split on spaces.
    Training and scoring must both go through it."""
    return " ".join(_TOKEN.findall(text.lower()))


class ClassifierModel:
    """A trained classifier: `score(text)` is P(positive label) in [0, 1]."""

    def __init__(self, model_file: str | Path):
        from fasttext.FastText import _FastText

        self.model_file = Path(model_file)
        self._model = _FastText(str(model_file))

    @classmethod
    def load(cls, artifact: str | Path) -> ClassifierModel:
        """The model of the `classifier` artifact at `artifact`; UserError naming the path when it is not one."""
        require(artifact, "classifier")
        model_file = Path(artifact) / MODEL_FILE
        if not model_file.is_file():
            raise UserError(f"{artifact}: classifier artifact has no {MODEL_FILE}")
        try:
            return cls(model_file)
        except ValueError as e:  # fastText: "... has wrong file format!"
            raise UserError(f"{model_file}: not a fastText model ({e})") from None

    def score_line(self, line: str) -> float:
        """P(positive) of an already `fasttext_line`d text."""
        # fasttext's Python predict() calls np.array(copy=False), which NumPy 2 rejects: use the C++ binding
        for prob, label in self._model.f.predict(line, 2, 0.0, "strict"):
            if label == POSITIVE:
                return min(float(prob), 1.0)
        return 0.0

    def score(self, text: str) -> float:
        return self.score_line(fasttext_line(text))


def describe_classifier(artifact: str | Path) -> dict[str, Any]:
    """What the artifact's positive label means and how well it did on its held-out rows (from its manifest)."""
    manifest = read_manifest(artifact)
    recipe = manifest.get("recipe") or {}
    return {
        "path": str(artifact),
        "positive": recipe.get("positive_meaning", "reference-quality text (positive inputs)"),
        "trained_on": [i.get("path") for i in manifest.get("inputs", []) if isinstance(i, dict)],
        "heldout": manifest.get("stats", {}),
    }

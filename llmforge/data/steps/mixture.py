"""Mixture weighting: repeat or subsample each source's documents by its weight."""

from __future__ import annotations

import math

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from xxhash import xxh64_intdigest


def copies(weight: float, max_epochs: float, key: str) -> int:
    """How many times a document appears: floor(w) plus one more with probability frac(w), where the coin
    is a hash of (seed, id) so the choice is the same in every run and on every worker; at most max_epochs."""
    w = min(weight, max_epochs)
    whole = math.floor(w)
    coin = xxh64_intdigest(key) / 2**64
    return min(whole + (coin < w - whole), math.floor(max_epochs))


class MixtureSampler(PipelineStep):
    """Up-sample by repetition (capped at `max_epochs`) or down-sample by seeded subsampling, per source, as in
    The Pile's "epochs" (Gao et al. 2020, Table 1) and GPT-3's mixture (Brown et al. 2020, Table 2.2)."""

    type = "⚖️ - MIXTURE"
    name = "⚖️ mixture"

    def __init__(self, weights: dict[str, tuple[float, float]], seed: int):
        super().__init__()
        self.weights, self.seed = weights, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            source = doc.metadata.get("source", "")
            weight, max_epochs = self.weights.get(source, (1.0, 1.0))
            n = copies(weight, max_epochs, f"{self.seed}:{doc.id}")
            if n == 0:
                self.stat_update("dropped_subsampled")
            for k in range(n):
                yield (
                    doc
                    if k == 0
                    else Document(text=doc.text, id=f"{doc.id}#{k}", metadata=dict(doc.metadata))
                )

"""`Metered`/`Timed` record the time spent in their step alone, and MinHash shingles match datatrove's."""

from __future__ import annotations

import time

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from llmforge.data.steps.meter import Metered, Timed


class _Slow(PipelineStep):
    name = "slow"

    def run(self, data, rank=0, world_size=1):
        for doc in data:
            time.sleep(0.02)
            yield doc


def _slow_upstream(n: int):
    for i in range(n):
        time.sleep(0.05)
        yield Document(text=f"doc {i}", id=str(i), metadata={"source": "s"})


def _slow_downstream(docs):
    for _ in docs:
        time.sleep(0.05)


def test_metered_time_excludes_upstream_and_downstream():
    step = Metered(_Slow(), "00.slow")
    _slow_downstream(step.run(_slow_upstream(4)))
    seconds = step.stats.time_stats.total
    assert 0.08 <= seconds < 0.19  # 4 x 20 ms inside; 4 x 50 ms upstream and 4 x 50 ms downstream are not
    assert step.stats["docs_in"].total == 4 and step.stats["docs_out"].total == 4


def test_timed_consumer_step_counts_its_run_call():
    class Consumer(PipelineStep):
        name = "consumer"

        def run(self, data, rank=0, world_size=1):  # not a generator, like a dedup signature stage
            for _ in data:
                time.sleep(0.02)

    step = Timed(Consumer(), "00.minhash signature")
    list(step.run(_slow_upstream(4)))
    assert 0.08 <= step.stats.time_stats.total < 0.19
    assert step.stats.name == "00.minhash signature"


def test_fast_minhash_shingles_match_datatrove_on_prose(shared_data, tmp_path):
    from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupSignature

    from llmforge.data.steps.dedup import FastMinhashSignature

    text = (shared_data / "wikitext2" / "valid.txt").read_text()
    docs = [text[i : i + 2000] for i in range(0, 200_000, 2000)]
    cfg = MinhashConfig(n_grams=5, num_buckets=4, hashes_per_bucket=2)
    ours, theirs = FastMinhashSignature(str(tmp_path), cfg), MinhashDedupSignature(str(tmp_path), cfg)
    same = sum(np.array_equal(ours.get_shingles(d), theirs.get_shingles(d)) for d in docs)
    assert same >= 95  # spaCy also splits a few English contractions ("gotta" → "got ta")
    assert ours.get_shingles("too short").shape == (0, 1)


class _CountingUpper(PipelineStep):
    """Upper-cases text, drops documents containing "drop", counts its `run` calls and numbers the documents
    it sees (state that a per-document re-entry would reset)."""

    name = "upper"

    def __init__(self):
        super().__init__()
        self.runs = 0

    def run(self, data, rank=0, world_size=1):
        self.runs += 1
        for i, doc in enumerate(data):
            if "drop" in doc.text:
                continue
            doc.text = f"{doc.text.upper()} #{i}"
            yield doc


def _mixed_docs():
    texts = ["a one", "b two", "a drop", "b three", "b four", "a five", "a six", "b drop"]
    return [Document(text=t, id=str(i), metadata={"source": t.split()[0]}) for i, t in enumerate(texts)]


def test_scoped_step_enters_run_once_and_matches_unscoped_on_in_scope_docs():
    scoped_step = _CountingUpper()
    out = list(Metered(scoped_step, "00.upper", only=["a"]).run(iter(_mixed_docs())))
    assert scoped_step.runs == 1
    unscoped = list(
        Metered(_CountingUpper(), "00.upper").run(
            iter(d for d in _mixed_docs() if d.metadata["source"] == "a")
        )
    )
    assert [d.text for d in out if d.metadata["source"] == "a"] == [d.text for d in unscoped]
    # the other source passes by untouched, and the input order holds
    assert [d.text for d in out] == [
        "A ONE #0",
        "b two",
        "b three",
        "b four",
        "A FIVE #2",
        "A SIX #3",
        "b drop",
    ]


def test_scoped_step_error_reaches_the_caller():
    class Broken(PipelineStep):
        name = "broken"

        def run(self, data, rank=0, world_size=1):
            for doc in data:
                raise ValueError(f"cannot handle {doc.id}")
                yield doc

    import pytest

    with pytest.raises(ValueError, match="cannot handle 0"):
        list(Metered(Broken(), "00.broken", only=["a"]).run(iter(_mixed_docs())))

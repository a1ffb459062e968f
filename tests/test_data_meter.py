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

"""Our parts of datatrove's multi-stage dedup: a faster MinHash signature stage, a MinHash cluster stage and an
exact-dedup priority that choose the document kept by id (so the result does not depend on the task count)."""

from __future__ import annotations

import re
import struct
from collections import defaultdict

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.text import simplify_text
from xxhash import xxh64_intdigest

# `simplify_text` has already lowercased the text and turned punctuation into spaces, so a word is a run of
# word characters or one other symbol (°, ′): on WikiText-2 the same words as spaCy's English tokenizer in
# 98% of 2 KB documents (it also splits contractions like "gotta"); the signature stage went from ~300 to
# ~2,300 docs/s (benchmarks/bench_data.py).
_WORD = re.compile(r"\w+|[^\w\s]")


ID_HASHES = "id_hashes"  # per task: xxh64 of each document's id, in document order (uint64 .npy)


class FastMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature stage (its hashing, permutations and on-disk format unchanged) with
    shingles built from a regex word split instead of spaCy, which bounded the stage at ~300 docs/s. It also
    writes a hash of every document id, so `StableMinhashCluster` can pick survivors by id."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        keys: list[int] = []

        def remember(docs: DocumentsPipeline) -> DocumentsPipeline:
            for doc in docs:
                keys.append(xxh64_intdigest(doc.id))
                yield doc

        super().run(remember(data), rank, world_size)
        with self.output_folder.open(f"{ID_HASHES}/{rank:05d}.npy", "wb") as f:
            np.save(f, np.array(keys, dtype=np.uint64))

    def get_shingles(self, text: str) -> np.ndarray:
        words = _WORD.findall(simplify_text(text, self.config.norm_config))
        n = self.config.n_grams
        hashes = [self._hash_func(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)]
        return np.fromiter(hashes, dtype=np.uint64, count=len(hashes)).reshape((-1, 1))


def id_priority(doc: Document) -> int:
    """Exact-dedup priority in [1, 65535] from a hash of the document id: of a group of copies, the one kept is
    the same whatever the number of tasks (datatrove otherwise keeps the first copy in task order), barring a
    1-in-65,535 tie between two copies' priorities."""
    return xxh64_intdigest(doc.id) % 65535 + 1


class StableMinhashCluster(PipelineStep):
    """MinHash stage 3 in place of datatrove's `MinhashDedupCluster`: joins the candidate pairs of every band
    into clusters (union-find) and keeps, of each cluster, the document with the smallest id hash; datatrove
    keeps a member picked by merge order, which depends on how documents were split into tasks. Writes the
    `<task>.remove` files (sorted document indices) that `MinhashDedupFilter` reads."""

    type = "🫂 - DEDUP"
    name = "🎯 MinHash stage 3 (stable)"

    def __init__(
        self, input_folder: DataFolderLike, output_folder: DataFolderLike, sigs_folder: DataFolderLike
    ):
        super().__init__()
        self.input_folder = get_datafolder(input_folder)
        self.output_folder = get_datafolder(output_folder)
        self.sigs_folder = get_datafolder(sigs_folder)

    def _id_hashes(self, task: int) -> np.ndarray:
        with self.sigs_folder.open(f"{ID_HASHES}/{task:05d}.npy", "rb") as f:
            return np.load(f)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def root(x: tuple[int, int]) -> tuple[int, int]:
            while parent.setdefault(x, x) != x:
                parent[x] = parent.setdefault(parent[x], parent[x])  # path halving
                x = parent[x]
            return x

        for dup_file in self.input_folder.list_files(glob_pattern="*.dups"):
            with self.input_folder.open(dup_file, "rb") as f:
                for task_a, doc_a, task_b, doc_b in read_tuples_from_file(f, "4I"):
                    ra, rb = root((task_a, doc_a)), root((task_b, doc_b))
                    if ra != rb:
                        parent[rb] = ra
        clusters: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for node in list(parent):
            clusters[root(node)].append(node)
        hashes = {task: self._id_hashes(task) for task in {task for task, _ in parent}}
        remove: dict[int, list[int]] = defaultdict(list)
        for members in clusters.values():
            keep = min(members, key=lambda n: (int(hashes[n[0]][n[1]]), n))
            for task, doc in members:
                if (task, doc) != keep:
                    remove[task].append(doc)
            self.stat_update("clusters")
        for task, docs in remove.items():
            with self.output_folder.open(f"{task:06d}.remove", "wb") as f:
                f.write(b"".join(struct.pack("<I", d) for d in sorted(docs)))
            self.stat_update("to_remove", value=len(docs))

"""Data stage throughput: per-step docs/s and MB/s on the stdlib corpus and on prose, MinHash dedup docs/s,
the whole pipeline with 1 and 2 workers, and our pipeline vs the same datatrove steps run bare."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

from llmforge.data.build import build_dataset
from llmforge.data.config import STEP_OPTIONS, DataConfig
from llmforge.data.registry import build_step
from llmforge.data.sources import stdlib_files, stdlib_root

STDLIB_BYTES = 3_000_000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PER_STEP = [
    "ftfy",
    "whitespace",
    "emoji_to_text",
    "pii",
    "line_filter",
    "code_quality",
    "language",
    "gopher_quality",
    "gopher_repetition",
    "c4",
    "fineweb",
    "blocklist",
    "counterfactual",
]
DEMO_STEPS = [{"type": t} for t in ("ftfy", "whitespace", "pii", "code_quality", "exact_dedup", "minhash")]


def stdlib_texts() -> list[str]:
    root = stdlib_root()
    texts = [
        (root / f).read_text(encoding="utf-8", errors="replace") for f in stdlib_files(max_bytes=STDLIB_BYTES)
    ]
    return [t for t in texts if t.strip()]


def prose_texts(chunk: int = 2000) -> list[str]:
    """~2 KB chunks of WikiText-2 (falls back to nothing when ../shared/data is absent)."""
    f = SHARED / "wikitext2" / "valid.txt"
    if not f.is_file():
        return []
    text = f.read_text()
    return [text[i : i + chunk] for i in range(0, len(text) - chunk, chunk)]


def time_step(kind: str, texts: list[str]) -> dict:
    from datatrove.data import Document

    step = build_step(kind, STEP_OPTIONS[kind]())
    docs = [Document(text=t, id=str(i), metadata={"source": "b"}) for i, t in enumerate(texts)]
    nbytes = sum(len(t.encode()) for t in texts)
    start = time.perf_counter()
    kept = sum(1 for _ in step.run(iter(docs)))
    s = time.perf_counter() - start
    return {
        "docs_per_s": round(len(docs) / s, 1),
        "mb_per_s": round(nbytes / 1e6 / s, 2),
        "kept_fraction": round(kept / len(docs), 3),
    }


def minhash_signature(texts: list[str]) -> dict:
    """Signature stage alone (shingling + hashing), datatrove's spaCy shingles vs our regex word split."""
    from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupSignature

    from llmforge.data.steps.dedup import FastMinhashSignature

    result = {}
    for name, cls in (("datatrove_spacy", MinhashDedupSignature), ("ours_regex", FastMinhashSignature)):
        step = cls(tempfile.mkdtemp(), MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8))
        step.get_shingles("warm up the tokenizer")
        start = time.perf_counter()
        for t in texts:
            step.get_signature(step.get_shingles(t))
        result[f"{name}_docs_per_s"] = round(len(texts) / (time.perf_counter() - start), 1)
    return result


def quality_classifier(tmp: Path) -> dict:
    """Train WikiText-2 (positive) vs Tiny Shakespeare (negative) paragraphs; held-out metrics, scoring docs/s."""
    from llmforge.data.classifier import QualityModel, read_texts, train_classifier

    wiki, shakespeare = SHARED / "wikitext2" / "valid.txt", SHARED / "tinyshakespeare" / "input.txt"
    start = time.perf_counter()
    report = train_classifier(wiki, shakespeare, tmp / "clf")
    train_s = time.perf_counter() - start
    model = QualityModel.load(tmp / "clf")
    texts = list(read_texts(wiki))
    start = time.perf_counter()
    for t in texts:
        model.score(t)
    return {
        "train_docs": report["positive"]["train_docs"] + report["negative"]["train_docs"],
        "train_s": round(train_s, 2),
        "heldout": report["heldout"],
        "score_docs_per_s": round(len(texts) / (time.perf_counter() - start), 1),
    }


def write_jsonl(texts: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"text": t, "id": str(i)}) + "\n")
    return path


def timed_build(table: dict, tmp: Path, seed: int = 0) -> tuple[float, dict]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    report = build_dataset(DataConfig.model_validate(table), run_dir, seed)
    return time.perf_counter() - start, report


def bare_datatrove(src: Path, out: Path, workers: int) -> float:
    """The same reader/steps/writer as `ours`, straight on datatrove's LocalPipelineExecutor."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import FTFYFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    logger.disable("datatrove")
    pipeline = [
        JsonlReader(str(src.parent)),
        FTFYFormatter(),
        GopherRepetitionFilter(),
        FineWebQualityFilter(),
        JsonlWriter(str(out / "data")),
    ]
    start = time.perf_counter()
    LocalPipelineExecutor(pipeline, tasks=workers, workers=workers, logging_dir=str(out / "logs")).run()
    return time.perf_counter() - start


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        code, prose = stdlib_texts(), prose_texts()
        result: dict = {
            "stdlib_corpus": {"docs": len(code), "mb": round(sum(len(t.encode()) for t in code) / 1e6, 2)},
            "per_step_stdlib": {k: time_step(k, code) for k in PER_STEP},
        }
        if prose:
            result["per_step_prose_2kb"] = {k: time_step(k, prose) for k in PER_STEP}

        stdlib_src = {"name": "stdlib", "type": "python-stdlib", "max_bytes": STDLIB_BYTES}
        s, rep = timed_build({"sources": [stdlib_src], "steps": [{"type": "minhash"}]}, tmp)
        result["minhash_stdlib"] = {
            "docs": rep["docs_in"],
            "seconds": round(s, 2),
            "docs_per_s": round(rep["docs_in"] / s, 1),
            "removed": rep["docs_in"] - rep["docs_out"],
        }
        if prose:
            src = write_jsonl(prose, tmp / "prose" / "p.jsonl.gz")
            s, rep = timed_build(
                {
                    "sources": [{"name": "p", "type": "jsonl", "path": str(src)}],
                    "steps": [{"type": "minhash"}],
                },
                tmp,
            )
            step = rep["steps"][0]
            result["minhash_prose_2kb"] = {
                "docs": rep["docs_in"],
                "build_seconds": round(s, 2),
                "build_docs_per_s": round(rep["docs_in"] / s, 1),
                # all four stages of the step (signature, buckets, cluster, filter), without executor start-up
                "step_seconds": step["seconds"],
                "step_docs_per_s": step["docs_per_s"],
            }
            result["minhash_signature_prose_2kb"] = minhash_signature(prose)
            result["quality_classifier"] = quality_classifier(tmp)

        import llmforge.data.pipeline as pipeline

        capped = pipeline.MIN_BYTES_PER_WORKER
        # 1 worker; 2 asked (the few-MB input runs them as one); 2 forked workers with the size cap lifted
        for name, workers, min_bytes in (
            ("1_workers", 1, capped),
            ("2_workers", 2, capped),
            ("2_workers_pool", 2, 1),
        ):
            pipeline.MIN_BYTES_PER_WORKER = min_bytes
            try:
                s, rep = timed_build(
                    {"sources": [stdlib_src], "steps": DEMO_STEPS, "workers": workers, "tasks": 2}, tmp
                )
            finally:
                pipeline.MIN_BYTES_PER_WORKER = capped
            result[f"demo_pipeline_{name}"] = {
                "workers_used": rep["workers"],
                "seconds": round(s, 2),
                "docs_per_s": round(rep["docs_in"] / s, 1),
                "mb_per_s": round(rep["bytes_in"] / 1e6 / s, 3),
                "docs_out": rep["docs_out"],
                "removed_by_step": {st["step"]: st["docs_in"] - st["docs_out"] for st in rep["steps"]},
            }

        src = write_jsonl(code, tmp / "code" / "c.jsonl.gz")
        steps = [{"type": "ftfy"}, {"type": "gopher_repetition"}, {"type": "fineweb"}]
        ours, _ = timed_build(
            {"sources": [{"name": "c", "type": "jsonl", "path": str(src)}], "steps": steps}, tmp
        )
        bare = bare_datatrove(src, tmp / "bare", workers=1)
        result["ours_vs_bare_datatrove"] = {
            "ours_s": round(ours, 2),
            "bare_s": round(bare, 2),
            "ratio": round(ours / bare, 3),
        }
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Tokenize stage throughput on the Python standard library: BPE training MB/s (vocab 4096), encoding MB/s
with 1 and 2 workers (on 8 MB, 2 workers start no process: see `llmforge.tokenizer.encode`), 2 worker
processes forced anyway (what they cost on so little text), and the same text through bare `tokenizers`
`encode_batch` (target: ours ≤ 1.25× its time; ours also reads gzip JSONL, splits train/val and writes
shards)."""

from __future__ import annotations

import gzip
import json
import sysconfig
import tempfile
import time
from pathlib import Path

from llmforge.artifacts import write_manifest
from llmforge.console import configure
from llmforge.tokenizer import encode as encode_module
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.encode import encode_dataset, load_tokenizer_file
from llmforge.tokenizer.train import train_tokenizer

TARGET_BYTES = 8_000_000
SHARDS = 4


def _stdlib_texts() -> list[str]:
    texts, total = [], 0
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if total >= TARGET_BYTES:
            break
        text = p.read_text(errors="replace")
        texts.append(text)
        total += len(text.encode("utf-8", "surrogatepass"))
    return texts


def _write_dataset(path: Path, texts: list[str]) -> None:
    (path / "data").mkdir(parents=True)
    for s in range(SHARDS):
        with gzip.open(path / "data" / f"{s:05d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for i in range(s, len(texts), SHARDS):
                f.write(json.dumps({"text": texts[i], "id": str(i), "source": "stdlib"}) + "\n")
    write_manifest(path, "dataset")


def _encode_in_processes(root: Path, processes: int) -> dict:
    """Encode with `processes` worker processes even below the size that makes them worthwhile."""
    threshold = encode_module.MIN_BYTES_PER_PROCESS
    encode_module.MIN_BYTES_PER_PROCESS = 1
    try:
        return encode_dataset(
            root / "dataset", root / "tok", root / "tokens-forced", val_fraction=0.01, workers=processes
        )
    finally:
        encode_module.MIN_BYTES_PER_PROCESS = threshold


def run() -> dict:
    configure(quiet=True)
    texts = _stdlib_texts()
    nbytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_dataset(root / "dataset", texts)
        trained = train_tokenizer(
            TokenizerConfig(vocab_size=4096, val_fraction=0.01), root / "dataset", root / "tok"
        )
        encoded = {
            w: encode_dataset(
                root / "dataset", root / "tok", root / f"tokens{w}", val_fraction=0.01, workers=w
            )
            for w in (1, 2)
        }
        forced = _encode_in_processes(root, 2)
        tok = load_tokenizer_file(root / "tok")
        start = time.perf_counter()
        for i in range(0, len(texts), 512):
            tok.encode_batch_fast(texts[i : i + 512], add_special_tokens=False)
        bare_s = time.perf_counter() - start
    return {
        "text_mb": round(nbytes / 1e6, 2),
        "documents": len(texts),
        "train_bpe4096_mb_per_s": trained["train_mb_per_s"],
        "train_seconds": trained["seconds"],
        "bytes_per_token": encoded[1]["bytes_per_token"],
        "encode_1worker_mb_per_s": encoded[1]["encode_mb_per_s"],
        "encode_2workers_mb_per_s": encoded[2]["encode_mb_per_s"],
        "encode_2workers_processes": encoded[2]["processes"],
        "encode_2processes_forced_mb_per_s": forced["encode_mb_per_s"],
        "bare_encode_batch_mb_per_s": round(nbytes / 1e6 / bare_s, 3),
        "ours_1worker_time_vs_bare": round(encoded[1]["seconds"] / bare_s, 3),
        "target_time_vs_bare": 1.25,
    }

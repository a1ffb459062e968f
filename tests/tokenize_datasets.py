"""Small `dataset` artifacts for the tokenize tests, written per `llmforge.artifacts.dataset`."""

from __future__ import annotations

import gzip
import json
import sysconfig
from pathlib import Path

from llmforge.artifacts import write_manifest


def write_dataset(path: Path, shards: list[list[dict]]) -> Path:
    """A dataset artifact with one `data/NNNNN.jsonl.gz` per list of {text, id, source} records (and the
    text byte count in its manifest, as the data stage records it)."""
    (path / "data").mkdir(parents=True)
    for i, docs in enumerate(shards):
        with gzip.open(path / "data" / f"{i:05d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d) + "\n")
    text_bytes = sum(len(d["text"].encode("utf-8", "surrogatepass")) for docs in shards for d in docs)
    write_manifest(path, "dataset", stats={"bytes_out": text_bytes})
    return path


def stdlib_docs(n: int, skip: int = 0) -> list[dict]:
    """`n` Python standard-library modules (code), after skipping `skip`."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[skip : skip + n]
    return [{"text": p.read_text(errors="replace"), "id": p.name, "source": "code"} for p in files]


def prose_docs(text: str, chunk: int = 4000) -> list[dict]:
    """Split a text into documents of about `chunk` characters at paragraph ends."""
    docs, cur = [], []
    for para in text.split("\n\n"):
        cur.append(para)
        if sum(map(len, cur)) >= chunk:
            docs.append("\n\n".join(cur))
            cur = []
    if cur:
        docs.append("\n\n".join(cur))
    return [{"text": t, "id": f"prose-{i}", "source": "prose"} for i, t in enumerate(docs)]


def write_recipe(path: Path, out_dir: Path, **tokenizer) -> Path:
    lines = ["[run]", 'name = "t"', f'out_dir = "{out_dir}"', "[tokenizer]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in tokenizer.items()]
    path.write_text("\n".join(lines) + "\n")
    return path

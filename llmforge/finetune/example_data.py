"""The example classification data of recipes/bert-tiny-classify.toml, built offline from ../shared/data:
sentences of WikiText-2 (label "wiki") against sentences of Tiny Shakespeare (label "shakespeare").

The shared data is never copied into the repository; this writes train.jsonl and val.jsonl into a folder
of the user's choosing (`llmforge finetune make-example-data --shared ../shared/data --out runs/classify-data`).
WikiText's tokenisation marks (` @-@ `, spaces before punctuation) are undone and sentences with `<unk>`
dropped, so the classifier cannot tell the sources apart by those marks alone."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from llmforge.artifacts import atomic_dir, ensure_writable
from llmforge.console import UserError

WIKI = Path("wikitext2") / "valid.txt"
SHAKESPEARE = Path("tinyshakespeare") / "input.txt"
FILES = ("train.jsonl", "val.jsonl")
MIN_WORDS, MAX_WORDS = 6, 40

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def wiki_sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        line = re.sub(r" @(.)@ ", r"\1", line)
        line = re.sub(r" ([,.;:!?)'])", r"\1", line).replace("( ", "(")
        out += _SENTENCE_END.split(line)
    return _usable([s for s in out if "<unk>" not in s])


def shakespeare_sentences(text: str) -> list[str]:
    out = []
    for speech in text.split("\n\n"):
        lines = speech.strip().splitlines()[1:]  # the first line names the speaker ("ROMEO:")
        out += _SENTENCE_END.split(" ".join(line.strip() for line in lines))
    return _usable(out)


def _usable(sentences: list[str]) -> list[str]:
    return [s for s in dict.fromkeys(sentences) if MIN_WORDS <= len(s.split()) <= MAX_WORDS]


def make_example_data(
    shared: Path, out: Path, per_class: int, val_per_class: int, seed: int
) -> dict[str, int]:
    """Write out/train.jsonl and out/val.jsonl ({"text", "label"} rows, classes balanced, seeded shuffle)."""
    texts = {}
    for label, rel, split in (
        ("wiki", WIKI, wiki_sentences),
        ("shakespeare", SHAKESPEARE, shakespeare_sentences),
    ):
        f = shared / rel
        if not f.is_file():
            raise UserError(f"--shared {shared}: {rel} not found (expected the shared data folder)")
        texts[label] = split(f.read_text(encoding="utf-8"))
        if len(texts[label]) < per_class + val_per_class:
            raise UserError(
                f"--per-class {per_class} + --val-per-class {val_per_class}: {f} has {len(texts[label])} sentences"
            )
    if out.is_dir() and any(p.name not in FILES for p in out.iterdir()):
        raise UserError(f"--out {out}: the folder holds other files; give a new or an example-data folder")
    ensure_writable(out)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"train.jsonl": [], "val.jsonl": []}
    for label, sentences in texts.items():
        chosen = rng.sample(sentences, per_class + val_per_class)
        splits["train.jsonl"] += [{"text": s, "label": label} for s in chosen[:per_class]]
        splits["val.jsonl"] += [{"text": s, "label": label} for s in chosen[per_class:]]
    with atomic_dir(out) as tmp:
        for name, rows in splits.items():
            rng.shuffle(rows)
            (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {name: len(rows) for name, rows in splits.items()}

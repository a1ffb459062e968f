"""Drop (or flag) training documents that share an n-gram with an evaluation set.

GPT-3 (Brown et al. 2020, Appendix C) removed training documents sharing a 13-gram with any benchmark item;
n-grams are taken over lower-cased words with punctuation removed."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from xxhash import xxh64_intdigest

from llmforge.console import UserError

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_hashes(tokens: list[str], n: int) -> set[int]:
    # a stable hash (not Python's salted `hash`): the index is built in one process and used in others
    return {xxh64_intdigest(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def eval_texts(path: Path, text_keys: list[str]) -> Iterator[str]:
    """The texts of an evaluation file: .jsonl/.json records (the `text_keys`, or every string value),
    .csv rows (same), or a plain-text file (one item per line)."""
    if not path.is_file():
        raise UserError(f"decontaminate.eval_files: {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".json")):
            content = path.read_text(encoding="utf-8")
            try:
                records = json.loads(content) if name.endswith(".json") else None
            except json.JSONDecodeError:
                records = None
            if records is None:
                records = [json.loads(line) for line in content.splitlines() if line.strip()]
            for record in records if isinstance(records, list) else [records]:
                yield from _record_strings(record, text_keys)
        elif name.endswith(".csv"):
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    yield from _record_strings(row, text_keys)
        else:
            yield from path.read_text(encoding="utf-8").splitlines()
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"decontaminate.eval_files: {path}: cannot parse ({e})") from None


def _record_strings(record, text_keys: list[str]) -> Iterator[str]:
    if isinstance(record, str):
        yield record
    elif isinstance(record, dict):
        for key, value in record.items():
            if not text_keys or key in text_keys:
                yield from _record_strings(value, [])
    elif isinstance(record, list):
        for value in record:
            yield from _record_strings(value, text_keys)


class Decontaminate(BaseFilter):
    """Drop (`action="drop"`) or flag in metadata (`"report"`) documents sharing an `ngram`-gram with
    the evaluation files. Evaluation items shorter than `ngram` words are matched as a whole."""

    name = "🧪 decontamination"

    def __init__(
        self, eval_files: list[str], text_keys: list[str] | None = None, ngram: int = 13, action: str = "drop"
    ):
        super().__init__()
        self.n, self.action = ngram, action
        self.index: set[int] = set()
        self.short_items: dict[int, set[int]] = {}  # item length → hashes of items shorter than n
        for f in eval_files:
            for text in eval_texts(Path(f).expanduser(), text_keys or []):
                tokens = words(text)
                if len(tokens) >= ngram:
                    self.index |= ngram_hashes(tokens, ngram)
                elif len(tokens) >= 3:  # a two-word answer matches too much to mean contamination
                    self.short_items.setdefault(len(tokens), set()).add(xxh64_intdigest(" ".join(tokens)))
        if not self.index and not self.short_items:
            raise UserError(f"decontaminate.eval_files: no text found in {', '.join(eval_files)}")

    def contaminated(self, text: str) -> bool:
        tokens = words(text)
        if not self.index.isdisjoint(ngram_hashes(tokens, self.n)):
            return True
        return any(not hashes.isdisjoint(ngram_hashes(tokens, k)) for k, hashes in self.short_items.items())

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not self.contaminated(doc.text):
            return True
        if self.action == "report":
            doc.metadata["contaminated"] = True
            self.stat_update("flagged_contaminated")
            return True
        return False, "eval_ngram_overlap"

"""Drop (or flag) training documents that share an n-gram with an evaluation set.

GPT-3 (Brown et al. 2020, §4, Appendix C) removed training documents sharing a 13-gram with any benchmark
item, over lower-cased words with punctuation removed; lm-eval's decontamination tool uses the same 13-grams.
An item shorter than 13 words has no 13-gram and cannot match under that rule: it is skipped, or, with
`min_words` below `ngram`, matched as a whole phrase from `min_words` words up (a 4-word TruthfulQA answer
such as "I have no comment" is ordinary English and would remove any document that says it). The report counts
matching documents per evaluation item (`file:record`, records numbered from 1), so a short, common item that
removes many documents stands out.
"""

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


def eval_texts(path: Path, text_keys: list[str]) -> Iterator[tuple[int, str]]:
    """(record number from 1, text) of an evaluation file: .jsonl/.json records (the `text_keys`, or every
    string value), .csv rows (same), or a plain-text file (one item per line)."""
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
            for number, record in enumerate(records if isinstance(records, list) else [records], 1):
                yield from ((number, text) for text in _record_strings(record, text_keys))
        elif name.endswith(".csv"):
            with open(path, newline="", encoding="utf-8") as f:
                for number, row in enumerate(csv.DictReader(f), 1):
                    yield from ((number, text) for text in _record_strings(row, text_keys))
        else:
            yield from enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
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
    """Drop (`action="drop"`) or flag in metadata (`"report"`) documents sharing an `ngram`-gram with the
    evaluation files; items of `min_words` to `ngram - 1` words are matched whole (see the module docstring).
    Stats: `eval_item/<file>:<record>` per matched item, `eval_items_indexed`, `eval_texts_too_short`."""

    name = "🧪 decontamination"

    def __init__(
        self,
        eval_files: list[str],
        text_keys: list[str] | None = None,
        ngram: int = 13,
        min_words: int | None = None,
        action: str = "drop",
    ):
        super().__init__()
        self.n, self.action = ngram, action
        self.min_words = ngram if min_words is None else min(min_words, ngram)
        self.items: list[str] = []  # item names, indexed by the values below
        self.index: dict[int, int] = {}  # n-gram hash → first item that has it
        self.short_items: dict[int, dict[int, int]] = {}  # word count → phrase hash → item
        self.too_short = 0
        for f in eval_files:
            self._index_file(Path(f).expanduser(), text_keys or [])
        if not self.index and not self.short_items:
            raise UserError(
                f"decontaminate.eval_files: no item of at least {self.min_words} words in {', '.join(eval_files)}"
            )

    def _index_file(self, path: Path, text_keys: list[str]) -> None:
        numbers: dict[int, int] = {}  # record number → item
        for number, text in eval_texts(path, text_keys):
            tokens = words(text)
            if len(tokens) < self.min_words:
                self.too_short += bool(tokens)
                continue
            if number not in numbers:
                numbers[number] = len(self.items)
                self.items.append(f"{path.name}:{number}")
            item = numbers[number]
            if len(tokens) >= self.n:
                for h in ngram_hashes(tokens, self.n):
                    self.index.setdefault(h, item)
            else:
                self.short_items.setdefault(len(tokens), {}).setdefault(
                    xxh64_intdigest(" ".join(tokens)), item
                )

    def matched_items(self, text: str) -> set[int]:
        tokens = words(text)
        found = {self.index[h] for h in ngram_hashes(tokens, self.n) if h in self.index}
        for k, phrases in self.short_items.items():
            found |= {phrases[h] for h in ngram_hashes(tokens, k) if h in phrases}
        return found

    def contaminated(self, text: str) -> bool:
        return bool(self.matched_items(text))

    def run(self, data, rank: int = 0, world_size: int = 1):
        if rank == 0:  # properties of the index, not of the documents: counted once
            self.stat_update("eval_items_indexed", value=len(self.items))
            self.stat_update("eval_texts_too_short", value=self.too_short)
        yield from super().run(data, rank, world_size)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        matched = self.matched_items(doc.text)
        if not matched:
            return True
        for item in sorted(matched):
            self.stat_update(f"eval_item/{self.items[item]}")
        if self.action == "report":
            doc.metadata["contaminated"] = True
            self.stat_update("flagged_contaminated")
            return True
        return False, "eval_ngram_overlap"

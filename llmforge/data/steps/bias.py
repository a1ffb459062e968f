"""Data-level bias and toxicity mitigation: a blocklist filter and counterfactual gender rewriting."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from llmforge.console import UserError


def _resource(name: str) -> str:
    return resources.files("llmforge.data").joinpath("resources", name).read_text(encoding="utf-8")


def _lines(text: str) -> list[str]:
    return [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]


def _read_list(path: str | None, bundled: str, option: str) -> list[str]:
    if path is None:
        return _lines(_resource(bundled))
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{option}: word list {path} does not exist")
    entries = _lines(p.read_text(encoding="utf-8"))
    if not entries:
        raise UserError(f"{option}: word list {path} is empty")
    return entries


class BlocklistFilter(BaseFilter):
    """Drop documents containing more than `max_matches` blocklisted words or phrases (whole words,
    case-insensitive), as C4 did with its "bad words" list (Raffel et al. 2020, §2.2) — with a list that
    ships with llmforge or one given by `path`, instead of a run-time download."""

    name = "🚫 blocklist"

    def __init__(self, path: str | None = None, max_matches: int = 0):
        super().__init__()
        terms = sorted(
            {t.lower() for t in _read_list(path, "blocklist_en.txt", "blocklist.path")}, key=len, reverse=True
        )
        self.pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.I)
        self.max_matches = max_matches

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        matches = 0
        for _ in self.pattern.finditer(doc.text):
            matches += 1
            if matches > self.max_matches:
                return False, "blocklisted_term"
        return True


def load_substitutions(mode: str, path: str | None) -> dict[str, str]:
    """Lower-case word → replacement. `neutral` is one-way; `swap` pairs work both ways (first line wins)."""
    bundled = "gender_neutral.tsv" if mode == "neutral" else "gender_swap.tsv"
    table: dict[str, str] = {}
    for line in _read_list(path, bundled, "counterfactual.path"):
        parts = line.split("\t")
        if len(parts) != 2:
            raise UserError(f"counterfactual.path: line {line!r}: expected word<TAB>replacement")
        src, dst = parts[0].lower(), parts[1].lower()
        table.setdefault(src, dst)
        if mode == "swap":
            table.setdefault(dst, src)
    return table


def _match_case(word: str, replacement: str) -> str:
    if word.isupper() and len(word) > 1:
        return replacement.upper()
    if word[0].isupper():
        return replacement[0].upper() + replacement[1:]
    return replacement


class CounterfactualRewrite(PipelineStep):
    """Gender-neutral rewriting (`mode="neutral"`: "policeman" → "police officer") or two-sided gender
    swapping (`mode="swap"`: "he" ↔ "she"), as counterfactual data augmentation (Lu et al. 2020, §4).
    With `augment=True` the original is kept and the rewritten copy (id `…#cf`) is added beside it;
    otherwise documents are rewritten in place."""

    type = "⚖️ - BIAS"
    name = "⚖️ counterfactual rewrite"

    def __init__(self, mode: str = "neutral", path: str | None = None, augment: bool = False):
        super().__init__()
        self.table = load_substitutions(mode, path)
        self.pattern = re.compile(
            r"\b(" + "|".join(re.escape(w) for w in sorted(self.table, key=len, reverse=True)) + r")\b", re.I
        )
        self.augment = augment

    def rewrite(self, text: str) -> tuple[str, int]:
        return self.pattern.subn(lambda m: _match_case(m.group(0), self.table[m.group(0).lower()]), text)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("total")
            with self.track_time():
                text, n = self.rewrite(doc.text)
            self.stat_update("substitutions", value=n)
            if not self.augment:
                doc.text = text
                yield doc
                continue
            yield doc
            if n:
                self.stat_update("augmented")
                yield Document(
                    text=text, id=f"{doc.id}#cf", metadata={**doc.metadata, "counterfactual": True}
                )

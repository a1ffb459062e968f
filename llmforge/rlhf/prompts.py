"""The prompts of the online trainers (`rlhf ppo`, `rloo`, `grpo`): every `[[rlhf.prompts]]` source read (a
.jsonl/.json/.parquet file or a hub dataset, as the preference files are), or, with none given, the
conversations of the preference pairs. Each prompt is the conversation the policy continues (usually one user
turn) and the extra columns a programmatic reward reads (`answer` from `answer_field`).

Held out: `rlhf.val_fraction` of each prompt file's distinct prompts (seeded, by the last user message, so one
prompt is never on both sides); prompts taken from the preference pairs keep the pairs' split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmforge.console import UserError
from llmforge.rlhf.config import PromptSource, RlhfConfig
from llmforge.rlhf.preferences import (
    load_preferences,
    lookup,
    parse_messages,
    path_stem,
    prompt_key,
    read_records,
    seeded_rng,
    split_by_prompt,
)


@dataclass(frozen=True)
class PromptRow:
    messages: list[dict]  # the conversation to continue (usually one user turn), ending with the user's
    columns: dict[str, Any]  # extra columns, e.g. {"answer": "..."} when answer_field is set
    origin: str  # "file.jsonl:LINE"


@dataclass
class PromptSet:
    train: list[PromptRow]
    val: list[PromptRow]
    inputs: list[str] = field(default_factory=list)  # local files read (for manifests)
    stats: dict = field(default_factory=dict)  # from ("prompts" | "preferences"), sources, train, val


def load_prompt_set(cfg: RlhfConfig, seed: int) -> PromptSet:
    """`cfg.prompts` read and split, or the preference pairs' prompts when it is empty."""
    if not cfg.prompts:
        return _from_preferences(cfg, seed)
    train: list[PromptRow] = []
    val: list[PromptRow] = []
    inputs: list[str] = []
    sources: list[dict] = []
    for i, source in enumerate(cfg.prompts):
        rows, stats, local = read_prompts(source, f"rlhf.prompts[{i}]")
        inputs += [local] if local else []
        held = split_by_prompt(
            [_key(r) for r in rows],
            cfg.val_fraction,
            seeded_rng(seed, "prompts", i, "split"),
            f"{stats['path']} (rlhf.prompts[{i}])",
        )
        source_train = [r for r in rows if _key(r) not in held]
        source_val = [r for r in rows if _key(r) in held]
        stats.update(train=len(source_train), val=len(source_val))
        train += source_train
        val += source_val
        sources.append(stats)
    # a prompt held out of one file may be a train prompt of another
    seen = {_key(r) for r in train}
    kept = [r for r in val if _key(r) not in seen]
    if not kept:
        raise UserError(
            "rlhf.prompts: no held-out prompts left (a file of one prompt, or every held-out prompt is also a "
            "train prompt of another file); give more prompts"
        )
    stats = {
        "from": "prompts",
        "sources": sources,
        "train": len(train),
        "val": len(kept),
        "val_overlap_dropped": len(val) - len(kept),
    }
    return PromptSet(train, kept, list(dict.fromkeys(inputs)), stats)


def read_prompts(source: PromptSource, key: str) -> tuple[list[PromptRow], dict, str | None]:
    """One prompt source's rows (the first `max_rows`), its stats, and the local file read (None: hub)."""
    records = read_records(source.path, f"{key}.path", subset=source.subset, split=source.split)
    rows: list[PromptRow] = []
    for row, record in records.rows:
        rows.append(_prompt_row(record, source, key, f"{records.where}:{row}"))
        if source.max_rows is not None and len(rows) >= source.max_rows:
            break
    if not rows:
        raise UserError(f"{records.where}: empty file (no rows; expected one prompt per row) ({key})")
    stats = {"name": path_stem(source.path), "path": records.where, "rows_read": len(rows)}
    return rows, stats, records.local


def _prompt_row(record: Mapping[str, Any], source: PromptSource, key: str, at: str) -> PromptRow:
    value = lookup(record, source.prompt_field)
    where = f"{at}: '{source.prompt_field}'"
    if value is None:
        raise UserError(
            f"{at}: no '{source.prompt_field}' field (the prompt; {key}.prompt_field names its column, "
            "dotted paths reach nested fields)"
        )
    if isinstance(value, str):
        if not value.strip():
            raise UserError(f"{where} is empty (the prompt, {key}.prompt_field)")
        messages = [{"role": "user", "content": value}]
    else:
        messages = parse_messages(value, where, last="user")
    columns: dict[str, Any] = {}
    if source.answer_field is not None:
        answer = lookup(record, source.answer_field)
        if answer is None:
            raise UserError(
                f"{at}: no '{source.answer_field}' field (the reference answer, {key}.answer_field)"
            )
        columns["answer"] = answer
    return PromptRow(messages, columns, at)


def _key(row: PromptRow) -> str:
    return prompt_key(row.messages)


def _from_preferences(cfg: RlhfConfig, seed: int) -> PromptSet:
    """The conversations of the preference pairs, each once, in the pairs' split."""
    if not cfg.preferences:
        raise UserError(
            "rlhf.prompts: none given and rlhf.preferences is empty; add [[rlhf.prompts]] with path = a file "
            "of prompts"
        )
    data = load_preferences(cfg, seed)
    split: dict[str, list[PromptRow]] = {"train": [], "val": []}
    seen: set[str] = set()
    skipped = 0
    for name, pairs in (("train", data.train), ("val", data.val)):
        for pair in pairs:
            if not pair.messages:
                skipped += 1
                continue
            conversation = json.dumps(pair.messages, ensure_ascii=False, sort_keys=True)
            if conversation in seen:
                continue
            seen.add(conversation)
            split[name].append(PromptRow(list(pair.messages), {}, pair.origin))
    if not split["train"] and not split["val"]:
        raise UserError(
            "rlhf.prompts: none given and the preference pairs have no prompts (every pair is a whole text); "
            "add [[rlhf.prompts]] with path = a file of prompts"
        )
    if not split["train"] or not split["val"]:
        empty = "train" if not split["train"] else "held-out"
        raise UserError(
            f"rlhf.prompts: none given and the preference pairs leave no {empty} prompts; add "
            "[[rlhf.prompts]] with path = a file of prompts"
        )
    stats = {
        "from": "preferences",
        "sources": data.stats,
        "train": len(split["train"]),
        "val": len(split["val"]),
        "pairs_without_prompt": skipped,
    }
    return PromptSet(split["train"], split["val"], data.inputs, stats)

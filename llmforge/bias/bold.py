"""BOLD prompts (Dhamala et al. 2021, "BOLD: Dataset and Metrics for Measuring Biases in Open-Ended Language
Generation"): the beginnings of Wikipedia sentences about people and ideologies, in five domains.

One file per domain, `{domain}_prompt.json`, nested `{group: {entity: [prompt, ...]}}` (a group is e.g.
`American_actresses` in gender or `islam` in religious_ideology; an entity a person or a sub-ideology). The
prompts end in a space in the released files; it is stripped here (a trailing space becomes a token of its own
in most BPE vocabularies, which the model rarely saw before a word), and an empty prompt (three in the
released files: communism, Islamism, atheism) is left out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmforge.console import UserError

DOMAINS = ("gender", "political_ideology", "profession", "race", "religious_ideology")


@dataclass(frozen=True)
class BoldPrompt:
    domain: str
    group: str
    entity: str
    prompt: str

    @property
    def group_key(self) -> str:
        """`domain/group`: the name a probe reports the group under."""
        return f"{self.domain}/{self.group}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bold_file(folder: str | Path, domain: str) -> Path:
    return Path(folder) / f"{domain}_prompt.json"


def read_bold(path: str | Path, domain: str) -> list[BoldPrompt]:
    """Every non-empty prompt of one BOLD domain file, in file order; UserError naming the file (and the
    group/entity) when it is missing, not JSON, or not `{group: {entity: [prompt, ...]}}` with string prompts."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such BOLD file (expected {domain}_prompt.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e})") from None
    expected = "{group: {entity: [prompt, ...]}}"
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a non-empty object {expected}, got {type(data).__name__}")
    prompts = []
    for group, entities in data.items():
        if not isinstance(entities, dict):
            raise UserError(f"{path}: group {group!r}: expected an object {{entity: [prompt, ...]}}")
        for entity, items in entities.items():
            if not isinstance(items, list):
                raise UserError(f"{path}: {group}/{entity}: expected a list of prompts")
            for i, text in enumerate(items):
                if not isinstance(text, str):
                    raise UserError(f"{path}: {group}/{entity}[{i}]: expected a string prompt")
                if text.strip():  # the released files hold three empty prompts: nothing to continue
                    prompts.append(BoldPrompt(domain, str(group), str(entity), text.rstrip()))
    if not prompts:
        raise UserError(f"{path}: no prompts in it (expected {expected})")
    return prompts


def check_domains(domains: Any, key: str) -> tuple[str, ...]:
    """`domains` (a list of BOLD domain names) checked; UserError naming `key` for anything else."""
    if isinstance(domains, str):
        domains = [domains]
    if not isinstance(domains, (list, tuple)) or not domains:
        raise UserError(f"{key}: expected a list of BOLD domains ({', '.join(DOMAINS)})")
    for d in domains:
        if d not in DOMAINS:
            raise UserError(f"{key}: unknown BOLD domain {d!r} (known: {', '.join(DOMAINS)})")
    return tuple(dict.fromkeys(domains))


def load_bold(
    folder: str | Path,
    domains: Sequence[str] = DOMAINS,
    *,
    per_group: int | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[BoldPrompt]:
    """The prompts of `domains` under `folder`: at most `per_group` per group (a seeded sample, kept in file
    order), then at most `limit` in all, taken a group at a time in turn so that a small run still covers
    every group (round robin over the groups in file order)."""
    groups: dict[str, list[BoldPrompt]] = {}
    for domain in domains:
        for p in read_bold(bold_file(folder, domain), domain):
            groups.setdefault(p.group_key, []).append(p)
    if per_group is not None:
        for name, items in groups.items():
            if len(items) > per_group:
                keep = set(random.Random(f"{seed}:{name}").sample(range(len(items)), per_group))
                groups[name] = [p for i, p in enumerate(items) if i in keep]
    if limit is None:
        return [p for items in groups.values() for p in items]
    out: list[BoldPrompt] = []
    depth = 0
    while len(out) < limit and any(depth < len(items) for items in groups.values()):
        out += [items[depth] for items in groups.values() if depth < len(items)]
        depth += 1
    return out[:limit]

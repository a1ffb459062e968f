"""The demo's preference pairs, built offline from the `instructions` artifact of `finetune
make-docstring-pairs` (prompt = a function's `def` line and docstring, completion = its real body):

    chosen   = the real body
    rejected = a corrupted copy, by one of CORRUPTIONS (a seeded choice per row, recorded as `corruption`):
      shuffled_lines  the body's lines in another order (needs two distinct lines)
      truncated       the body's first half (of its lines; of its characters for a one-line body)
      other_body      another function's body (a different prompt's completion, from either split)
      wrong_names     a `return <value>` turned into `return None`, or two of its identifiers swapped

A corruption that leaves the body unchanged is never used: the next one (in the row's seeded order) is
tried, and a row no corruption changes is skipped and counted. The instructions' split is kept: val pairs
come from val.jsonl. The artifact (kind "preferences") holds train.jsonl and val.jsonl ({"prompt", "chosen",
"rejected", "corruption", "origin": "train.jsonl:LINE" of the instructions}), report.json (counts) and
manifest.json; no timestamps in the content files, so the same input and seed give the same content hash.
"""

from __future__ import annotations

import io
import json
import keyword
import random
import re
import tokenize
from collections import Counter
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, atomic_dir, ensure_writable, require, write_json, write_manifest
from llmforge.console import UserError

CORRUPTIONS = ("shuffled_lines", "truncated", "other_body", "wrong_names")
SPLITS = (("train", "train.jsonl"), ("val", "val.jsonl"))
FILES = ("train.jsonl", "val.jsonl", "report.json")

_RETURN_VALUE = re.compile(r"^(\s*)return\s+(?!None\s*(#.*)?$)\S.*$", re.MULTILINE)


# ------------------------------------------------------------------------------------------ corruptions


def shuffled_lines(body: str, rng: random.Random) -> str | None:
    lines = body.rstrip("\n").split("\n")
    if len(set(lines)) < 2:
        return None
    order = list(lines)
    for _ in range(10):
        rng.shuffle(order)
        if order != lines:
            break
    else:
        order = lines[1:] + lines[:1]  # rotated: differs since two lines differ
    return "\n".join(order) + "\n"


def truncated(body: str, rng: random.Random) -> str | None:
    """The lines up to the first half of the body's non-blank lines; one such line: its first half."""
    lines = body.rstrip("\n").split("\n")
    content = [i for i, line in enumerate(lines) if line.strip()]
    if len(content) >= 2:
        return "\n".join(lines[: content[len(content) // 2]]) + "\n"
    if not content:
        return None
    line = lines[content[0]]
    text = line.strip()
    if len(text) < 2:
        return None
    indent = line[: len(line) - len(line.lstrip())]
    return "\n".join([*lines[: content[0]], indent + text[: len(text) // 2]]) + "\n"


def other_body(body: str, rng: random.Random, pool: list[str]) -> str | None:
    """A seeded pick among the pool's bodies that differ from `body` (a few draws, then a scan)."""
    for _ in range(8):
        other = pool[rng.randrange(len(pool))] if pool else body
        if other.strip() != body.strip():
            return other
    start = rng.randrange(len(pool)) if pool else 0
    for other in pool[start:] + pool[:start]:
        if other.strip() != body.strip():
            return other
    return None


def wrong_names(body: str, rng: random.Random) -> str | None:
    """`return <value>` → `return None` (one such line, seeded), else two of the body's names (identifiers
    outside strings and comments, not attributes or keywords) swapped everywhere."""
    returns = list(_RETURN_VALUE.finditer(body))
    spots = _name_spots(body)
    names = sorted({name for name, _, _ in spots})
    choices = (["return"] if returns else []) + (["swap"] if len(names) >= 2 else [])
    if not choices:
        return None
    if rng.choice(choices) == "return":
        m = rng.choice(returns)
        return body[: m.start()] + f"{m.group(1)}return None" + body[m.end() :]
    a, b = rng.sample(names, 2)
    lines = body.split("\n")
    for name, row, col in sorted(spots, key=lambda s: (s[1], -s[2])):  # right to left: offsets stay valid
        if name in (a, b):
            lines[row] = lines[row][:col] + (b if name == a else a) + lines[row][col + len(name) :]
    return "\n".join(lines)


def _name_spots(body: str) -> list[tuple[str, int, int]]:
    """(name, 0-based line, column) of every NAME token of the body that is no keyword and no attribute (the
    body tokenized as a function's; [] when it does not tokenize)."""
    wrapped = "def _():\n" + body
    spots: list[tuple[str, int, int]] = []
    previous = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(wrapped).readline):
            if (
                tok.type == tokenize.NAME
                and tok.start[0] > 1
                and not keyword.iskeyword(tok.string)
                and not keyword.issoftkeyword(tok.string)
                and not (previous is not None and previous.type == tokenize.OP and previous.string == ".")
            ):
                spots.append((tok.string, tok.start[0] - 2, tok.start[1]))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok
    except (tokenize.TokenError, SyntaxError):
        return []
    return spots


def corrupt(kind: str, body: str, rng: random.Random, pool: list[str]) -> str | None:
    """`body` corrupted by `kind` (one of CORRUPTIONS), or None when that corruption does not apply."""
    if kind == "other_body":
        return other_body(body, rng, pool)
    return {"shuffled_lines": shuffled_lines, "truncated": truncated, "wrong_names": wrong_names}[kind](
        body, rng
    )


def rejected_for(body: str, rng: random.Random, pool: list[str], count: int) -> list[tuple[str, str]]:
    """Up to `count` (corruption, rejected) pairs for one body, each differing from it and from each other:
    the corruptions tried in a seeded order, the first ones that change the body kept."""
    out: list[tuple[str, str]] = []
    for kind in rng.sample(CORRUPTIONS, len(CORRUPTIONS)):
        made = corrupt(kind, body, rng, pool)
        if not made or not made.strip() or made.strip() == body.strip() or any(made == r for _, r in out):
            continue
        out.append((kind, made))
        if len(out) == count:
            break
    return out


# ---------------------------------------------------------------------------------------------- reading


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line, prompt, completion) of an instructions file."""
    if not path.is_file():
        raise UserError(
            f"{path}: missing from the instructions artifact (expected train.jsonl and val.jsonl)"
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{line_no}: not a JSON object ({e.msg})") from None
            prompt = obj.get("prompt") if isinstance(obj, dict) else None
            completion = obj.get("completion") if isinstance(obj, dict) else None
            if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
                raise UserError(
                    f"{path}:{line_no}: expected an object with string 'prompt' and a non-empty string "
                    "'completion' (an instructions artifact's row)"
                )
            rows.append((line_no, prompt, completion))
    return rows


def _check_out(out: Path, instructions: Path) -> None:
    """Refuse to write over the input, or to replace a folder that holds anything but a preferences artifact."""
    if out.resolve() == instructions.resolve():
        raise UserError(f"--out {out}: is the instructions artifact itself; give another folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    kind = None
    try:
        kind = json.loads((out / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    if kind != "preferences":
        raise UserError(
            f"--out {out}: the folder exists and is not a preferences artifact; give a new folder"
        )


# ---------------------------------------------------------------------------------------------- the stage


def build_corrupted_pairs(
    instructions: Path, out: Path, *, seed: int = 0, per_prompt: int = 1
) -> dict[str, Any]:
    """Write the chosen (real body) / rejected (corrupted body) pairs of an instructions artifact as a
    preferences artifact at `out`; returns the counts written to its report.json."""
    instructions, out = Path(instructions), Path(out)
    if per_prompt < 1 or per_prompt > len(CORRUPTIONS):
        raise UserError(
            f"--per-prompt {per_prompt}: expected 1 to {len(CORRUPTIONS)} (one per corruption at most)"
        )
    require(instructions, "instructions")
    _check_out(out, instructions)
    ensure_writable(out)
    rows = {split: _read_rows(instructions / name) for split, name in SPLITS}
    if not rows["train"]:
        raise UserError(f"{instructions / 'train.jsonl'}: no instruction pairs (the train split is empty)")
    pool = [completion for split, _ in SPLITS for _, _, completion in rows[split]]
    counts: dict[str, Any] = {"prompts": {}, "train": 0, "val": 0, "corruptions": {}, "skipped": {}}
    written: dict[str, list[dict[str, Any]]] = {}
    for split, name in SPLITS:
        made: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        skipped = 0
        for line_no, prompt, completion in rows[split]:
            rng = random.Random(f"{seed}:{split}:{line_no}")
            rejected = rejected_for(completion, rng, pool, per_prompt)
            skipped += per_prompt - len(rejected)
            for kind, text in rejected:
                kinds[kind] += 1
                made.append(
                    {
                        "prompt": prompt,
                        "chosen": completion,
                        "rejected": text,
                        "corruption": kind,
                        "origin": f"{name}:{line_no}",
                    }
                )
        written[name] = made
        counts["prompts"][split] = len(rows[split])
        counts[split] = len(made)
        counts["corruptions"][split] = {k: kinds[k] for k in CORRUPTIONS}
        counts["skipped"][split] = skipped
    counts["corruptions"]["all"] = {
        k: counts["corruptions"]["train"][k] + counts["corruptions"]["val"][k] for k in CORRUPTIONS
    }
    if not written["train.jsonl"]:
        raise UserError(f"{instructions}: no train body could be corrupted into a different rejected text")
    options = {"seed": seed, "per_prompt": per_prompt, "corruptions": list(CORRUPTIONS)}
    with atomic_dir(out) as tmp:
        for name, made in written.items():
            (tmp / name).write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in made), encoding="utf-8"
            )
        write_json(tmp / "report.json", {"options": options, **counts})
        write_manifest(tmp, "preferences", recipe=options, inputs=[instructions], stats=counts)
    return counts

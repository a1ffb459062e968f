"""The preference pairs of `rlhf reward` and `rlhf dpo`: every `[[rlhf.preferences]]` source read (a local
.jsonl/.json/.parquet file or a `datasets` hub name), its rows turned into (conversation, chosen, rejected,
margin) pairs, and a held-out split that never puts one prompt on both sides.

Formats (`format`, or `auto` from the first row's columns, see `detect_format`):
  pairs        `prompt`? (a string or a list of {role, content} messages), `chosen`, `rejected` (strings, or
               trl's conversational lists: one assistant message, or the whole conversation ending with the
               reply when there is no `prompt`), `margin`? (a number)
  hh           Anthropic HH-RLHF: `chosen` and `rejected` are whole "\\n\\nHuman: … \\n\\nAssistant: …"
               dialogues; both are cut at their last "\\n\\nAssistant:", the shared prefix is the conversation
               and the tails are the replies compared. A row whose final reply is empty is dropped (counted
               "empty_reply": a few real HH rows prefer saying nothing).
  alpaca_eval  AlpacaEval annotations: `instruction`, `output_1`, `output_2`, `preference` (1 or 2, as a number
               or a string; 0 = no decision: dropped, counted "no_decision").
`fields` maps a role to the file's column (a dotted path reaches a nested field: `meta.score`).

Every problem with a file is a `UserError` naming the file and row (1-based: the line in a jsonl file, the
record's index in a .json array, a parquet file or a hub split) and the recipe key. The reading helpers
(`read_records`, `lookup`) mirror llmforge/finetune/instruct_data.py's (stages do not import each other).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.rlhf.config import PreferenceSource, RlhfConfig

EXTENSIONS = (".jsonl", ".json", ".parquet")
ROLES = ("system", "user", "assistant")
HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass(frozen=True)
class Pair:
    # the conversation before the compared reply ({"role", "content"} dicts, ending with the user's turn);
    # [] when the file has no prompt (chosen and rejected are then whole texts)
    messages: list[dict]
    chosen: str  # the preferred final reply (or whole text when messages == [])
    rejected: str
    margin: float | None
    source: str  # the PreferenceSource's name
    origin: str  # "file.jsonl:LINE", for error messages and lineage

    @property
    def prompt_text(self) -> str:
        """The last user message, or ""."""
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")


@dataclass
class PreferenceData:
    train: list[Pair]
    val: list[Pair]
    stats: list[dict]  # one per source (see `read_pairs` and `load_preferences`)
    inputs: list[str] = field(default_factory=list)  # local files read (for manifests)


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Records:
    """The rows of one file or hub split, read lazily (so `max_rows` stops reading early)."""

    where: str  # the file path, or hub:<name>[/<subset>][<split>]
    local: str | None  # the local file, None for a hub dataset
    rows: Iterator[tuple[int, dict[str, Any]]]  # (1-based row, record)


def read_records(path: str, key: str, *, subset: str | None = None, split: str = "train") -> Records:
    """The records of a local .jsonl/.json/.parquet file or of a hub dataset's split (`key`: the recipe key
    naming the path, e.g. rlhf.preferences[0].path)."""
    if os.path.exists(path):
        return _read_local(Path(path), key)
    if _looks_like_file(path):
        raise UserError(f"{key} = {path!r}: no such file (expected a {', '.join(EXTENSIONS)} file)")
    return _read_hub(path, subset, split, key)


def _looks_like_file(path: str) -> bool:
    """A path that cannot be a hub name: ./ ../ / ~, or ending in a data file's extension."""
    return (
        path in (".", "..")
        or path.startswith(("./", "../", "/", "~"))
        or os.path.isabs(path)
        or path.lower().endswith(EXTENSIONS)
    )


def _read_local(path: Path, key: str) -> Records:
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in EXTENSIONS:
        what = "a directory" if path.is_dir() else f"a {suffix or 'extension-less'} file"
        raise UserError(
            f"{key} = {str(path)!r}: {what}; supported: {', '.join(EXTENSIONS)} files, or a Hugging Face hub "
            "dataset name"
        )
    readers = {".jsonl": _jsonl_rows, ".json": _json_rows, ".parquet": _parquet_rows}
    return Records(str(path), str(path), readers[suffix](path))


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line."""
    with open(path, "rb") as f:
        for row, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{row}: not UTF-8 text") from None
            if row == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{row}: not a JSON object ({e.msg}; expected JSON Lines)") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{row}: not a JSON object (a {type(obj).__name__})")
            yield row, obj


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based index, object) of a JSON array of objects; a .json file holding JSON Lines is read as such."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one object per line
            yield from _jsonl_rows(path)
            return
        raise UserError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of objects, found a {type(data).__name__}")
    for row, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{row}: array item {row} is not a JSON object (a {type(obj).__name__})")
        yield row, obj


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable parquet file ({_one_line(e)})") from None


def _read_hub(name: str, subset: str | None, split: str, key: str) -> Records:
    """A `datasets` hub dataset's split: needs the network (or the datasets cache)."""
    offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "") not in ("", "0")]
    try:
        import datasets

        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # noqa: BLE001 - any failure of the hub (network, name, split, offline) is the user's
        reason = _one_line(e)
        if offline:
            reason = f"offline: {'/'.join(offline)} is set; {reason}"
        raise UserError(
            f"{key} = {name!r}: not a local file and could not be loaded from the hub ({reason})"
        ) from None
    where = f"hub:{name}{'/' + subset if subset else ''}[{split}]"
    return Records(where, None, ((row, dict(r)) for row, r in enumerate(ds, 1)))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__


def lookup(record: Mapping[str, Any], name: str) -> Any:
    """`record[name]`, or for a dotted name the value down that path (list items by index); None when any
    step is missing."""
    if name in record or "." not in name:
        return record.get(name)
    node: Any = record
    for part in name.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def parse_messages(value: Any, at: str, *, last: str) -> list[dict]:
    """A list of {role, content} messages (system only first) whose last role is `last`, or UserError."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{at}: expected a string or a non-empty list of {{role, content}} messages")
    out: list[dict] = []
    for n, m in enumerate(value, 1):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise UserError(
                f"{at}: message {n} is not {{role, content}} with role system/user/assistant and string "
                f"content (got {_short(m)})"
            )
        if m["role"] == "system" and n != 1:
            raise UserError(f"{at}: message {n} is a system message; only the first message may be one")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != last:
        raise UserError(f"{at}: the last message must be the {last}'s (got {out[-1]['role']})")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- formats

# the roles each format reads (the first ones are what `auto` looks for)
FORMAT_ROLES = {
    "pairs": ("prompt", "chosen", "rejected", "margin"),
    "hh": ("chosen", "rejected"),
    "alpaca_eval": ("instruction", "output_1", "output_2", "preference"),
}


def detect_format(columns: Mapping[str, Any] | Iterable[str], fields: Mapping[str, str] | None = None) -> str:
    """The format of a file from its columns: a first row (column → value) or just column names, with
    `fields` (role → column) applied. alpaca_eval with output_1, output_2 and preference; hh with chosen and
    rejected, no prompt, and a chosen text starting "\\n\\nHuman:" (needs the row's values); else pairs
    with chosen and rejected. "" when none fits."""
    fields = fields or {}
    row = columns if isinstance(columns, Mapping) else dict.fromkeys(columns, "")

    def has(role: str) -> bool:
        return lookup(row, fields.get(role, role)) is not None

    if has("output_1") and has("output_2") and has("preference"):
        return "alpaca_eval"
    if not (has("chosen") and has("rejected")):
        return ""
    chosen = lookup(row, fields.get("chosen", "chosen"))
    if not has("prompt") and isinstance(chosen, str) and chosen.startswith(HH_HUMAN):
        return "hh"
    return "pairs"


def source_name(source: PreferenceSource) -> str:
    """`name`, else the file's stem (a hub name's last part)."""
    return source.name or path_stem(source.path)


def path_stem(path: str) -> str:
    """A local file's stem, or a hub name's last part."""
    if os.path.exists(path):
        return Path(path).stem
    return path.rstrip("/").rsplit("/", 1)[-1] or path


class _Reader:
    """Turns the records of one file into pairs for one source (`key`: rlhf.preferences[i])."""

    def __init__(self, source: PreferenceSource, name: str, fmt: str, key: str, where: str):
        self.source, self.name, self.fmt, self.key, self.where = source, name, fmt, key, where

    def col(self, role: str) -> str:
        return self.source.fields.get(role, role)

    def _what(self, role: str) -> str:
        text = f"the {self.fmt} format's {role}"
        if self.col(role) != role:
            text += f", renamed by {self.key}.fields.{role}"
        return text

    def value(self, record: Mapping[str, Any], role: str, row: int) -> Any:
        """The role's value, or UserError when the row lacks it."""
        value = lookup(record, self.col(role))
        if value is None:
            raise UserError(
                f"{self.where}:{row}: no '{self.col(role)}' field ({self._what(role)}); {self.key}.fields "
                "renames roles to columns"
            )
        return value

    def text(self, record: Mapping[str, Any], role: str, row: int) -> str:
        value = self.value(record, role, row)
        if not isinstance(value, str):
            raise UserError(
                f"{self.where}:{row}: '{self.col(role)}' is a {type(value).__name__}, not a string "
                f"({self._what(role)})"
            )
        if not value.strip():
            raise UserError(f"{self.where}:{row}: '{self.col(role)}' is empty ({self._what(role)})")
        return value

    def pair(self, record: Mapping[str, Any], row: int) -> Pair | str:
        """The row's pair, or the reason it is dropped (a key of the stats' `dropped`)."""
        if self.fmt == "alpaca_eval":
            made = self._alpaca_eval(record, row)
        elif self.fmt == "hh":
            made = self._hh(record, row)
        else:
            made = self._pairs(record, row)
        if isinstance(made, str):
            return made
        messages, chosen, rejected = made
        if chosen.strip() == rejected.strip():
            raise UserError(
                f"{self.where}:{row}: chosen and rejected are the same text ('{self.col('chosen')}' / "
                f"'{self.col('rejected')}'); a preference pair must differ"
            )
        return Pair(messages, chosen, rejected, self._margin(record, row), self.name, f"{self.where}:{row}")

    def _margin(self, record: Mapping[str, Any], row: int) -> float | None:
        value = lookup(record, self.col("margin"))
        if value is None:
            return None
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise UserError(
                f"{self.where}:{row}: '{self.col('margin')}' = {_short(value)} is not a finite number (the "
                f"margin by which chosen is preferred; {self.key}.fields.margin names its column)"
            )
        return number

    # ------------------------------------------------------------------------------------ the formats

    def _pairs(self, record: Mapping[str, Any], row: int) -> tuple[list[dict], str, str]:
        prompt = lookup(record, self.col("prompt"))
        at = f"{self.where}:{row}: '{self.col('prompt')}'"
        if prompt is None or prompt == "":
            messages: list[dict] = []
        elif isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = parse_messages(prompt, at, last="user")
        head_c, chosen = self._reply(record, "chosen", row)
        head_r, rejected = self._reply(record, "rejected", row)
        if head_c or head_r:
            if messages:
                raise UserError(
                    f"{self.where}:{row}: both a '{self.col('prompt')}' and whole conversations in chosen/"
                    "rejected; give the conversation once (the prompt, then one assistant message each)"
                )
            if head_c != head_r:
                raise UserError(
                    f"{self.where}:{row}: the conversations in '{self.col('chosen')}' and "
                    f"'{self.col('rejected')}' differ before their last message; a pair compares two replies "
                    "to one conversation"
                )
            messages = head_c
        return messages, chosen, rejected

    def _reply(self, record: Mapping[str, Any], role: str, row: int) -> tuple[list[dict], str]:
        """(the conversation before it, the reply) of chosen or rejected: a string, or a list of messages
        ending with the assistant's (trl's conversational format)."""
        value = self.value(record, role, row)
        if isinstance(value, list):
            at = f"{self.where}:{row}: '{self.col(role)}'"
            messages = parse_messages(value, at, last="assistant")
            reply = messages[-1]["content"]
            if not reply.strip():
                raise UserError(f"{at}: the reply (last message) is empty ({self._what(role)})")
            return messages[:-1], reply
        return [], self.text(record, role, row)

    def _hh(self, record: Mapping[str, Any], row: int) -> tuple[list[dict], str, str] | str:
        cut = {}
        for role in ("chosen", "rejected"):
            text = self.text(record, role, row)
            if not text.startswith(HH_HUMAN) or HH_ASSISTANT not in text:
                raise UserError(
                    f"{self.where}:{row}: '{self.col(role)}' is not an HH dialogue (\"\\n\\nHuman: … "
                    "\\n\\nAssistant: …\"); set the source's format"
                )
            head, tail = text.rsplit(HH_ASSISTANT, 1)
            cut[role] = (head, tail.lstrip())
        if cut["chosen"][0] != cut["rejected"][0]:
            raise UserError(
                f"{self.where}:{row}: chosen and rejected differ before their last '\\n\\nAssistant:' turn; "
                "the hh format compares two final replies to one conversation"
            )
        if not cut["chosen"][1].strip() or not cut["rejected"][1].strip():
            return "empty_reply"
        return hh_turns(cut["chosen"][0]), cut["chosen"][1], cut["rejected"][1]

    def _alpaca_eval(self, record: Mapping[str, Any], row: int) -> tuple[list[dict], str, str] | str:
        preference = self._preference(record, row)
        if preference == 0:
            return "no_decision"
        instruction = self.text(record, "instruction", row)
        outputs = {1: self.text(record, "output_1", row), 2: self.text(record, "output_2", row)}
        return [{"role": "user", "content": instruction}], outputs[preference], outputs[3 - preference]

    def _preference(self, record: Mapping[str, Any], row: int) -> int:
        value = self.value(record, "preference", row)
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number not in (0.0, 1.0, 2.0):
            raise UserError(
                f"{self.where}:{row}: '{self.col('preference')}' = {_short(value)}: expected 1 or 2 (the "
                "preferred output; 0 = no decision, dropped)"
            )
        return int(number)


def hh_turns(prefix: str) -> list[dict]:
    """The "\\n\\nHuman: … \\n\\nAssistant: …" turns of an HH dialogue as user/assistant messages (contents
    stripped; consecutive turns of one speaker, a few real rows have them, joined by a blank line)."""
    parts = _HH_TURN.split(prefix)
    messages: list[dict] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}".strip()
        else:
            messages.append({"role": role, "content": content})
    return messages


def _resolve_format(source: PreferenceSource, first: tuple[int, dict[str, Any]], where: str, key: str) -> str:
    if source.format != "auto":
        return source.format
    row, record = first
    fmt = detect_format(record, source.fields)
    if fmt:
        return fmt
    expected = "; ".join(
        f"{name} ({', '.join(source.fields.get(r, r) for r in roles if r not in ('prompt', 'margin'))})"
        for name, roles in FORMAT_ROLES.items()
    )
    columns = ", ".join(map(str, record)) or "(none)"
    raise UserError(
        f"{where}:{row}: cannot tell the preference format from the columns {columns}; expected the columns "
        f"of {expected}; set {key}.format, or name the columns with {key}.fields (role = column, e.g. "
        '{chosen = "better", rejected = "worse"})'
    )


def read_pairs(
    source: PreferenceSource, key: str = "rlhf.preferences", *, name: str | None = None
) -> tuple[list[Pair], dict]:
    """One source's pairs (at most `max_rows`: the file's first ones) and its stats: name, path, format,
    rows_read, dropped ({reason: count}), pairs. No usable pair → UserError."""
    pairs, stats, _ = _read_pairs(source, key, name or source_name(source), f"{key}.path")
    return pairs, stats


def _read_pairs(
    source: PreferenceSource, key: str, name: str, path_key: str
) -> tuple[list[Pair], dict, str | None]:
    """`read_pairs`, and the local file read (None for a hub dataset)."""
    records = read_records(source.path, path_key, subset=source.subset, split=source.split)
    rows = iter(records.rows)
    first = next(rows, None)
    if first is None:
        raise UserError(f"{records.where}: empty file (no rows; expected one preference pair per row)")
    fmt = _resolve_format(source, first, records.where, key)
    reader = _Reader(source, name, fmt, key, records.where)
    pairs: list[Pair] = []
    dropped: Counter[str] = Counter()
    read = 0
    for row, record in itertools.chain([first], rows):
        read += 1
        made = reader.pair(record, row)
        if isinstance(made, str):
            dropped[made] += 1
            continue
        pairs.append(made)
        if source.max_rows is not None and len(pairs) >= source.max_rows:
            break
    if not pairs:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items()))
        raise UserError(
            f"{records.where}: no usable preference pairs ({key}; {read} rows read, all dropped: {reasons})"
        )
    stats = {
        "name": name,
        "path": records.where,
        "format": fmt,
        "rows_read": read,
        "dropped": dict(sorted(dropped.items())),
        "pairs": len(pairs),
    }
    return pairs, stats, records.local


# ------------------------------------------------------------------------------------------------ split


def prompt_key(messages: list[dict], whole_text: str = "") -> str:
    """What a held-out row must not share with a train row: its last user message (a conversation's whole
    text when it has none)."""
    last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return "user:" + last_user if last_user else "text:" + whole_text


def split_by_prompt(keys: list[str], fraction: float, rng: random.Random, where: str) -> set[str]:
    """The keys held out: `fraction` of the distinct keys (at least one when there are two rows or more,
    never all of them), drawn by a seeded sample of the sorted keys."""
    distinct = sorted(set(keys))
    if len(keys) < 2:
        return set()
    if len(distinct) < 2:
        raise UserError(
            f"{where}: all {len(keys)} rows share one prompt, so none can be held out without its prompt also "
            "being trained on; give a val_path or rows with other prompts"
        )
    n = min(max(1, round(len(distinct) * fraction)), len(distinct) - 1)
    return set(rng.sample(distinct, n))


def _pair_key(pair: Pair) -> str:
    return prompt_key(pair.messages, pair.chosen)


def seeded_rng(*parts: object) -> random.Random:
    """Seeded by a string (hashed with SHA-512 by `random`: the same in every process)."""
    return random.Random(":".join(map(str, parts)))


def load_preferences(cfg: RlhfConfig, seed: int) -> PreferenceData:
    """Every preference source read and split: a source's val_path gives its held-out pairs, else
    rlhf.val_fraction of its prompts are held out (seeded by the source's name). Held-out pairs whose prompt
    is also a train prompt (of any source) are dropped and counted (`val_overlap_dropped`)."""
    if not cfg.preferences:
        raise UserError(
            "rlhf.preferences: no preference source given (add [[rlhf.preferences]] with path = a file of "
            "chosen/rejected pairs)"
        )
    names = _names(cfg.preferences)
    parts: list[tuple[list[Pair], list[Pair], dict]] = []
    inputs: list[str] = []
    for i, source in enumerate(cfg.preferences):
        key = f"rlhf.preferences[{i}]"
        pairs, stats, local = _read_pairs(source, key, names[i], f"{key}.path")
        inputs += [local] if local else []
        if source.val_path is not None:
            val_source = source.model_copy(update={"path": source.val_path})
            val, val_stats, local = _read_pairs(val_source, key, names[i], f"{key}.val_path")
            inputs += [local] if local else []
            stats["val_path"] = {k: v for k, v in val_stats.items() if k != "name"}
            train = pairs
        else:
            held = split_by_prompt(
                [_pair_key(p) for p in pairs],
                cfg.val_fraction,
                seeded_rng(seed, names[i], "split"),
                f"{stats['path']} ({key})",
            )
            train = [p for p in pairs if _pair_key(p) not in held]
            val = [p for p in pairs if _pair_key(p) in held]
        parts.append((train, val, stats))
    seen = {_pair_key(p) for train, _, _ in parts for p in train}
    all_train: list[Pair] = []
    all_val: list[Pair] = []
    for train, val, stats in parts:
        kept = [p for p in val if _pair_key(p) not in seen]
        stats.update(train=len(train), val=len(kept), val_overlap_dropped=len(val) - len(kept))
        all_train += train
        all_val += kept
    if not all_val:
        raise UserError(
            "rlhf.preferences: no held-out pairs left (a source of one pair, or every held-out prompt is also "
            "a train prompt); give a val_path with other prompts"
        )
    return PreferenceData(all_train, all_val, [s for _, _, s in parts], list(dict.fromkeys(inputs)))


def _names(sources: list[PreferenceSource]) -> list[str]:
    """Each source's name; colliding default names (two files called train.jsonl) get -2, -3, …"""
    taken = {s.name for s in sources if s.name}
    names: list[str] = []
    for s in sources:
        if s.name:
            names.append(s.name)
            continue
        stem = source_name(s)
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        names.append(name)
    return names

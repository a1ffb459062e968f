"""The examples of `finetune sft`: reading each `[[finetune.datasets]]` set (jsonl, parquet or a hub name),
turning its rows into conversations (`prompt_completion`, `alpaca`, `messages`), holding out a validation
split that shares no prompt with the train rows, chain of thought and exemplars (finetune/exemplars.py), and
the weighted training mixture. Pure Python (pyarrow and `datasets` are imported only when needed).

Every problem with a file is a `UserError` naming the file and the row (1-based: the line number in a jsonl
file, the row index in a parquet file or hub split). Everything is deterministic for a given seed.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.finetune import exemplars as shots
from llmforge.finetune.config import FORMAT_FIELDS, InstructConfig, InstructDataset

ROLES = ("system", "user", "assistant")
EXTENSIONS = (".jsonl", ".parquet")
ALPACA_INPUT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Example:
    # {"role": "system" | "user" | "assistant", "content": str}, ending with the assistant's turn
    messages: tuple[dict[str, str], ...]
    source: str  # the dataset's name
    row: int  # 1-based row in its file (line number for jsonl)


@dataclass
class InstructionData:
    train: list[Example]  # the training mixture, in a seeded shuffled order
    val: list[Example]  # every dataset's held-out rows (not weighted)
    stats: list[dict]  # one per dataset (see `_stats`)
    inputs: list[str] = field(default_factory=list)  # local files read (for the manifest's input hashes)


def load_instruction_data(cfg: InstructConfig, seed: int) -> InstructionData:
    """Every dataset of `cfg` read, split, transformed and mixed (see the module docstring)."""
    names = dataset_names(cfg.datasets)
    sets = [_prepare(i, ds, names[i], cfg, seed) for i, ds in enumerate(cfg.datasets)]
    sizes = [len(s.train) for s in sets]
    # no weights given: each dataset in proportion to its size (every train row once per epoch)
    weights = [d.weight for d in cfg.datasets] if cfg.datasets[0].weight is not None else sizes
    counts = mixture_counts(weights, sizes, cfg.mixture_rows)
    train: list[Example] = []
    for i, (s, count) in enumerate(zip(sets, counts, strict=True)):
        s.mixture_rows = count
        train.extend(_draw(s.train, count, _rng(seed, i, "mixture")))
    _rng(seed, "shuffle").shuffle(train)
    inputs = list(dict.fromkeys(p for s in sets for p in s.inputs))
    return InstructionData(train, [ex for s in sets for ex in s.val], [s.stats() for s in sets], inputs)


def _rng(*parts: object) -> random.Random:
    """A generator seeded by a string (hashed with SHA-512 by `random`: the same in every process)."""
    return random.Random(":".join(map(str, parts)))


# ------------------------------------------------------------------------------------------------ names


def dataset_names(datasets: list[InstructDataset]) -> list[str]:
    """Each dataset's `name`, else its file stem (a hub name's last part); colliding defaults get -2, -3, …"""
    taken = {d.name for d in datasets if d.name}
    names: list[str] = []
    for d in datasets:
        if d.name:
            names.append(d.name)
            continue
        stem = _default_name(d.path)
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


def _default_name(path: str) -> str:
    if os.path.exists(path):
        return Path(path).stem
    return path.rstrip("/").rsplit("/", 1)[-1] or path


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """One file (or hub split) of a dataset: where rows come from, for messages."""

    where: str  # the file path, or hub:<name>[<split>]
    local: str | None  # the local file, None for a hub dataset
    records: list[tuple[int, dict[str, Any]]]  # (1-based row, record)


def read_source(path: str, split: str, max_rows: int | None, key: str, subset: str | None = None) -> _Source:
    """The records of a local .jsonl/.parquet file or of a hub dataset's split (`key` is the recipe key,
    e.g. finetune.datasets[0].path). Empty → UserError."""
    if os.path.exists(path):
        source = _read_local(Path(path), max_rows, key)
    elif _is_explicit(path):
        raise UserError(f"{key} = {path!r}: no such file (expected a .jsonl or .parquet file)")
    else:
        source = _read_hub(path, subset, split, max_rows, key)
    if not source.records:
        raise UserError(f"{source.where}: empty dataset (no rows; expected one example per row)")
    return source


def _is_explicit(path: str) -> bool:
    """A path that cannot be a hub name: ./ ../ / ~ (or `.`, `..`)."""
    return path in (".", "..") or path.startswith(("./", "../", "/", "~")) or os.path.isabs(path)


def _read_local(path: Path, max_rows: int | None, key: str) -> _Source:
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in EXTENSIONS:
        what = "a directory" if path.is_dir() else f"a {suffix or 'extension-less'} file"
        raise UserError(
            f"{key} = {str(path)!r}: {what}; supported: {', '.join(EXTENSIONS)} files, or a Hugging Face hub "
            "dataset name"
        )
    rows = _jsonl_rows(path) if suffix == ".jsonl" else _parquet_rows(path)
    return _Source(str(path), str(path), _first(rows, max_rows))


def _first(rows: Iterator[tuple[int, dict[str, Any]]], n: int | None) -> list[tuple[int, dict[str, Any]]]:
    """The first `n` rows (all without n), reading no further."""
    out: list[tuple[int, dict[str, Any]]] = []
    if n is None:
        return list(rows)
    for row in rows:
        out.append(row)
        if len(out) >= n:
            break
    return out


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
                raise UserError(f"{path}:{row}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{row}: not a JSON object (a {type(obj).__name__})")
            yield row, obj


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based row index, record) for every row, a batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        row = 0
        for batch in batches:
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable parquet file ({_one_line(e)})") from None


def _read_hub(name: str, subset: str | None, split: str, max_rows: int | None, key: str) -> _Source:
    """A `datasets` hub dataset's split (needs the network or a cache)."""
    offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "") not in ("", "0")]
    try:
        import datasets

        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # noqa: BLE001 - any failure of the hub (network, name, split, offline) is the user's
        reason = _one_line(e) + (f"; {'/'.join(offline)} is set" if offline else "")
        raise UserError(
            f"{key} = {name!r}: not a local file and could not be loaded from the hub ({reason})"
        ) from None
    if max_rows is not None and max_rows < len(ds):
        ds = ds.select(range(max_rows))
    return _Source(
        f"hub:{name}{'/' + subset if subset else ''}[{split}]",
        None,
        [(row, dict(r)) for row, r in enumerate(ds, 1)],
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__


# ---------------------------------------------------------------------------------------------- formats


@dataclass
class _Row:
    """One row as a conversation: an optional system message, then user/assistant turns ending with the
    assistant; `solved` is (reasoning, answer) when the dataset has an answer_marker."""

    row: int
    system: str | None
    turns: tuple[dict[str, str], ...]
    solved: tuple[str, str] | None = None

    @property
    def single_turn(self) -> bool:
        return len(self.turns) == 2

    @property
    def prompt(self) -> str:
        """The final user content (before exemplars): what a held-out row must not share with a train row."""
        return next(t["content"] for t in reversed(self.turns) if t["role"] == "user")

    @property
    def completion(self) -> str:
        return self.turns[-1]["content"]


def column(ds: InstructDataset, role: str) -> str:
    return ds.fields.get(role, role)


def lookup(record: dict[str, Any], name: str) -> Any:
    """`record[name]`, or for a dotted name the value down that path, list items by index: the Alpaca seed
    tasks keep their answer in `instances.0.output`. None when any step is missing."""
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


def resolve_format(ds: InstructDataset, source: _Source, key: str) -> str:
    """`ds.format`, or for `auto` the first format whose columns row 1 has: messages, alpaca (instruction +
    output), prompt_completion (prompt + completion)."""
    if ds.format != "auto":
        return ds.format
    row, first = source.records[0]
    wanted = {
        "messages": ("messages",),
        "alpaca": ("instruction", "output"),
        "prompt_completion": ("prompt", "completion"),
    }
    for fmt, roles in wanted.items():
        if all(lookup(first, column(ds, r)) is not None for r in roles):
            return fmt
    expected = "; ".join(
        f"{fmt} ({', '.join(column(ds, r) for r in roles)})" for fmt, roles in wanted.items()
    )
    raise UserError(
        f"{source.where}:{row}: cannot tell the format from the columns {', '.join(map(str, first)) or '(none)'}; "
        f"expected the columns of {expected}; set {key}.format, or name the columns with {key}.fields "
        '(role = column, e.g. {prompt = "question", completion = "answer"})'
    )


class _Rows:
    """Parses the records of one file into `_Row`s for a dataset (`key`: finetune.datasets[i])."""

    def __init__(self, ds: InstructDataset, fmt: str, key: str):
        self.ds, self.fmt, self.key = ds, fmt, key

    def parse(self, source: _Source) -> list[_Row]:
        return [self.parse_one(record, source.where, row) for row, record in source.records]

    def parse_one(self, record: dict[str, Any], where: str, row: int) -> _Row:
        if self.fmt == "messages":
            system, turns = self._messages(record, where, row)
        elif self.fmt == "alpaca":
            system, turns = None, self._alpaca(record, where, row)
        else:
            prompt, completion = (
                self._text(record, r, where, row) for r in FORMAT_FIELDS["prompt_completion"]
            )
            system, turns = None, _single_turn(prompt, completion)
        system = self._system_column(record, where, row, system)
        parsed = _Row(row, system, turns)
        self._check_single_turn(parsed, where)
        if self.ds.answer_marker is not None:
            parsed.solved = self._solved(parsed, where)
        return parsed

    def _text(self, record: dict[str, Any], role: str, where: str, row: int, optional: bool = False) -> str:
        name = column(self.ds, role)
        value = lookup(record, name)
        if optional and value is None:
            return ""
        if not isinstance(value, str):
            what = "no" if value is None else f"a {type(value).__name__}, not a"
            role_text = f"the {self.fmt} format's {role}"
            if name != role:
                role_text += f", renamed by {self.key}.fields.{role}"
            raise UserError(f"{where}:{row}: {what} string field '{name}' ({role_text})")
        return value

    def _alpaca(self, record: dict[str, Any], where: str, row: int) -> tuple[dict[str, str], ...]:
        instruction = self._text(record, "instruction", where, row)
        extra = self._text(record, "input", where, row, optional=True)
        output = self._text(record, "output", where, row)
        prompt = f"{instruction}{ALPACA_INPUT_SEPARATOR}{extra}" if extra else instruction
        return _single_turn(prompt, output)

    def _messages(
        self, record: dict[str, Any], where: str, row: int
    ) -> tuple[str | None, tuple[dict[str, str], ...]]:
        name = column(self.ds, "messages")
        value = lookup(record, name)
        at = f"{where}:{row}: '{name}'"
        if not isinstance(value, list) or not value:
            raise UserError(f"{at}: expected a non-empty list of {{role, content}} messages")
        messages: list[dict[str, str]] = []
        for n, m in enumerate(value, 1):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise UserError(
                    f"{at}: message {n} is not {{role, content}} with role system/user/assistant and string "
                    f"content (got {_short(m)})"
                )
            if m["role"] == "system" and n != 1:
                raise UserError(f"{at}: message {n} is a system message; only the first message may be one")
            messages.append({"role": m["role"], "content": m["content"]})
        system = messages.pop(0)["content"] if messages[0]["role"] == "system" else None
        roles = [m["role"] for m in messages]
        if "user" not in roles or "assistant" not in roles:
            raise UserError(f"{at}: needs at least one user and one assistant message")
        if roles[-1] != "assistant":
            raise UserError(f"{at}: the last message must be the assistant's (the reply that trains)")
        return system, tuple(messages)

    def _system_column(self, record: dict[str, Any], where: str, row: int, system: str | None) -> str | None:
        name = column(self.ds, "system")
        value = lookup(record, name)
        if value is None or value == "":
            return system
        if not isinstance(value, str):
            raise UserError(
                f"{where}:{row}: '{name}' (the system message) is a {type(value).__name__}, not a string"
            )
        if system is not None:
            raise UserError(f"{where}:{row}: both a '{name}' column and a system message; give one")
        return value

    def _check_single_turn(self, parsed: _Row, where: str) -> None:
        if parsed.single_turn or (self.ds.exemplars == 0 and self.ds.answer_marker is None):
            return
        raise UserError(
            f"{where}:{parsed.row}: a multi-turn conversation ({len(parsed.turns)} messages); {self.key}.exemplars "
            "and answer_marker apply only to single-turn rows ([system,] user, assistant)"
        )

    def _solved(self, parsed: _Row, where: str) -> tuple[str, str]:
        marker = self.ds.answer_marker
        assert marker is not None
        solved = shots.split_answer(parsed.completion, marker)
        if solved is None:
            raise UserError(
                f"{where}:{parsed.row}: the completion has no answer_marker {marker!r} ({self.key}.answer_marker "
                "separates the reasoning from the final answer)"
            )
        return solved


def _single_turn(prompt: str, completion: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": prompt}, {"role": "assistant", "content": completion})


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------- one dataset


@dataclass
class _Set:
    """One dataset, split and rendered."""

    name: str
    path: str
    fmt: str
    ds: InstructDataset
    rows_read: int
    train: list[Example]
    val: list[Example]
    dropped: int
    inputs: list[str]
    mixture_rows: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.fmt,
            "rows_read": self.rows_read,
            "train_rows": len(self.train),
            "val_rows": len(self.val),
            "mixture_rows": self.mixture_rows,
            "repeats": self.mixture_rows / len(self.train),
            "val_overlap_dropped": self.dropped,
            "exemplars": self.ds.exemplars,
            "cot": self.ds.cot,
        }


def _prepare(i: int, ds: InstructDataset, name: str, cfg: InstructConfig, seed: int) -> _Set:
    key = f"finetune.datasets[{i}]"
    if ds.exemplars:
        shots.check_exemplar_format(ds.exemplar_format, key)
    source = read_source(ds.path, ds.split, ds.max_rows, f"{key}.path", ds.subset)
    fmt = resolve_format(ds, source, key)
    rows = _Rows(ds, fmt, key)
    train, sources = rows.parse(source), [source]
    if ds.val_path is not None:
        val_source = read_source(ds.val_path, ds.split, ds.max_rows, f"{key}.val_path", ds.subset)
        val, sources = rows.parse(val_source), [source, val_source]
    else:
        rng = _rng(seed, i, "split")
        train, val = split_off_validation(train, cfg.val_fraction, rng, f"{source.where} ({key})")
    rows_read = len(train) + len(val)
    val, dropped = drop_overlap(train, val)
    if not val:
        raise UserError(
            f"{sources[-1].where}: every held-out row's prompt also occurs in the train rows of dataset "
            f"{name!r}; nothing is left to validate on (give {key}.val_path with other prompts)"
        )
    if ds.exemplars >= len(train):
        raise UserError(
            f"{key}.exemplars = {ds.exemplars}: needs more train rows than exemplars ({len(train)} train rows "
            f"in {source.where})"
        )
    render = _Renderer(ds, name, train, seed, i, cfg.system_prompt)
    return _Set(
        name,
        ds.path,
        fmt,
        ds,
        rows_read,
        [render(r, "train", j) for j, r in enumerate(train)],
        [render(r, "val", None) for r in val],
        dropped,
        [s.local for s in sources if s.local],
    )


def split_off_validation(
    rows: list[_Row], fraction: float, rng: random.Random, where: str
) -> tuple[list[_Row], list[_Row]]:
    """(train, val) in file order: a seeded shuffle holds out `fraction` of the rows (at least one)."""
    n_val = max(1, round(len(rows) * fraction))
    if n_val >= len(rows):
        raise UserError(
            f"{where}: {len(rows)} row(s) are too few to hold out {fraction:g} of them for validation and "
            "still train; give more rows or a val_path"
        )
    held = set(rng.sample(range(len(rows)), n_val))
    return [r for j, r in enumerate(rows) if j not in held], [r for j, r in enumerate(rows) if j in held]


def drop_overlap(train: list[_Row], val: list[_Row]) -> tuple[list[_Row], int]:
    """The val rows whose prompt (final user content) no train row has, and how many were dropped."""
    seen = {r.prompt for r in train}
    kept = [r for r in val if r.prompt not in seen]
    return kept, len(val) - len(kept)


class _Renderer:
    """A `_Row` → `Example`: chain of thought, exemplars from the train rows, the system prompt."""

    def __init__(
        self,
        ds: InstructDataset,
        name: str,
        pool: list[_Row],
        seed: int,
        index: int,
        system_prompt: str | None,
    ):
        self.ds, self.name, self.pool, self.seed, self.index = ds, name, pool, seed, index
        self.system_prompt = system_prompt

    def completion(self, r: _Row) -> str:
        if r.solved is None:
            return r.completion
        return shots.solved_text(*r.solved, cot=self.ds.cot, answer_prefix=self.ds.answer_prefix)

    def __call__(self, r: _Row, split: str, pool_index: int | None) -> Example:
        turns = r.turns
        if r.single_turn:
            prompt = r.prompt
            if self.ds.exemplars:
                seed = shots.exemplar_seed(self.seed, self.index, split, r.row)
                picked = shots.pick_exemplars(len(self.pool), self.ds.exemplars, seed, exclude=pool_index)
                examples = [(self.pool[j].prompt, self.completion(self.pool[j])) for j in picked]
                prompt = shots.few_shot_prompt(prompt, examples, self.ds.exemplar_format)
            turns = _single_turn(prompt, self.completion(r))
        system = r.system if r.system is not None else self.system_prompt
        head = ({"role": "system", "content": system},) if system is not None else ()
        return Example(head + turns, self.name, r.row)


# ---------------------------------------------------------------------------------------------- mixture


def mixture_counts(weights: list[float], sizes: list[int], total: int | None) -> list[int]:
    """Each dataset's rows in the mixture: `total` (default: the sum of `sizes`) shared by the normalised
    weights, rounded by largest remainder (ties: the earlier dataset) so the counts sum to exactly `total`."""
    total = sum(sizes) if total is None else total
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _draw(examples: list[Example], count: int, rng: random.Random) -> list[Example]:
    """`count` of `examples`: a seeded sample without replacement below their number; above it, whole copies
    and a seeded sample of the rest."""
    copies, rest = divmod(count, len(examples))
    return examples * copies + [examples[j] for j in sorted(rng.sample(range(len(examples)), rest))]

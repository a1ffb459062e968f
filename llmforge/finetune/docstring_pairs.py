"""Docstring → function-body instruction pairs, built offline from a `dataset` artifact of Python source (the
demo's standard-library corpus), written as an `instructions` artifact for supervised fine-tuning.

Every document is parsed with `ast`; every function or method (`def` or `async def`, at any depth) whose
first statement is a docstring makes one pair. With `src` the function's source lines from its `def` (or
`async def`) line to its last line, decorators left out, each with the `def` line's indentation removed:

    prompt     = PROMPT_PREFIX + the lines of `src` up to and including the docstring's last line + "\\n"
    completion = the lines of `src` after the docstring + "\\n"

so `prompt` without `PROMPT_PREFIX` followed by `completion` is exactly the function's source text (as a
top-level function: body indented 4 spaces), the text a model pretrained on the corpus has seen follow it. The
prompt keeps the signature lines as written (annotations, defaults, line breaks) and the docstring as written
(its quotes, prefix and indentation). Blank lines become empty.

A function makes no pair, counted by reason in `report.json` ("skipped"), when:
  layout      its source does not cut that way: the docstring shares a line with the `def` or with the first
              statement of the body, is not indented exactly 4 spaces more than the `def`, or a line of the
              function is indented less than the `def` (a string literal running at column 0)
  empty_body  nothing follows the docstring
  stub_body   the body is only `pass`, `...` or `raise NotImplementedError[(…)]`
  long_body   the body has more than `max_body_lines` lines
  too_long    prompt and completion together have more than `max_chars` characters
  duplicate   the same prompt and completion were already taken (from this or an earlier document)
Documents that do not parse (SyntaxError, null bytes, nesting too deep for the parser) are counted as
"unparsable" and make no pair.

Split: with a `tokens` artifact, a pair is in val when its origin document is in that artifact's val split
(the rule its index.json records, `llmforge.artifacts.split.is_val`), so a model pretrained on those tokens
is validated on functions it never trained on. Without one, `VAL_FRACTION` of the origin documents that gave a
pair (at least one when there are two or more) are drawn with `random.Random(seed)`. Either way the pairs of
one document (and of its copies, `#cf` / `#k` ids) are all in one split.

Layout of the artifact: `train.jsonl`, `val.jsonl` ({"prompt", "completion", "source": document id, "name":
qualified function name as `__qualname__` spells it} per line, in dataset order then source order),
`report.json` (counts) and `manifest.json` (kind "instructions", the dataset and tokens as inputs). No
timestamps in the content files: the same input and options give the same content hash.
"""

from __future__ import annotations

import ast
import json
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, atomic_dir, ensure_writable, require, write_json, write_manifest
from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError

PROMPT_PREFIX = "Write the body of this Python function.\n\n"
VAL_FRACTION = 0.1  # of the origin documents, when no tokens artifact gives the split
SKIP_REASONS = ("layout", "empty_body", "stub_body", "long_body", "too_long", "duplicate")
FILES = ("train.jsonl", "val.jsonl", "report.json")

_INDENT = re.compile(r"[ \t]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the breaks the Python tokenizer counts (not \f, \v, \x1c, …)


@dataclass(frozen=True)
class Pair:
    prompt: str
    completion: str
    source: str  # the document id
    name: str  # qualified name, e.g. "Class.method" or "outer.<locals>.inner"


# ------------------------------------------------------------------------------------------ one document


def functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of every function and method in `tree`, outer before inner, in source order."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def docstring_node(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Expr | None:
    """The function's docstring statement (a string constant as its first statement), or None."""
    first = fn.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _is_stub(stmt: ast.stmt) -> bool:
    """`pass`, `...`, or `raise NotImplementedError` / `raise NotImplementedError(…)`."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def cut(
    lines: list[str], fn: ast.FunctionDef | ast.AsyncFunctionDef, doc: ast.Expr
) -> tuple[str, str] | None:
    """(head, body) of a function with docstring `doc`: its dedented source up to the docstring's last line
    and after it, each ending in a newline (body "" when nothing follows); None when it does not cut cleanly
    (see "layout" in the module docstring)."""
    def_line = lines[fn.lineno - 1]
    indent = _INDENT.match(def_line).group()
    doc_line = lines[doc.lineno - 1]
    if doc.lineno == fn.lineno or doc.col_offset != len(indent) + 4:
        return None
    if _INDENT.match(doc_line).group() != indent + "    ":  # not on a line of its own, or tabs
        return None
    after_doc = lines[doc.end_lineno - 1].encode("utf-8")[doc.end_col_offset :].decode("utf-8", "replace")
    if after_doc.strip() and not after_doc.strip().startswith("#"):
        return None  # `"""doc"""; statement`
    src = lines[fn.lineno - 1 : fn.end_lineno]
    if any(line.strip() and not line.startswith(indent) for line in src):
        return None
    dedented = [line[len(indent) :] if line.strip() else "" for line in src]
    split = doc.end_lineno - fn.lineno + 1
    head, body = dedented[:split], dedented[split:]
    return "\n".join(head) + "\n", "\n".join(body) + "\n" if body else ""


def parse(text: str) -> ast.Module | None:
    """The module's AST, or None when it does not parse (warnings about its escapes are not ours to print)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def document_pairs(
    text: str, doc_id: str, counts: dict[str, Any], *, max_body_lines: int, max_chars: int
) -> list[Pair]:
    """The candidate pairs of one document (duplicates not yet removed); counts what it saw and skipped."""
    tree = parse(text)
    if tree is None:
        counts["unparsable"] += 1
        return []
    counts["parsed"] += 1
    lines = _LINE_BREAK.split(text)
    out = []
    for name, fn in functions(tree):
        counts["functions"] += 1
        doc = docstring_node(fn)
        if doc is None:
            continue
        counts["with_docstring"] += 1
        made = _pair_or_reason(lines, fn, doc, max_body_lines, max_chars)
        if isinstance(made, str):
            counts["skipped"][made] += 1
            continue
        out.append(Pair(made[0], made[1], doc_id, name))
    return out


def _pair_or_reason(
    lines: list[str],
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    doc: ast.Expr,
    max_body_lines: int,
    max_chars: int,
) -> tuple[str, str] | str:
    """(prompt, completion), or the reason the function makes no pair (one of SKIP_REASONS)."""
    pieces = cut(lines, fn, doc)
    if pieces is None:
        return "layout"
    head, body = pieces
    statements = fn.body[1:]
    if not statements or not body:
        return "empty_body"
    if all(_is_stub(s) for s in statements):
        return "stub_body"
    if body.count("\n") > max_body_lines:
        return "long_body"
    prompt = PROMPT_PREFIX + head
    if len(prompt) + len(body) > max_chars:
        return "too_long"
    return prompt, body


# ------------------------------------------------------------------------------------------------ split


def tokens_val_rule(tokens: Path):
    """A function doc → bool (in val) reproducing the split recorded in the tokens artifact's index.json."""
    # the tokenizer stage's own rule (a hash of the origin document id); see the report on where it lives
    from llmforge.artifacts.split import SPLIT_RULE, is_val
    from llmforge.artifacts.tokens import INDEX, read_index

    require(tokens, "tokens")
    split = read_index(tokens).get("split")
    if not isinstance(split, dict) or split.get("by") != "origin_document" or split.get("rule") != SPLIT_RULE:
        raise UserError(
            f"{tokens / INDEX}: 'split' does not record the origin-document rule this llmforge splits by "
            "(written by another version?); re-encode the tokens, or leave out --tokens"
        )
    fraction = split.get("val_fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 1:
        raise UserError(f"{tokens / INDEX}: split.val_fraction = {fraction!r}: expected a number in [0, 1)")

    def in_val(doc: dict) -> bool:
        return is_val(doc, float(fraction))

    in_val.val_fraction = float(fraction)  # type: ignore[attr-defined]
    return in_val


def seeded_val(keys: list[str], seed: int) -> set[str]:
    """VAL_FRACTION of `keys` (at least one when there are two or more), drawn with `random.Random(seed)`."""
    keys = sorted(set(keys))
    n = round(len(keys) * VAL_FRACTION)
    if len(keys) >= 2:
        n = max(n, 1)
    return set(random.Random(seed).sample(keys, n))


# ---------------------------------------------------------------------------------------------- the stage


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that holds anything but an instructions artifact."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    kind = None
    try:
        kind = json.loads((out / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    if kind != "instructions":
        raise UserError(
            f"--out {out}: the folder exists and is not an instructions artifact; give a new folder"
        )


def build_docstring_pairs(
    dataset: Path,
    out: Path,
    *,
    tokens: Path | None = None,
    max_body_lines: int = 12,
    max_chars: int = 700,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the docstring → body pairs of every document of `dataset` as an instructions artifact at `out`;
    returns the counts written to its report.json."""
    dataset, out = Path(dataset), Path(out)
    if max_body_lines < 1:
        raise UserError(f"--max-body-lines {max_body_lines}: expected at least 1")
    if max_chars < 1:
        raise UserError(f"--max-chars {max_chars}: expected at least 1")
    require(dataset, "dataset")
    in_val_by_tokens = tokens_val_rule(Path(tokens)) if tokens is not None else None
    _check_out(out)
    ensure_writable(out)

    from llmforge.artifacts.split import doc_key

    counts: dict[str, Any] = {
        "documents": 0,
        "parsed": 0,
        "unparsable": 0,
        "functions": 0,
        "with_docstring": 0,
        "skipped": dict.fromkeys(SKIP_REASONS, 0),
    }
    seen: set[tuple[str, str]] = set()
    kept: list[tuple[Pair, str, bool]] = []  # (pair, origin key, in val by the tokens rule)
    for doc in iter_documents(dataset):
        counts["documents"] += 1
        key = doc_key(doc).decode("utf-8", "surrogatepass")
        val = in_val_by_tokens(doc) if in_val_by_tokens else False
        for pair in document_pairs(
            doc["text"], doc["id"], counts, max_body_lines=max_body_lines, max_chars=max_chars
        ):
            if (pair.prompt, pair.completion) in seen:
                counts["skipped"]["duplicate"] += 1
                continue
            seen.add((pair.prompt, pair.completion))
            kept.append((pair, key, val))
    if not kept:
        hint = (
            "is it Python source?" if not counts["with_docstring"] else "raise --max-chars / --max-body-lines"
        )
        raise UserError(
            f"{dataset}: no function with a docstring fit max_chars {max_chars} / max_body_lines "
            f"{max_body_lines}; {counts['documents']} documents, {counts['unparsable']} unparsable, "
            f"{counts['with_docstring']} functions with a docstring ({hint})"
        )
    if in_val_by_tokens is None:
        val_keys = seeded_val([key for _, key, _ in kept], seed)
        kept = [(pair, key, key in val_keys) for pair, key, _ in kept]
    rows = {"train.jsonl": [p for p, _, v in kept if not v], "val.jsonl": [p for p, _, v in kept if v]}
    counts["pairs"] = len(kept)
    counts["train"] = len(rows["train.jsonl"])
    counts["val"] = len(rows["val.jsonl"])
    counts["train_documents"] = len({p.source for p in rows["train.jsonl"]})
    counts["val_documents"] = len({p.source for p in rows["val.jsonl"]})
    counts["split"] = (
        {"by": "tokens", "val_fraction": in_val_by_tokens.val_fraction}
        if tokens is not None
        else {"by": "seed", "seed": seed, "val_fraction": VAL_FRACTION}
    )
    recipe = {
        "max_body_lines": max_body_lines,
        "max_chars": max_chars,
        "seed": seed,
        "prompt_prefix": PROMPT_PREFIX,
    }
    with atomic_dir(out) as tmp:
        for name, pairs in rows.items():
            (tmp / name).write_text(
                "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8"
            )
        write_json(tmp / "report.json", {"options": recipe, **counts})
        inputs = [dataset] + ([Path(tokens)] if tokens is not None else [])
        write_manifest(tmp, "instructions", recipe=recipe, inputs=inputs, stats=counts)
    return counts

"""Recipes: one TOML file describes one run (DESIGN.md §3).

TOML → pydantic models, one model per table, unknown keys forbidden. Each stage owns its table's model in
`llmforge/<stage>/config.py` (pydantic only — importing a config never imports torch); this module gathers
them into `Recipe`, applies `--set a.b.c=value` overrides and turns validation errors into one line:

    recipes/tiny.toml: train.lr = "fast": expected a number
"""

from __future__ import annotations

import difflib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from llmforge.console import UserError
from llmforge.recipe_base import RECIPE_DIR, CommandLineValue, RecipeDirPath, Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class RunConfig(Table):
    """`[run]`: names the run; every stage of one recipe writes into `out_dir/name/`.

    `out_dir` is a recipe path like any other: relative to the recipe's folder (`runs` beside the recipe
    when left out), so a run lands in the same place from whichever directory it is started."""

    name: str = Field("run", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    out_dir: RecipeDirPath = Field(Path("runs"), validate_default=True)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _always_written(self) -> RunConfig:
        # a recipe written out (to_toml) names its run directory even when the original left it out, so
        # the copy runs into the same directory wherever it is saved
        self.model_fields_set.add("out_dir")
        return self

    @property
    def dir(self) -> Path:
        return self.out_dir / self.name


# Stage tables. Imported here (not lazily) so `recipe check` validates every table; these modules hold
# pydantic models only.
from llmforge.bias.config import BiasConfig  # noqa: E402
from llmforge.card.config import CardConfig  # noqa: E402
from llmforge.data.config import DataConfig  # noqa: E402
from llmforge.eval.config import EvalConfig  # noqa: E402
from llmforge.finetune.config import FinetuneConfig  # noqa: E402
from llmforge.plan.config import PlanConfig  # noqa: E402
from llmforge.pretrain.config import ModelConfig, TrainConfig  # noqa: E402
from llmforge.rlhf.config import RlhfConfig  # noqa: E402
from llmforge.tokenizer.config import TokenizerConfig  # noqa: E402


class Recipe(Table):
    run: RunConfig = Field(default_factory=RunConfig)
    plan: PlanConfig | None = None
    data: DataConfig | None = None
    tokenizer: TokenizerConfig | None = None
    model: ModelConfig | None = None
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    finetune: FinetuneConfig | None = None
    rlhf: RlhfConfig | None = None
    bias: BiasConfig | None = None
    card: CardConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _run_table_always(cls, raw: Any) -> Any:
        # validated like a written [run] table (not built by a default factory), so its out_dir resolves
        # against the recipe's folder, and a recipe written out (to_toml) names its run directory
        if isinstance(raw, dict) and "run" not in raw:
            return {**raw, "run": {}}
        return raw

    @property
    def run_dir(self) -> Path:
        return self.run.dir

    def table(self, name: str) -> Any:
        """The table a stage needs, or a UserError naming the missing table."""
        value = getattr(self, name)
        if value is None:
            raise UserError(f"{self._source or 'recipe'}: missing table [{name}], which this stage needs")
        return value

    _source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every key, defaults filled in (for manifests and `recipe show --json`)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_toml(self) -> str:
        """A recipe file that runs the same wherever it is saved: the keys given (overrides applied, paths
        absolute, the run directory always named). Defaults are left out, as some keys may only be
        given where they apply (`model.rotary_pct` for gpt-neox, no shape keys with `model.init_from`)."""
        import tomli_w

        return tomli_w.dumps(_drop_none(self.model_dump(mode="json", exclude_unset=True, exclude_none=True)))


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe. Every problem is a `UserError` naming file and key.

    Relative paths in the file are resolved against the file's folder, those given with `--set` against
    the current directory (recipe_base.py)."""
    path = Path(path)
    raw = read_recipe_file(path)
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return validate_recipe(raw, source=str(path), recipe_dir=path.absolute().parent)


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The TOML tables of a recipe file; UserError when it is missing, not a file, not TOML or empty."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a recipe file (give a .toml file)")
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if not raw:
        raise UserError(f"{path}: the recipe has no tables (expected [run], [data], [train], ...)")
    return raw


def validate_recipe(
    raw: dict[str, Any], source: str = "recipe", recipe_dir: str | Path | None = None
) -> Recipe:
    """Validate raw tables; relative paths resolve against `recipe_dir` (kept as given when None)."""
    try:
        recipe = Recipe.model_validate(raw, context={RECIPE_DIR: recipe_dir})
    except ValidationError as e:
        raise UserError(format_validation_error(e, raw, source)) from None
    recipe._source = source
    return recipe


def parse_value(text: str) -> Any:
    """Coerce a `--set` value: TOML literals (ints, floats incl. 3e-4, true/false, [lists], "strings"),
    Python-style True/False, and anything else as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("[") and text.endswith("]"):  # a list of bare words: [a, b]
        return [parse_value(p.strip()) for p in text[1:-1].split(",") if p.strip()]
    return text


def apply_override(raw: dict[str, Any], item: str, source: str = "recipe") -> None:
    """Apply one `a.b.c=value` override to the raw TOML dict (validated later with the rest).

    A numeric part indexes a list of tables: `data.sources.0.path=corpus.jsonl`.
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=3e-4")
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where, source)
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise UserError(f"{source}: --set {key}: {where} is a value, not a table")
    if isinstance(node, list):
        raise UserError(f"{source}: --set {key}: {'.'.join(parts[:-1])} is a list; name an item's key")
    node[parts[-1]] = _from_command_line(parse_value(value.strip()))


def _from_command_line(value: Any) -> Any:
    """Mark the strings of a `--set` value (in lists and inline tables too), so a relative path in one
    resolves against the current directory."""
    if isinstance(value, str):
        return CommandLineValue(value)
    if isinstance(value, list):
        return [_from_command_line(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_command_line(v) for k, v in value.items()}
    return value


def _list_item(items: list[Any], part: str, where: str, source: str) -> Any:
    if not part.isdigit() or int(part) >= len(items):
        raise UserError(f"{source}: --set {where}: expected an index below {len(items)} into the list")
    return items[int(part)]


# ------------------------------------------------------------------------------------- error messages

_EXPECTED = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "path_type": "expected a path (string)",
    "missing": "missing required key",
    "too_short": "expected at least one entry",
}


def format_validation_error(error: ValidationError, raw: dict[str, Any], source: str) -> str:
    """One line for the first problem (plus a count of the others)."""
    errors = error.errors()
    first = errors[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and "[" in p)]  # drop union-branch tags
    dotted = _dotted(loc)
    etype = first["type"]
    if etype == "extra_forbidden":
        hint = _suggest(loc, raw)
        msg = f"{source}: unknown key {dotted}" + (f" (did you mean {hint}?)" if hint else "")
        valid = _valid_keys(loc[:-1], raw)
        if not hint and valid:
            msg += f"; valid keys: {', '.join(valid)}"
    elif etype == "value_error":  # a table's own cross-key check: its message names the keys, loc the table
        text = first["msg"].removeprefix("Value error, ")
        where = f"{dotted}: " if dotted and dotted not in text else ""
        msg = f"{source}: {where}{text}"
    else:
        given = _lookup(raw, loc)
        expected = _EXPECTED.get(etype) or _literal_expected(first) or first["msg"]
        shown = "" if etype == "missing" else f" = {_show(given)}"
        msg = f"{source}: {dotted}{shown}: {expected}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return msg


def _literal_expected(err: dict[str, Any]) -> str | None:
    if err["type"] in ("literal_error", "enum"):
        return "expected one of " + err.get("ctx", {}).get("expected", "")
    if err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "expected a value " + err["msg"].removeprefix("Input should be ")
    return None


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) < 60 else text[:57] + "..."
    return json.dumps(value) if isinstance(value, (str, bool)) or value is None else str(value)


def _lookup(raw: Any, loc: list[Any]) -> Any:
    node = raw
    for p in loc:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _model_at(loc: list[Any], raw: Any = None) -> type[BaseModel] | None:
    """The pydantic model that owns the table at `loc` (list indices skipped); of a union of tables, the one
    the raw table's tag keys (task, type, ...) pick."""
    model: Any = Recipe
    node = raw
    for part in loc:
        node = _lookup(node, [part]) if node is not None else None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _unwrap_model(field.annotation, node)
    return model


def _unwrap_model(annotation: Any, node: Any = None) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(annotation)[0], node)
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        found = [m for arg in typing.get_args(annotation) if (m := _unwrap_model(arg, node)) is not None]
        tagged = [m for m in found if isinstance(node, dict) and _tags_match(m, node)]
        return (tagged or found or [None])[0]
    return None


def _tags_match(model: type[BaseModel], node: dict[str, Any]) -> bool:
    """Whether every one-value Literal key of `model` (its tag, e.g. task = "instruction") matches `node`."""
    tags = {
        name: typing.get_args(f.annotation)[0]
        for name, f in model.model_fields.items()
        if typing.get_origin(f.annotation) is typing.Literal and len(typing.get_args(f.annotation)) == 1
    }
    return bool(tags) and all(node.get(k) == v for k, v in tags.items())


def _valid_keys(loc: list[Any], raw: Any = None) -> list[str]:
    model = _model_at(loc, raw)
    return sorted(model.model_fields) if model else []


def _suggest(loc: list[Any], raw: Any = None) -> str | None:
    valid = _valid_keys(loc[:-1], raw)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
    if not close:
        return None
    return _dotted([*loc[:-1], close[0]])

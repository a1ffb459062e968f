"""The base class of every recipe table and the recipe's path types (kept apart from `recipe.py` so stage
configs can import them without a cycle: `recipe.py` imports every stage's config module).

Types are strict where TOML has them: a boolean, integer or float key takes only a TOML boolean, integer or
float (an integer is fine where a float is expected), never a string such as `"yes"`; floats must be
finite unless a field opts in with `Field(allow_inf_nan=True)`.

Paths (DESIGN.md §3a): a relative path written in a recipe is relative to the recipe file's folder; one
given on the command line (`--set eval.data_dir=...`) is relative to the current directory, as any
command-line argument is. Declare a path key as `RecipePath` (or `RecipeDirPath` for a `Path` value,
`RecipePathOrName` where a Hugging Face hub name is also accepted); `recipe.load_recipe` resolves them.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, ValidationInfo, model_validator
from pydantic.types import Strict

# Validation-context key holding the folder of the recipe file being validated.
RECIPE_DIR = "recipe_dir"

_SCALARS = (bool, int, float)


class CommandLineValue(str):
    """A string given with `--set`: a relative path in it is relative to the current directory."""


def _strict(annotation: Any) -> Any:
    """`annotation` with every bool, int and float in it strict (`list[float]`, `int | None`, ...); the
    same object when there is none."""
    if annotation in _SCALARS:
        return Annotated[annotation, Strict()]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or origin is typing.Literal or not args:
        return annotation
    if origin is Annotated:
        if any(isinstance(m, Strict) for m in annotation.__metadata__):
            return annotation
        inner = _strict(args[0])
        return annotation if inner is args[0] else Annotated[(inner, *annotation.__metadata__)]
    strict_args = tuple(a if a is Ellipsis else _strict(a) for a in args)
    if all(new is old for new, old in zip(strict_args, args, strict=True)):
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[strict_args]  # noqa: UP007 - built from a tuple of arguments
    return origin[strict_args]


class Table(BaseModel):
    """A recipe table: unknown keys are errors, assignments are validated, scalars are strict."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False
    )
    _recipe_dir: Path | None = PrivateAttr(None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Make every bool/int/float key strict, in lists and tables too (pydantic's lax mode turns "yes"
        into True, 2.0 into 2 and "1e15" into 1e15)."""
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for field in cls.model_fields.values():
            strict = _strict(field.annotation)
            if strict is not field.annotation:
                field.annotation = strict
                changed = True
        if changed:
            cls.model_rebuild(force=True, raise_errors=False)

    @model_validator(mode="after")
    def _remember_recipe_dir(self, info: ValidationInfo) -> Table:
        if info.context and info.context.get(RECIPE_DIR) is not None:
            self._recipe_dir = Path(info.context[RECIPE_DIR])
        return self

    def path_context(self) -> dict[str, Any]:
        """The validation context to validate more of this table's keys later (e.g. a data step's
        options) with its recipe's paths resolved the same way: `Model.model_validate(x, context=...)`."""
        return {RECIPE_DIR: self._recipe_dir}


# ------------------------------------------------------------------------------------------------ paths


def _base_dir(value: Any, info: ValidationInfo) -> Path | None:
    if isinstance(value, CommandLineValue):
        return Path.cwd()
    directory = (info.context or {}).get(RECIPE_DIR)
    return Path(directory) if directory is not None else None


def _join(base: Path, text: str) -> str:
    return os.path.abspath(os.path.join(base, os.path.expanduser(text)))


def resolve_recipe_path(value: Any, info: ValidationInfo) -> Any:
    """An absolute path for a relative one (see the module docstring); anything else is left to the type."""
    if not isinstance(value, (str, PurePath)) or not str(value).strip():
        return value
    text = str(value)
    if os.path.isabs(os.path.expanduser(text)):
        return os.path.expanduser(text)
    base = _base_dir(value, info)
    return text if base is None else _join(base, text)


_DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt", ".arrow", ".gz")


def resolve_path_or_name(value: Any, info: ValidationInfo) -> Any:
    """Like `resolve_recipe_path` where a path is explicit (`./`, `../`, `~`, absolute), exists, or names a data
    file (`pairs.jsonl`: a hub name never ends in a file extension, so a missing one is reported as a missing
    file next to the recipe); any other value is kept as written (a hub name such as `HuggingFaceFW/fineweb-edu`)."""
    if not isinstance(value, (str, PurePath)) or not str(value).strip():
        return value
    text = str(value)
    data_file = text.lower().endswith(_DATA_FILE_SUFFIXES)
    explicit = text.startswith((".", "~", "/")) or os.path.isabs(text) or data_file
    resolved = resolve_recipe_path(value, info)
    return resolved if explicit or os.path.exists(resolved) else text


# A path key (a str holding an absolute path once the recipe is loaded).
RecipePath = Annotated[str, BeforeValidator(resolve_recipe_path)]
# A path key whose value is a `pathlib.Path`.
RecipeDirPath = Annotated[Path, BeforeValidator(resolve_recipe_path)]
# A local path or a Hugging Face hub name.
RecipePathOrName = Annotated[str, BeforeValidator(resolve_path_or_name)]

"""Architecture registry: per model family its transformers config, block classes, residual projections, and
exact parameter and FLOPs-per-token formulas. Read by plan and by the training stages; importing it never imports
torch or transformers (only `Family.hf_config` / `Family.build` do, inside).

A family is one module here that defines `FAMILY = SomeFamily()` (a `Family` subclass) and one line in
FAMILY_MODULES; `tests/test_archs.py` then checks its formulas against the model transformers builds.
"""

from __future__ import annotations

import importlib

from llmforge.archs.base import Family, Shape
from llmforge.console import UserError

# One line per family, in the order choices are listed (gpt2 first: the CLI's error messages start there).
FAMILY_MODULES = ("gpt2", "llama", "gpt_neox", "bert", "t5")


def load_families(package: str, modules: tuple[str, ...]) -> dict[str, Family]:
    """`FAMILY` of each module of `package`, by its recipe name."""
    families: dict[str, Family] = {}
    for module in modules:
        fam = importlib.import_module(f"{package}.{module}").FAMILY
        if fam.name in families:
            raise ValueError(f"{package}.{module}: family {fam.name!r} is registered twice")
        families[fam.name] = fam
    return families


FAMILIES: dict[str, Family] = load_families(__name__, FAMILY_MODULES)
ARCHS: tuple[str, ...] = tuple(FAMILIES)


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"arch {name!r}: unknown architecture; choose one of {', '.join(ARCHS)}") from None


def family_of_model_type(model_type: str) -> Family:
    """The family of a checkpoint's config.json `model_type`."""
    for fam in FAMILIES.values():
        if fam.model_type == model_type:
            return fam
    known = ", ".join(fam.model_type for fam in FAMILIES.values())
    raise UserError(f"model_type {model_type!r}: not a family llmforge knows; expected one of {known}")


__all__ = ["ARCHS", "FAMILIES", "Family", "Shape", "family", "family_of_model_type"]

"""The base class of every recipe table (kept apart from `recipe.py` so stage configs can import it
without a cycle: `recipe.py` imports every stage's config module)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Table(BaseModel):
    """A recipe table: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

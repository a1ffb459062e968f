"""`[card]` table: what the model card takes from the recipe rather than from the run's records. Pydantic only."""

from __future__ import annotations

from pydantic import Field

from llmforge.recipe_base import Table


class CardConfig(Table):
    # an SPDX id or a Hugging Face license name (apache-2.0, mit, llama3, other); `llmforge card --license`
    # overrides it; without either the card says "other" and leaves choosing it to a person
    license: str | None = Field(None, min_length=1, pattern=r"^[a-z0-9][a-z0-9.+-]*$")

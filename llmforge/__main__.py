"""`python -m llmforge …` (what `accelerate launch -m llmforge pretrain recipe.toml` runs)."""

from llmforge.cli import main

main()

"""llmforge plan stage."""

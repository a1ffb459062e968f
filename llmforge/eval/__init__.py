"""llmforge eval stage."""

"""llmforge data stage."""

"""llmforge tokenizer stage."""

"""llmforge pretrain stage."""

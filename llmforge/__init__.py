"""llmforge: plan, build data for, tokenize, pretrain and evaluate your own language model."""

__version__ = "0.1.0"

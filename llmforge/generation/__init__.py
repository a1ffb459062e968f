"""Shared generation layer: chat templates, sampling settings, stop strings, streaming, model loading.

Used by `llmforge generate` / `chat`, the finetune stage (templates), and later serve, the bias probes and
rlhf rollouts (DESIGN.md §1: anything two stages need lives in the shared layer)."""

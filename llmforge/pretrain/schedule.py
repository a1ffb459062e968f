"""Learning-rate schedules and the batch-size ramp: pure functions of the step / tokens seen, so a
resumed run recomputes them exactly and the only schedule state to save is the spike guard's LR factor."""

from __future__ import annotations

import math

from llmforge.pretrain.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """LR for optimizer step `step` (0-based): linear warmup, then the schedule down to `min_lr_ratio`·lr.

    cosine: to the floor at `max_steps` (10% of peak as in GPT-3, Brown et al. 2020 App. B, and OPT).
    linear: straight line to the floor. constant: flat. inverse-sqrt: lr·√(warmup/step) (Vaswani et al.
    2017 §5.3), floored. wsd: warmup-stable-decay, flat until the last `decay_fraction` of the steps, then
    linear to the floor (Hu et al. 2024, MiniCPM §4).
    """
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "inverse-sqrt":
        return max(floor, peak * math.sqrt(max(cfg.warmup_steps, 1) / (step + 1)))
    decay_steps = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    if cfg.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return peak - (peak - floor) * progress
    decay_start = cfg.max_steps - cfg.decay_fraction * cfg.max_steps
    if step < decay_start:
        return peak
    return peak - (peak - floor) * min((step - decay_start) / (cfg.max_steps - decay_start), 1.0)


def batch_rows_at(tokens_seen: int, cfg: TrainConfig, row_multiple: int) -> int:
    """Sequences in the global batch once `tokens_seen` tokens were trained on.

    Without a ramp: global_batch_tokens / seq_len. With `batch_ramp_tokens`, the batch grows linearly from
    `batch_ramp_start_tokens` to the full batch over those tokens (GPT-3, Brown et al. 2020 §B), rounded
    down to a multiple of `row_multiple` (micro_batch × processes) and never below it.
    """
    full = cfg.global_batch_tokens // cfg.seq_len
    if not cfg.batch_ramp_tokens or tokens_seen >= cfg.batch_ramp_tokens:
        return full
    start = (cfg.batch_ramp_start_tokens or cfg.seq_len * row_multiple) // cfg.seq_len
    rows = start + (full - start) * tokens_seen / cfg.batch_ramp_tokens
    return max(row_multiple, int(rows) // row_multiple * row_multiple)

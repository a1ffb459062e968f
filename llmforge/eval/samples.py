"""Review sheets: completions for subject-matter experts to rate, written as CSV.

Columns: `id, prompt, output, rating, comment`; reviewers fill in `rating` (a number on the scale the review
uses) and `comment`. `ratings` aggregates the filled-in sheets.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from llmforge.console import UserError, track
from llmforge.generation.prompts import read_prompts as shared_read_prompts

COLUMNS = ("id", "prompt", "output", "rating", "comment")


def read_prompts(path: Path) -> list[str]:
    """The prompts of `eval samples --prompts` (the shared reader)."""
    return shared_read_prompts(path, flag="--prompts")


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int = 8,
) -> list[str]:
    """One completion per prompt (greedy when temperature is 0), prompt text excluded.

    Prompts of similar length go together in batches, padded on the left so every row's next token follows
    its own last prompt token; generation uses the KV cache whatever the checkpoint's config says (training
    saves `use_cache: false`). The sampling knobs and the ids that end a row are the generation layer's
    (`SamplingSettings`, `generation.loading.stop_ids`: EOS, generation_config's eos ids and a chat template's
    end of turn such as `<|im_end|>`), so a sheet's outputs end where `llmforge generate` would end them."""
    import torch

    from llmforge.generation.loading import stop_ids as reply_stop_ids
    from llmforge.generation.settings import SamplingSettings

    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed).checked()
    stops = reply_stop_ids(model, tokenizer)
    _ensure_pad_token(tokenizer, stops)
    kwargs = settings.to_generation_kwargs(stops, tokenizer.pad_token_id)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    outputs: dict[int, str] = {}
    with torch.inference_mode():
        for batch in track(batches, description="samples", unit="batches"):
            enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            for i, row in zip(batch, new, strict=True):
                outputs[i] = completion_text(tokenizer, row.tolist(), stops)
    return [outputs[i] for i in range(len(prompts))]


def completion_text(tokenizer: Any, new: list[int], stops: list[int]) -> str:
    """The text of one row's new tokens, up to (not including) its first stop id; what follows it in a batch
    is padding."""
    from llmforge.generation.sampling import decode

    end = next((k for k, i in enumerate(new) if i in stops), len(new))
    return decode(tokenizer, new[:end])


def _ensure_pad_token(tokenizer: Any, stops: list[int]) -> None:
    """Left padding needs a pad token: the tokenizer's own, else EOS, else the first stop id."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    elif stops:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(stops[0])
    else:
        raise UserError("the tokenizer has no pad, EOS or end-of-turn token to pad a batch of prompts with")


def write_sheet(path: Path, prompts: list[str], outputs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, (prompt, output) in enumerate(zip(prompts, outputs, strict=True), 1):
            writer.writerow([i, prompt, output, "", ""])
    tmp.replace(path)

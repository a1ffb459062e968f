"""Review sheets: completions for subject-matter experts to rate, written as CSV.

Columns: `id, prompt, output, rating, comment`; reviewers fill in `rating` (a number on the scale the review
uses) and `comment`. `ratings` aggregates the filled-in sheets.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from llmforge.console import UserError, track

COLUMNS = ("id", "prompt", "output", "rating", "comment")


def read_prompts(path: Path) -> list[str]:
    """Prompts from a `.jsonl` file (field `prompt`) or a text file (one prompt per non-empty line)."""
    if not path.is_file():
        raise UserError(f"{path}: no such prompts file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for n, line in enumerate(lines, 1):
            try:
                prompts.append(json.loads(line)["prompt"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path}:{n}: expected a JSON object with a 'prompt' field") from None
    else:
        prompts = lines
    if not prompts:
        raise UserError(f"{path}: no prompts")
    return prompts


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
    saves `use_cache: false`), and a row stops at EOS."""
    import torch

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    outputs: dict[int, str] = {}
    with torch.inference_mode():
        for batch in track(batches, description="samples", unit="batches"):
            enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                use_cache=True,
                **sampling,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for i, row in zip(batch, new, strict=True):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    return [outputs[i] for i in range(len(prompts))]


def write_sheet(path: Path, prompts: list[str], outputs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, (prompt, output) in enumerate(zip(prompts, outputs, strict=True), 1):
            writer.writerow([i, prompt, output, "", ""])
    tmp.replace(path)

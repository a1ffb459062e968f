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
    model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, temperature: float, seed: int
) -> list[str]:
    """One completion per prompt (greedy when temperature is 0), prompt text excluded."""
    import torch

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    outputs = []
    with torch.inference_mode():
        for prompt in track(prompts, description="samples", unit="prompts"):
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            out = model.generate(
                ids,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                **sampling,
            )
            outputs.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return outputs


def write_sheet(path: Path, prompts: list[str], outputs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, (prompt, output) in enumerate(zip(prompts, outputs, strict=True), 1):
            writer.writerow([i, prompt, output, "", ""])
    tmp.replace(path)

"""Prompt files, as every command that samples reads them: .jsonl ({"prompt": …} per line) or text (one
prompt per non-blank line); errors name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

from llmforge.console import UserError


def read_prompts(path: Path, flag: str = "--file") -> list[str]:
    """Prompts from a .jsonl file ({"prompt": …} per line) or a text file (one prompt per non-blank line)."""
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    prompts: list[str] = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{n}: not UTF-8 text") from None
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                    raise UserError(f"{path}:{n}: expected a JSON object with a string field 'prompt'")
                prompts.append(row["prompt"])
            else:
                prompts.append(line)
    if not prompts:
        raise UserError(f"{flag} {path}: no prompts (the file is empty)")
    return prompts

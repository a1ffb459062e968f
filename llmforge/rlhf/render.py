"""Prompts as the policy sees them: rendered with its chat template (generation prompt appended) or as plain text,
and the ones longer than `rlhf.max_prompt_len` tokens left out and counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmforge.console import UserError, warn
from llmforge.rlhf.common import plain_prompt, prompt_messages
from llmforge.rlhf.config import RlhfConfig


@dataclass
class RenderedPrompts:
    rows: list[Any] = field(default_factory=list)  # the PromptRows kept
    texts: list[str] = field(default_factory=list)  # rendered text of each
    messages: list[Any] = field(default_factory=list)  # what trl's online trainers take as `prompt`
    plain: list[str] = field(default_factory=list)  # the last user turn (what reward functions read)
    too_long: int = 0
    longest: int = 0


def render(tokenizer: Any, rows: list[Any], cfg: RlhfConfig, split: str) -> RenderedPrompts:
    out = RenderedPrompts()
    for row in rows:
        messages = prompt_messages(row.messages, cfg.system_prompt)
        if cfg.chat_template:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            trl_prompt: Any = messages
        else:
            text = plain_prompt(row.messages)
            trl_prompt = text
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        out.longest = max(out.longest, n)
        if n > cfg.max_prompt_len:
            out.too_long += 1
            continue
        out.rows.append(row)
        out.texts.append(text)
        out.messages.append(trl_prompt)
        out.plain.append(last_user_turn(row.messages))
    if not out.rows:
        raise UserError(
            f"rlhf.max_prompt_len = {cfg.max_prompt_len}: none of the {len(rows)} {split} prompts fits (the "
            f"longest is {out.longest} tokens rendered); raise rlhf.max_prompt_len"
        )
    if out.too_long:
        warn(
            f"{out.too_long} of {len(rows)} {split} prompts are longer than rlhf.max_prompt_len and were left out"
        )
    return out


def last_user_turn(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return str(messages[-1].get("content", "")) if messages else ""

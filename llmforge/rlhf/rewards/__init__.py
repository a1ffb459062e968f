"""Programmatic rewards, one file per reward: `reward_fn = "<name>"` in `[rlhf.ppo]`, `[rlhf.rloo]` or
`[rlhf.grpo]`. Each is `score(prompts, completions, **columns) -> list[float]` over plain texts (the prompt's
last user turn and the reply), the signature trl's online trainers give reward functions. Adding a reward is
adding a file here and a line in BUILTIN."""

from __future__ import annotations

from llmforge.rlhf.rewards import exact_answer

BUILTIN = {"exact_answer": exact_answer.score}

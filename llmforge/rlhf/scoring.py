"""Where an online trainer's reward comes from, checked before any training: a reward-model checkpoint of
`rlhf reward` or a programmatic reward (a built-in of llmforge/rlhf/rewards/ or `python:module:function`).

`ppo_scorer` turns it into what our PPO loop calls on token ids; `trl_reward` into what trl's RLOO/GRPO take (the
reward model's path, or a function over texts)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.rlhf.common import check_reward_model, check_same_tokenizer, rlhf_out
from llmforge.rlhf.config import RewardSource
from llmforge.rlhf.rewards import BUILTIN

RewardFn = Callable[..., list[float]]


@dataclass
class RewardSpec:
    kind: str  # "model" | "function"
    name: str  # the checkpoint path or the function's name, for reports
    model: Path | None = None
    fn: RewardFn | None = None


def resolve(
    source: RewardSource, recipe: Any, key: str, policy: str | Path, *, same_tokenizer: bool
) -> RewardSpec:
    """The reward of `[rlhf.<key>]`: reward_fn, else reward_model, else `rlhf reward`'s output; UserError when it
    is not a reward-model artifact, its tokenizer differs from the policy's (`same_tokenizer`: PPO scores the
    policy's ids) or the function cannot be imported."""
    if source.reward_fn is not None:
        return RewardSpec(
            "function", source.reward_fn, fn=load_function(source.reward_fn, f"{key}.reward_fn")
        )
    model_key = f"{key}.reward_model"
    path = Path(source.reward_model) if source.reward_model else rlhf_out(recipe) / "reward" / "checkpoint"
    if source.reward_model is None and not path.is_dir():
        raise UserError(
            f"{model_key}: not set and {path} does not exist; run `llmforge rlhf reward RECIPE` first, or set "
            f"{model_key} or {key}.reward_fn"
        )
    check_reward_model(path, model_key)
    if same_tokenizer:
        check_same_tokenizer(policy, path, model_key)
    return RewardSpec("model", str(path), model=path)


def load_function(spec: str, key: str) -> RewardFn:
    if spec in BUILTIN:
        return BUILTIN[spec]
    if not spec.startswith("python:"):
        raise UserError(
            f"{key} = {spec!r}: expected a built-in reward ({', '.join(sorted(BUILTIN))}) or python:module:function"
        )
    target = spec.removeprefix("python:")
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise UserError(f"{key} = {spec!r}: expected python:module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{key} = {spec!r}: cannot import it ({e})") from None
    if not callable(fn):
        raise UserError(f"{key} = {spec!r}: {attr} is not callable")
    return fn


def call_function(
    fn: RewardFn, prompts: list[str], completions: list[str], columns: dict[str, list]
) -> list[float]:
    scores = fn(prompts, completions, **columns)
    if len(scores) != len(completions):
        raise RuntimeError(
            f"reward function returned {len(scores)} scores for {len(completions)} completions"
        )
    return [float(s) for s in scores]


def ppo_scorer(spec: RewardSpec, device: Any) -> Callable[..., Any]:
    """scorer(sequences, attention_mask, prompts, completions, columns) -> scores[B] for the PPO loop."""
    import torch

    if spec.kind == "function":

        def score_texts(sequences, attention_mask, prompts, completions, columns):
            return torch.tensor(call_function(spec.fn, prompts, completions, columns), dtype=torch.float32)

        return score_texts
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(spec.model, dtype=torch.float32).to(device)
    model.eval()
    model.requires_grad_(False)

    def score_ids(sequences, attention_mask, prompts, completions, columns):
        # sequence classification scores the last non-pad token: the reply's last real token (detail 1)
        with torch.no_grad():
            return (
                model(input_ids=sequences.to(device), attention_mask=attention_mask.to(device))
                .logits[:, 0]
                .float()
            )

    return score_ids


def trl_reward(spec: RewardSpec) -> Any:
    """A reward for trl's RLOO/GRPO: the reward model's path (trl loads it and scores the rendered texts) or a
    function taking trl's arguments and passing plain texts to ours."""
    if spec.kind == "model":
        return str(spec.model)
    fn = spec.fn

    def reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
        columns = {k: v for k, v in kwargs.items() if k not in TRL_EXTRA_KWARGS}
        return call_function(fn, [as_text(p) for p in prompts], [as_text(c) for c in completions], columns)

    reward.__name__ = getattr(fn, "__name__", "reward")
    return reward


TRL_EXTRA_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def as_text(value: Any) -> str:
    """A trl prompt or completion (a string, or a list of chat messages) as plain text: the last message's."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)

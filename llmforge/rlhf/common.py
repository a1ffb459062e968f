"""What the rlhf trainers share: where each writes, the checks on the policy and the reward model (run before any
weights load), the tokenizer-match rule, precision, trl's common arguments and how a pair becomes a trl row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST
from llmforge.artifacts.model_dir import NotCausalLM, architectures, model_config, require_causal_lm_dir
from llmforge.console import UserError
from llmforge.rlhf.config import RlhfConfig, TrainerKeys

REWARD_MODEL_KIND = "reward_model"  # manifest stats.model_kind of `rlhf reward`'s checkpoint
CHECKPOINT_DIR = "checkpoint"
REPORT_DIR = "report"
TRAINER_DIR = "trainer"
METRICS = "metrics.jsonl"


@dataclass
class Outcome:
    results: dict[str, Any]
    interrupted: int = 0  # the signal that stopped the run (it checkpointed first), else 0


def rlhf_config(recipe: Any) -> RlhfConfig:
    return recipe.table("rlhf")


def rlhf_out(recipe: Any) -> Path:
    cfg = rlhf_config(recipe)
    return Path(cfg.out) if cfg.out else recipe.run_dir / "rlhf"


def trainer_out(recipe: Any, name: str) -> Path:
    """`rlhf.<name>.out`, or `<rlhf.out>/<name>`."""
    table = getattr(rlhf_config(recipe), name)
    return Path(table.out) if table.out else rlhf_out(recipe) / name


def seed_of(recipe: Any) -> int:
    cfg = rlhf_config(recipe)
    return recipe.run.seed if cfg.seed is None else cfg.seed


def check_policy(path: str | Path, key: str, needs: str) -> dict[str, Any]:
    """config.json of a causal LM dir with weights and a tokenizer, or UserError naming `key`."""
    try:
        return require_causal_lm_dir(path, key=key, needs=needs)
    except NotCausalLM as e:
        raise UserError(
            f"{key}: {path}: model_type {e.model_type!r} is not a causal LM ({e.described}); {needs} needs the "
            "instruction-tuned decoder (the checkpoint of `finetune sft`)"
        ) from None


def check_reward_model(path: str | Path, key: str) -> dict[str, Any]:
    """The manifest of a reward-model checkpoint written by `rlhf reward` (a scalar sequence-classification
    head), or UserError saying what `path` is instead."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{key}: {path}: no such reward model (run `llmforge rlhf reward RECIPE` first)")
    manifest = _manifest_of(path, key)
    model_kind = (manifest.get("stats") or {}).get("model_kind")
    if model_kind != REWARD_MODEL_KIND:
        config = model_config(path) if (path / "config.json").is_file() else {}
        what = ", ".join(architectures(config)) or "no model config" if config else "no config.json"
        raise UserError(
            f"{key}: {path}: not a reward-model checkpoint (its manifest has no stats.model_kind = "
            f"'{REWARD_MODEL_KIND}'; found {what}); train one with `llmforge rlhf reward RECIPE`"
        )
    config = model_config(path)
    if config.get("num_labels", len(config.get("id2label") or {}) or None) not in (1, None):
        raise UserError(f"{key}: {path}: a reward model has one output (num_labels = 1)")
    return manifest


def _manifest_of(path: Path, key: str) -> dict[str, Any]:
    """The model dir's manifest.json as a dict ({} without one), or UserError when it is not readable JSON."""
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        return {}
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{key}: {manifest_file}: corrupt manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{key}: {manifest_file}: corrupt manifest (expected a JSON object)")
    return manifest


def tokenizer_signature(path: str | Path, where: str) -> str:
    """A digest of what decides token ids: the vocabulary with added tokens and the special tokens (`where`
    starts the UserError when the tokenizer does not load)."""
    import hashlib

    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged tokenizer fails in many ways
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise UserError(f"{where}: the tokenizer does not load ({type(e).__name__}: {reason})") from None
    vocab = sorted(tok.get_vocab().items())
    special = sorted((k, str(v)) for k, v in tok.special_tokens_map.items())
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()[:16]


def check_same_tokenizer(policy: str | Path, reward: str | Path, key: str) -> None:
    """PPO scores the policy's token ids with the reward model directly: their tokenizers must be the same."""
    policy_tokens = tokenizer_signature(policy, f"{policy} (the policy)")
    if policy_tokens != tokenizer_signature(reward, f"{key}: {reward}"):
        raise UserError(
            f"{key}: {reward}: its tokenizer differs from the policy's ({policy}): the reward model reads the "
            "policy's token ids, so train it from the same SFT checkpoint (rlhf.reward.base)"
        )


def use_bf16(precision: str) -> bool:
    import torch

    if precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise UserError("rlhf.precision = 'bf16': this GPU has no bf16; use 'fp32'")
    return precision == "bf16"


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_args(keys: TrainerKeys, trainer_dir: Path, seed: int, bf16: bool, resuming: bool) -> dict[str, Any]:
    """The arguments every trl config here takes from the recipe (TrainingArguments fields)."""
    from llmforge.hf_trainer import checkpointing_key

    return {
        "output_dir": str(trainer_dir),
        "per_device_train_batch_size": keys.batch_size,
        "per_device_eval_batch_size": keys.batch_size,
        "gradient_accumulation_steps": keys.grad_accum,
        "learning_rate": keys.lr,
        "lr_scheduler_type": keys.lr_scheduler,
        "warmup_steps": keys.warmup_ratio,
        "weight_decay": keys.weight_decay,
        "max_grad_norm": keys.max_grad_norm,
        "num_train_epochs": keys.epochs,
        "max_steps": keys.max_steps or -1,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_on_start": not resuming,
        "eval_steps": keys.eval_every,
        "save_strategy": "steps",
        "save_steps": keys.save_steps,
        "save_total_limit": keys.keep_last,
        "seed": seed,
        "data_seed": seed,
        "bf16": bf16,
        "use_cpu": not cuda(),
        checkpointing_key(): False,
        "report_to": "none",
        "disable_tqdm": True,
        "dataset_num_proc": None,
    }


def prompt_messages(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def pair_row(pair: Any, cfg: RlhfConfig, *, with_prompt: bool = True) -> dict[str, Any]:
    """A preference pair as a trl row: conversational (the policy's chat template renders it) when the pair has a
    prompt and rlhf.chat_template is on; else plain text (trl appends EOS). `with_prompt` false gives the
    implicit-prompt form (prompt + reply in chosen and rejected) RewardTrainer reads."""
    if pair.messages and cfg.chat_template:
        prompt = prompt_messages(pair.messages, cfg.system_prompt)
        chosen = [{"role": "assistant", "content": pair.chosen}]
        rejected = [{"role": "assistant", "content": pair.rejected}]
        row: dict[str, Any] = (
            {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            if with_prompt
            else {"chosen": prompt + chosen, "rejected": prompt + rejected}
        )
    else:
        prompt_text = plain_prompt(pair.messages)
        row = (
            {"prompt": prompt_text, "chosen": pair.chosen, "rejected": pair.rejected}
            if with_prompt
            else {"chosen": prompt_text + pair.chosen, "rejected": prompt_text + pair.rejected}
        )
    if pair.margin is not None:
        row["margin"] = float(pair.margin)
    return row


def plain_prompt(messages: list[dict]) -> str:
    """A conversation as plain text when no chat template renders it: the turns joined, ending on a newline."""
    return "".join(f"{m['content']}\n" for m in messages)


def require_chat_template(tokenizer: Any, cfg: RlhfConfig, policy: str | Path) -> None:
    if cfg.chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"rlhf.policy: {policy}: the tokenizer has no chat template; use the checkpoint of `finetune sft` "
            "(it saves one) or set rlhf.chat_template = false for plain-text prompts"
        )

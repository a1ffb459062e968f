"""`sweep --scale-to N`: the best proxy settings carried to a model of N parameters. An EXTRAPOLATION, by
a published rule, never a measurement.

The rule: DeepSeek LLM (Bi et al. 2024, §3.1, eq. 1) fits the optimal learning rate and batch size against
training compute C (FLOPs) as η_opt = 0.3118·C^−0.125 and B_opt = 0.2920·C^0.3271 (B in tokens). Their
constants belong to their data and model; the exponents are what carries over. So the proxy's tuned values
are scaled by the compute ratio: η_target = η_best·(C_target/C_proxy)^−0.125, B_target =
B_best·(C_target/C_proxy)^0.3271. C_proxy is the best trial's FLOPs per token × tokens trained; the target
trains 20 tokens per parameter (Chinchilla, Hoffmann et al. 2022) on the shape `llmforge plan shape
--params N` proposes for the same architecture, vocabulary and context. Warmup keeps its share of the steps.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from llmforge.console import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LR_EXPONENT = -0.1250
BATCH_EXPONENT = 0.3271
TOKENS_PER_PARAM = 20.0
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "ffn_dim", "n_decoder_layers", "vocab_size",
              "max_seq_len", "tie_embeddings")  # fmt: skip
RULE = "DeepSeek LLM (Bi et al. 2024) exponents on compute, relative to the tuned proxy; 20 tokens/param"


def scale_recipe(
    best_recipe: Path, results: dict[str, Any], target_params: float, name: str
) -> tuple[str, dict]:
    """The TOML text of the extrapolated recipe and what was derived (for the report)."""
    from llmforge.plan.shapes import flops_per_token, model_table, param_counts, propose_shapes
    from llmforge.recipe import validate_recipe

    raw = tomllib.loads(best_recipe.read_text())
    model, train = dict(raw.get("model") or {}), dict(raw.get("train") or {})
    if "init_from" in model:
        raise UserError(
            "--scale-to: the best recipe continues from model.init_from; there is no shape to scale"
        )
    proxy_flops, tokens = results.get("flops_per_token"), results.get("tokens_seen")
    if not proxy_flops or not tokens:
        raise UserError(
            "--scale-to: the best trial's results lack flops_per_token / tokens_seen (pretrain only)"
        )
    validated = validate_recipe(raw, source=str(best_recipe))
    m, t = validated.table("model"), validated.table("train")
    shape = propose_shapes(target_params, arch=m.arch, vocab_size=_vocab(m, t), seq_len=t.seq_len)[0]
    target_tokens = TOKENS_PER_PARAM * param_counts(shape)["total"]
    ratio = flops_per_token(shape)["train"] * target_tokens / (proxy_flops * tokens)
    lr = t.lr * ratio**LR_EXPONENT
    unit = t.seq_len * t.micro_batch
    batch = max(unit, round(t.global_batch_tokens * ratio**BATCH_EXPONENT / unit) * unit)
    steps = max(1, math.ceil(target_tokens / batch))
    warmup = round(t.warmup_steps / t.max_steps * steps) if t.max_steps else t.warmup_steps
    raw["model"] = {**{k: v for k, v in model.items() if k not in SHAPE_KEYS}, **model_table(shape)}
    train.update(lr=lr, global_batch_tokens=batch, max_steps=steps, warmup_steps=min(warmup, steps - 1))
    raw["train"] = train
    raw.setdefault("run", {})["name"] = name
    recipe = validate_recipe(raw, source=f"{best_recipe} scaled to {target_params:.3g} parameters")
    derived = {
        "rule": RULE,
        "target_params": param_counts(shape)["total"],
        "shape": model_table(shape),
        "compute_ratio": ratio,
        "lr": {"proxy": t.lr, "target": lr},
        "global_batch_tokens": {"proxy": t.global_batch_tokens, "target": batch},
        "max_steps": steps,
        "tokens": steps * batch,
    }
    header = (f"# EXTRAPOLATION, not a tuned result: the best proxy settings of sweep {name!r} carried to "
              f"{derived['target_params']:,} parameters by {RULE}.\n"
              f"# lr {t.lr:.3g} → {lr:.3g}, batch {t.global_batch_tokens} → {batch} tokens, compute ×{ratio:.3g}."
              " Check it with a short run before spending the budget.\n")  # fmt: skip
    return header + recipe.to_toml(), derived


def _vocab(model: Any, train: Any) -> int | None:
    """The recipe's vocabulary, else the tokens artifact's (what pretrain builds the model with)."""
    if model.vocab_size:
        return model.vocab_size
    index = Path(train.tokens) / "index.json" if train.tokens else None
    if index is None or not index.is_file():
        return None
    import json

    return json.loads(index.read_text()).get("vocab_size")

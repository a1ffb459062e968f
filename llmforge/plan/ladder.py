"""IsoFLOP ladder (Hoffmann et al. 2022, approach 2): for each compute budget, a handful of model sizes around
the Chinchilla-optimal one, each trained for exactly that budget. Each rung is a pretrain recipe derived from a
base recipe; fitting their final losses (`llmforge plan fit`) gives your own scaling law.

Budgets are counted as C = 6·N·D with N the total parameter count (what `llmforge pretrain` reports), so every
rung of one budget lies on the same IsoFLOP line when `plan fit` groups runs by 6·N·D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmforge.console import UserError
from llmforge.plan.scaling_laws import APPROACH1, FLOPS_PER_PARAM_TOKEN
from llmforge.plan.shapes import Shape, model_table, param_counts, propose_shapes

if TYPE_CHECKING:
    from llmforge.recipe import Recipe

DEFAULT_SPREAD = (
    4.0  # sizes from N_opt/4 to 4·N_opt, as wide as Hoffmann et al.'s IsoFLOP profiles (Figure 3)
)


@dataclass(frozen=True)
class Rung:
    name: str
    budget: float
    shape: Shape
    params: int
    steps: int
    tokens: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "budget": self.budget,
            "params": self.params,
            "tokens": self.tokens,
            "steps": self.steps,
            "flops": FLOPS_PER_PARAM_TOKEN * self.params * self.tokens,
            "n_layers": self.shape.n_layers,
            "d_model": self.shape.d_model,
            "n_heads": self.shape.n_heads,
            "ffn_dim": self.shape.ffn,
        }


def budget_label(budget: float) -> str:
    mantissa, exponent = f"{budget:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def plan_ladder(
    budgets: list[float],
    sizes: int,
    *,
    run_name: str,
    arch: str,
    vocab_size: int,
    seq_len: int,
    tied: bool,
    global_batch_tokens: int,
    spread: float = DEFAULT_SPREAD,
) -> tuple[list[Rung], list[str]]:
    """Rungs per budget and notes on sizes left out (no shape of that size, or less than one step of data)."""
    rungs, skipped = [], []
    for budget in budgets:
        center = APPROACH1.optimal_params(budget)
        targets = (
            [center * spread ** (2 * i / (sizes - 1) - 1) for i in range(sizes)] if sizes > 1 else [center]
        )
        seen: set[tuple[int, int]] = set()
        for target in targets:
            try:
                shape = propose_shapes(
                    target,
                    arch=arch,
                    vocab_size=vocab_size,
                    seq_len=seq_len,
                    tied=tied,
                    count=1,
                    tolerance=0.25,
                )[0]
            except UserError:
                skipped.append(
                    f"C={budget_label(budget)}: no {arch} shape near {target:.3g} params with vocab {vocab_size}"
                )
                continue
            if (shape.n_layers, shape.d_model) in seen:
                continue
            seen.add((shape.n_layers, shape.d_model))
            params = param_counts(shape)["total"]
            steps = round(budget / (FLOPS_PER_PARAM_TOKEN * params * global_batch_tokens))
            if steps < 1:
                skipped.append(
                    f"C={budget_label(budget)}: {params:,} params gets less than one step of "
                    f"{global_batch_tokens} tokens"
                )
                continue
            name = f"{run_name}-C{budget_label(budget)}-N{params}"
            rungs.append(Rung(name, budget, shape, params, steps, steps * global_batch_tokens))
    if not rungs:
        raise UserError(
            "--budgets: no rung fits (budgets too small for the base recipe's vocabulary and batch)"
        )
    return rungs, skipped


def rung_recipe(base: dict, rung: Rung) -> dict:
    """The base recipe (as a dict) with this rung's run name, model shape and step count."""
    recipe = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    train = recipe.setdefault("train", {})
    base_steps = train.get("max_steps", rung.steps)
    recipe["run"] = {**recipe.get("run", {}), "name": rung.name}
    base_model = {k: v for k, v in recipe.get("model", {}).items() if k != "n_kv_heads"}
    recipe["model"] = {
        **base_model,
        **model_table(rung.shape),
        "max_seq_len": max(base_model.get("max_seq_len", rung.shape.seq_len), rung.shape.seq_len),
    }
    train["max_steps"] = rung.steps
    if "warmup_steps" in train:  # keep the base's warm-up fraction
        train["warmup_steps"] = min(
            rung.steps - 1, math.ceil(train["warmup_steps"] * rung.steps / base_steps)
        )
    for key in ("eval_every", "checkpoint_every"):
        if key in train:
            train[key] = min(train[key], rung.steps)
    return recipe


def write_ladder(
    base_path: Path, base: Recipe, budgets: list[float], sizes: int, out: Path, *, spread: float
) -> dict:
    """Validate every rung's recipe, then write them (`<name>.toml`), `results.json` and `report.md` into `out`
    atomically, as a `report` artifact whose input is the base recipe."""
    from llmforge.artifacts import atomic_dir, write_json, write_manifest
    from llmforge.recipe import validate_recipe

    model, train = base.table("model"), base.table("train")
    vocab = model.vocab_size or (base.tokenizer.vocab_size if base.tokenizer else None)
    if vocab is None:
        raise UserError(
            f"{base_path}: set model.vocab_size or tokenizer.vocab_size (the ladder sizes need it)"
        )
    rungs, skipped = plan_ladder(
        budgets,
        sizes,
        run_name=base.run.name,
        arch=model.arch,
        vocab_size=vocab,
        seq_len=train.seq_len,
        tied=model.tie_embeddings,
        global_batch_tokens=train.global_batch_tokens,
        spread=spread,
    )
    base_dict = base.to_dict()
    recipes = {
        rung.name: validate_recipe(rung_recipe(base_dict, rung), source=f"{rung.name}.toml") for rung in rungs
    }
    report = {
        "base": str(base_path),
        "budgets": budgets,
        "sizes": sizes,
        "spread": spread,
        "rungs": [{**rung.to_dict(), "recipe": f"{rung.name}.toml"} for rung in rungs],
        "skipped": skipped,
        "out": str(out),
    }
    with atomic_dir(out) as tmp:
        for name, recipe in recipes.items():
            (tmp / f"{name}.toml").write_text(recipe.to_toml(), encoding="utf-8")
        write_json(tmp / "results.json", report)
        (tmp / "report.md").write_text(_markdown(report), encoding="utf-8")
        write_manifest(
            tmp,
            "report",
            recipe=base_dict.get("plan", {}),
            inputs=[base_path],
            stats={"rungs": len(rungs), "budgets": len(budgets)},
        )
    return report


def _markdown(report: dict) -> str:
    lines = [
        f"# IsoFLOP ladder from {report['base']}",
        "",
        "Run each recipe with `llmforge pretrain`, then `llmforge plan fit` on the run directories.",
        "",
        "| recipe | budget (FLOPs) | params | tokens | steps | layers × d_model |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['recipe']} | {r['budget']:.3g} | {r['params']:,} | {r['tokens']:,} | {r['steps']:,} | "
        f"{r['n_layers']} × {r['d_model']} |"
        for r in report["rungs"]
    ]
    lines += [f"- skipped: {s}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"

"""IsoFLOP ladder (Hoffmann et al. 2022, approach 2): for each compute budget, a handful of model sizes around
the Chinchilla-optimal one, each trained for exactly that budget. Each rung is a pretrain recipe derived from a
base recipe; fitting their final losses (`llmforge plan fit`) gives your own scaling law.

Budgets are counted as C = 6·N·D with N the total parameter count (what `llmforge pretrain` reports), so every
rung of one budget lies on the same IsoFLOP line when `plan fit` groups runs by 6·N·D.

A rung recipe holds `[run]`, `[model]` and `[train]` only: it trains on the base run's tokens (`train.tokens`,
an absolute path, as is `run.out_dir`, so the rung runs from wherever its file is), so
`for r in LADDER/*.toml; do llmforge pretrain "$r"; done` runs the whole ladder once the base run's tokens
exist. When they already exist, each rung says how many passes over the training split its budget takes;
past 4 epochs repeated tokens are worth markedly less than new ones (Muennighoff et al. 2023, "Scaling
Data-Constrained Language Models", §5), so such rungs are flagged, or left out with `max_epochs`.
"""

from __future__ import annotations

import math
import shlex
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
USEFUL_EPOCHS = 4  # Muennighoff et al. 2023: up to ~4 epochs, repeated data is almost as good as new
RUNG_TABLES = ("run", "model", "train")


@dataclass(frozen=True)
class Rung:
    name: str
    budget: float
    shape: Shape
    params: int
    steps: int
    tokens: int

    def epochs(self, train_tokens: int | None) -> float | None:
        return self.tokens / train_tokens if train_tokens else None

    def to_dict(self, train_tokens: int | None = None) -> dict:
        return {
            "name": self.name,
            "budget": self.budget,
            "params": self.params,
            "tokens": self.tokens,
            "epochs": self.epochs(train_tokens),
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


def rung_recipe(base: dict, rung: Rung, *, out_dir: Path, tokens: Path) -> dict:
    """The base recipe's `[run]`, `[model]` and `[train]` (as written, a dict) with this rung's run name, model
    shape and step count, training on `tokens`; intervals shrink to the rung's length and no step is kept
    beyond `keep_last` (a ladder compares final losses)."""
    recipe = {k: dict(base[k]) for k in RUNG_TABLES if k in base}
    train = recipe.setdefault("train", {})
    base_steps = train.get("max_steps", rung.steps)
    recipe["run"] = {**recipe.get("run", {}), "name": rung.name, "out_dir": str(out_dir)}
    base_model = {
        k: v for k, v in recipe.get("model", {}).items() if k not in ("n_kv_heads", "ffn_dim", "init_from")
    }
    recipe["model"] = {
        **base_model,
        **model_table(rung.shape),
        "max_seq_len": max(base_model.get("max_seq_len", rung.shape.seq_len), rung.shape.seq_len),
    }
    train["max_steps"] = rung.steps
    train["tokens"] = str(tokens)
    train.pop("keep_every", None)
    if "warmup_steps" in train:  # keep the base's warm-up fraction
        train["warmup_steps"] = min(
            rung.steps - 1, math.ceil(train["warmup_steps"] * rung.steps / base_steps)
        )
    for key in ("eval_every", "checkpoint_every"):
        if key in train:
            train[key] = min(train[key], rung.steps)
    return recipe


@dataclass(frozen=True)
class BaseData:
    """Where the base run's tokens are, and what they hold once built (None before)."""

    path: Path
    train_tokens: int | None
    vocab_size: int | None


def base_data(base: Recipe) -> BaseData:
    from llmforge.artifacts import TOKENS_DIR
    from llmforge.artifacts.tokens import read_index

    train = base.table("train")
    path = (Path(train.tokens) if train.tokens else base.run_dir / TOKENS_DIR).resolve()
    if not (path / "index.json").is_file():
        return BaseData(path, None, None)
    index = read_index(path)
    return BaseData(path, int(index["splits"]["train"]["tokens"]), int(index["vocab_size"]))


def epoch_notes(rungs: list[Rung], data: BaseData, max_epochs: float | None) -> tuple[list[Rung], list[str]]:
    """The rungs whose epochs over the base run's training tokens stay within `max_epochs` (all of them when
    None, or when the tokens are not built yet and no cap was asked for), and a note for each rung left out."""
    if data.train_tokens is None:
        if max_epochs is not None:  # the cap cannot be applied: refuse rather than ignore it
            raise UserError(
                f"--max-epochs {max_epochs:g}: counting epochs needs the base run's tokens, and {data.path} "
                "does not exist yet; build them first (llmforge data build, llmforge tokenize train / encode) "
                "or leave --max-epochs out"
            )
        return rungs, []
    kept, notes = [], []
    for rung in rungs:
        epochs = rung.epochs(data.train_tokens)
        if max_epochs is not None and epochs > max_epochs:
            notes.append(
                f"{rung.name}: {rung.tokens:,} tokens = {epochs:.1f} epochs of the "
                f"{data.train_tokens:,} training tokens, above --max-epochs {max_epochs:g}"
            )
            continue
        kept.append(rung)
    return kept, notes


def write_ladder(
    base_path: Path,
    base: Recipe,
    budgets: list[float],
    sizes: int,
    out: Path,
    *,
    spread: float,
    max_epochs: float | None = None,
) -> dict:
    """Validate every rung's recipe, then write them (`<name>.toml`), `results.json` and `report.md` into `out`
    atomically, as a `report` artifact whose input is the base recipe."""
    from llmforge.artifacts import atomic_dir, write_json, write_manifest
    from llmforge.recipe import validate_recipe

    model, train = base.table("model"), base.table("train")
    data = base_data(base)
    vocab = model.vocab_size or data.vocab_size or (base.tokenizer.vocab_size if base.tokenizer else None)
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
        tied=model.tied,
        global_batch_tokens=train.global_batch_tokens,
        spread=spread,
    )
    rungs, too_long = epoch_notes(rungs, data, max_epochs)
    if not rungs:
        raise UserError(f"--max-epochs {max_epochs:g}: every rung repeats the data more often; {too_long[0]}")
    base_dict = base.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    out_dir = base.run.out_dir.resolve()
    recipes = {
        rung.name: validate_recipe(
            rung_recipe(base_dict, rung, out_dir=out_dir, tokens=data.path), source=f"{rung.name}.toml"
        )
        for rung in rungs
    }
    report = {
        "base": str(base_path),
        "budgets": budgets,
        "sizes": sizes,
        "spread": spread,
        "tokens": str(data.path),
        "train_tokens": data.train_tokens,
        "rungs": [{**rung.to_dict(data.train_tokens), "recipe": f"{rung.name}.toml"} for rung in rungs],
        "skipped": skipped + too_long,
        "warnings": _epoch_warnings(rungs, data),
        "run": f'for r in {shlex.quote(str(out))}/*.toml; do llmforge pretrain "$r"; done',
        "fit": "llmforge plan fit "
        + " ".join(
            sorted({f"{shlex.quote(str(base.run.out_dir / _budget_prefix(r.name)))}-*" for r in rungs})
        ),
        "out": str(out),
    }
    with atomic_dir(out) as tmp:
        for name, recipe in recipes.items():
            (tmp / f"{name}.toml").write_text(_rung_toml(recipe), encoding="utf-8")
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


def _epoch_warnings(rungs: list[Rung], data: BaseData) -> list[str]:
    if data.train_tokens is None:
        return [
            f"{data.path} does not exist yet: build the base run's tokens first (llmforge data build, "
            f"llmforge tokenize train / encode on the base recipe); epochs per rung unknown"
        ]
    over = [r for r in rungs if r.epochs(data.train_tokens) > USEFUL_EPOCHS]
    if not over:
        return []
    most = max(r.epochs(data.train_tokens) for r in over)
    return [
        f"{len(over)} of {len(rungs)} rungs repeat the {data.train_tokens:,} training tokens more than "
        f"{USEFUL_EPOCHS} times (up to {most:.1f} epochs), where repeated tokens are worth less than new "
        f"ones (Muennighoff et al. 2023): use more data, smaller --budgets, or --max-epochs {USEFUL_EPOCHS}"
    ]


def _rung_toml(recipe: Recipe) -> str:
    import tomli_w

    return tomli_w.dumps(recipe.model_dump(mode="json", exclude_unset=True, exclude_none=True))


def _markdown(report: dict) -> str:
    lines = [
        f"# IsoFLOP ladder from {report['base']}",
        "",
        f"Every rung trains on `{report['tokens']}`. Run them all, then fit the final losses:",
        "",
        "```bash",
        report["run"],
        report["fit"],
        "```",
        "",
        "| recipe | budget (FLOPs) | params | tokens | epochs | steps | layers × d_model |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['recipe']} | {r['budget']:.3g} | {r['params']:,} | {r['tokens']:,} | "
        f"{'?' if r['epochs'] is None else format(r['epochs'], '.1f')} | {r['steps']:,} | "
        f"{r['n_layers']} × {r['d_model']} |"
        for r in report["rungs"]
    ]
    lines += [f"- warning: {w}" for w in report["warnings"]]
    lines += [f"- skipped: {s}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def _budget_prefix(rung_name: str) -> str:
    """`tiny-C1e15` of `tiny-C1e15-N786816`: the run directories of one budget share it."""
    return rung_name.rsplit("-N", 1)[0]

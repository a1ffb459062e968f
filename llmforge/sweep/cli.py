"""`llmforge sweep` and `llmforge ablate`. Light to import: Optuna, torch and the stages load inside the
commands, after the space, the recipe keys, the storage and the output folder have been checked."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from llmforge.console import UserError, emit_json, summary_table, warn

SET = typer.Option(
    [], "--set", help="Override a base-recipe key for every run, e.g. --set train.max_steps=100."
)
STAGE = typer.Option("pretrain", "--stage", help="The stage each run is: pretrain or finetune (sft).")
TOKENS = typer.Option(
    None, "--tokens", help="Tokens artifact for pretrain runs (default: as pretrain finds it)."
)
JSON = typer.Option(False, "--json", help="Print the results as JSON on stdout.")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _name(value: str, flag: str) -> str:
    if not NAME.match(value):
        raise UserError(f"{flag} {value!r}: use 1-64 letters, digits, '.', '_' or '-' (it names folders)")
    return value


def sweep(
    recipe: Path = typer.Argument(..., help="The base recipe every trial starts from."),
    space: Path = typer.Option(
        ...,
        "--space",
        help='The search space TOML (a \\[space] table of recipe keys; see README "Sweeps and ablations").',
    ),
    set_: list[str] = SET,
    stage: str = STAGE,
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Finished trials to end with (file: trials)."
    ),
    timeout_minutes: float | None = typer.Option(
        None, "--timeout-minutes", help="Start no trial after this (file: timeout_minutes)."
    ),
    sampler: str | None = typer.Option(None, "--sampler", help="tpe, grid or random (file: sampler)."),
    pruner: str | None = typer.Option(None, "--pruner", help="median, halving or none (file: pruner)."),
    metric: str | None = typer.Option(
        None, "--metric", help="val_loss or eval:TASK[.METRIC], e.g. eval:piqa.acc (file: metric)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="The study's database: any SQLAlchemy URL, shared by several workers (default: sqlite:///OUT/study.db).",
    ),
    study: str | None = typer.Option(
        None, "--study", help="Study name (default: <run name>-<space file name>)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Sweep folder (default: <run dir>/sweeps/<study>)."
    ),
    tokens: Path | None = TOKENS,
    scale_to: str | None = typer.Option(
        None, "--scale-to", help="Also extrapolate the best settings to this many parameters (e.g. 1e9)."
    ),
    as_json: bool = JSON,
) -> None:
    """Search hyperparameters with Optuna: each trial is a real pretrain (or finetune) run in its own run
    directory; val loss at each eval step feeds the pruner; the study lives in a database, so running the
    same command again continues it (several workers may share one --storage). Writes a table of trials, the
    best recipe (best.toml), history / importance / curve PNGs and a report artifact.

    Example: llmforge sweep recipes/tiny.toml --space recipes/sweep-lr.toml --trials 8 --set train.max_steps=60
    """
    from llmforge.recipe import load_recipe
    from llmforge.sweep.search import SweepJob, check_job, default_out, resolve_tokens, run_sweep
    from llmforge.sweep.space import read_space
    from llmforge.sweep.stages import stage_named

    target = _params(scale_to) if scale_to is not None else None
    if timeout_minutes is not None and timeout_minutes <= 0:
        raise UserError(f"--timeout-minutes {timeout_minutes}: expected a positive number")
    cli = {"trials": trials, "timeout_minutes": timeout_minutes, "sampler": sampler, "pruner": pruner,
           "metric": metric}  # fmt: skip
    spec = read_space(space, cli)
    chosen = stage_named(stage)
    base = load_recipe(recipe, set_)
    base.table(chosen.table)
    name = _name(study or f"{base.run.name}-{space.stem}", "--study")
    folder = (out or default_out(base, name)).resolve()
    job = SweepJob(recipe, list(set_), spec, chosen, folder, storage or f"sqlite:///{folder / 'study.db'}", name,
                   resolve_tokens(base, chosen, tokens), target)  # fmt: skip
    check_job(job, base)
    summary = run_sweep(job)
    _show_sweep(summary, spec.metric.name, as_json)
    if summary["interrupted"]:
        warn("sweep interrupted; run the same command to continue it (finished trials are kept)")
        raise typer.Exit(130)


def _params(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--scale-to {text!r}: expected a parameter count such as 1e9") from None
    if not value >= 1e5 or value != value or value == float("inf"):
        raise UserError(f"--scale-to {text}: expected a parameter count ≥ 1e5")
    return value


def _show_sweep(summary: dict, metric: str, as_json: bool) -> None:
    if as_json:
        emit_json(summary)
        return
    import json

    results = json.loads((Path(summary["report"]) / "results.json").read_text())
    keys = list(results["space"])
    rows = [(t["number"], t["state"], *(_short(t["params"].get(k)) for k in keys), _short(t["value"]),
             t["steps"] if t["steps"] is not None else "–") for t in results["trials"]]  # fmt: skip
    summary_table(f"sweep {summary['study']}", rows, ("trial", "state", *keys, metric, "steps"))
    best = summary["best"]
    facts = {"best trial": best["number"] if best else "none complete", "report": summary["report"]}
    if best:
        facts.update({metric: _short(best["value"]), "best recipe": best["recipe"]})
    if summary["scaled"]:
        s = summary["scaled"]
        facts["extrapolated (not measured)"] = (f"{s['target_params']:,} params: lr {_short(s['lr']['target'])}, "
                                                f"batch {s['global_batch_tokens']['target']} → {s['recipe']}")  # fmt: skip
    summary_table("sweep result", facts)


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else ("–" if v is None else v)


def ablate(
    recipe: Path = typer.Argument(..., help="The base recipe every variant starts from."),
    vary: list[str] = typer.Option([], "--vary", help="KEY=V1,V2,… (repeatable: variants are the product)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Runs per variant (run.seed, run.seed+1, …)."),
    set_: list[str] = SET,
    stage: str = STAGE,
    metric: str = typer.Option("val_loss", "--metric", help="val_loss or eval:TASK[.METRIC]."),
    direction: str | None = typer.Option(
        None, "--direction", help="minimize or maximize (default: by metric)."
    ),
    alpha: float = typer.Option(0.01, "--alpha", help="Significance level of Welch's t-test."),
    name: str | None = typer.Option(None, "--name", help="Ablation name (default: the varied keys)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder (default: <run dir>/ablations/<name>)."
    ),
    tokens: Path | None = TOKENS,
    as_json: bool = JSON,
) -> None:
    """Run each variant with several seeds, then mean ± std of the metric per variant and Welch's t-test of
    each against the first (significant at p < --alpha; 0.01 is modded-nanogpt's bar), with a plot and a
    report artifact. Running it again skips finished runs and resumes an interrupted one.

    Example: llmforge ablate recipes/tiny.toml --vary model.arch=llama,gpt-neox --seeds 3 --set train.max_steps=60
    """
    from llmforge.recipe import load_recipe
    from llmforge.sweep.ablation import AblationJob, check_job, parse_vary, run_ablation
    from llmforge.sweep.search import resolve_tokens
    from llmforge.sweep.space import parse_metric
    from llmforge.sweep.stages import stage_named

    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: expected a level between 0 and 1, e.g. 0.01")
    parsed = parse_vary(vary)
    chosen_metric = parse_metric(metric, "--metric")
    chosen_direction = direction or chosen_metric.default_direction
    if chosen_direction not in ("minimize", "maximize"):
        raise UserError(f"--direction {direction!r}: expected minimize or maximize")
    chosen = stage_named(stage)
    base = load_recipe(recipe, set_)
    base.table(chosen.table)
    label = _name(name or "-".join(k.split(".")[-1] for k, _ in parsed), "--name")
    folder = (out or base.run_dir / "ablations" / label).resolve()
    job = AblationJob(recipe, list(set_), parsed, seeds, base.run.seed, chosen_metric, chosen_direction, alpha,
                      chosen, folder, resolve_tokens(base, chosen, tokens), label)  # fmt: skip
    check_job(job)
    summary = run_ablation(job)
    if as_json:
        emit_json(summary)
    else:
        rows = [(v["name"], v["n"], _short(v["mean"]), _short(v["std"])) for v in summary["variants"]]
        summary_table(f"ablate {label}", rows, ("variant", "runs", f"mean {metric}", "std"))
        if summary["tests"]:
            tests = [
                (t["variant"], _short(t["delta"]), _short(t["p"]), t["verdict"]) for t in summary["tests"]
            ]
            summary_table(f"Welch's t-test vs {summary['tests'][0]['baseline']} (alpha {alpha})", tests,
                          ("variant", "Δ mean", "p", "verdict"))  # fmt: skip
        summary_table("ablation report", {"report": summary["report"]})
    if summary["interrupted"]:
        warn("ablation interrupted; run the same command to continue (finished runs are kept)")
        raise typer.Exit(130)

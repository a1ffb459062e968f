"""`llmforge rlhf`: align an instruction-tuned model with preferences (no torch import at module load): `reward`
(a reward model), `dpo`, `ppo` (our own loop), `rloo` and `grpo` (trl), `tax` (the alignment tax on the eval
suite) and `make-preference-pairs` (the demo's pairs)."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import emit_json, info, summary_table

app = typer.Typer(
    help="Align an instruction-tuned checkpoint with preferences: reward model, DPO, PPO, RLOO, GRPO, and the "
    "alignment tax measured on the eval suite.",
    no_args_is_help=True,
)

RECIPE_HELP = "Recipe TOML with an \\[rlhf] table."
SET_HELP = "Override a recipe key, e.g. --set rlhf.dpo.beta=0.2."
FRESH_HELP = "Start over: delete this trainer's checkpoints and result first."
JSON_HELP = "Print the results as JSON on stdout."

EXAMPLE = """
Example (the demo model of recipes/tiny.toml: real function bodies preferred over corrupted ones):

  llmforge rlhf make-preference-pairs --instructions runs/tiny/instructions --out runs/tiny/preferences

  llmforge rlhf reward recipes/tiny.toml

  llmforge rlhf dpo recipes/tiny.toml --set rlhf.dpo.max_steps=20
"""


ROUNDS_HELP = (
    "Rounds of sample → label → train (2+: each later round samples pairs from the last policy, labels them "
    "with the rlhf.rounds judge or people's label files, and trains from it; under <rlhf.out>/rounds)."
)


def _load(recipe: Path, set_: list[str]):
    from llmforge.recipe import load_recipe

    return load_recipe(recipe, set_)


def _finish(outcome, as_json: bool, title: str, rows) -> None:
    if outcome.interrupted:
        raise typer.Exit(128 + outcome.interrupted)
    if as_json:
        emit_json(outcome.results)
    else:
        summary_table(title, rows(outcome.results))


@app.command("reward", epilog=EXAMPLE)
def reward(
    recipe: Path = typer.Argument(..., help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train a reward model (the SFT model with a scalar head, trl's RewardTrainer) on chosen/rejected pairs;
    writes <out>/checkpoint (a reward-model checkpoint) and <out>/report (held-out pairwise accuracy, margins,
    calibration.png). An interrupted run checkpoints; the same command resumes it.

    Example: llmforge rlhf reward recipes/tiny.toml --set rlhf.reward.max_steps=20
    """
    loaded = _load(recipe, set_)  # a bad recipe exits 2 before the trainer's imports (~10 s of transformers)
    from llmforge.rlhf.reward import run_reward, summary_rows

    _finish(run_reward(loaded, fresh=fresh), as_json, "rlhf reward", summary_rows)


@app.command("dpo", epilog=EXAMPLE)
def dpo(
    recipe: Path = typer.Argument(..., help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    rounds: int = typer.Option(1, "--rounds", min=1, help=ROUNDS_HELP),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Direct preference optimisation of the SFT policy (trl's DPOTrainer; any of its losses, β, precomputed
    reference log-probs); writes <out>/checkpoint and <out>/report (implicit-reward accuracy and margins, the
    log-prob margin before and after, dpo.png).

    Example: llmforge rlhf dpo recipes/tiny.toml --set rlhf.dpo.max_steps=20
    """
    loaded = _load(recipe, set_)
    if rounds > 1:
        _rounds("dpo", loaded, rounds, fresh, as_json)
        return
    from llmforge.rlhf.dpo import run_dpo, summary_rows

    _finish(run_dpo(loaded, fresh=fresh), as_json, "rlhf dpo", summary_rows)


@app.command("ppo", epilog=EXAMPLE)
def ppo(
    recipe: Path = typer.Argument(..., help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    rounds: int = typer.Option(1, "--rounds", min=1, help=ROUNDS_HELP),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """PPO-RLHF (our own loop: policy, frozen reference, value model, reward model or function) on prompts;
    writes <out>/checkpoint and <out>/report (reward, KL, reply length, entropy and clip fractions per step,
    ppo.png). Checkpoints every rlhf.ppo.save_every steps; a killed run resumes exactly with the same command.

    Example: llmforge rlhf ppo recipes/tiny.toml --set rlhf.ppo.steps=10
    """
    loaded = _load(recipe, set_)
    if rounds > 1:
        _rounds("ppo", loaded, rounds, fresh, as_json)
        return
    from llmforge.rlhf.ppo_run import run_ppo, summary_rows

    _finish(run_ppo(loaded, fresh=fresh), as_json, "rlhf ppo", summary_rows)


def _rounds(method: str, recipe, rounds: int, fresh: bool, as_json: bool) -> None:
    from llmforge.rlhf.rounds import run_rounds, summary_rows

    _finish(
        run_rounds(recipe, method, rounds, fresh=fresh),
        as_json,
        f"rlhf {method} --rounds {rounds}",
        summary_rows,
    )


def _online(algo: str, recipe: Path, set_: list[str], fresh: bool, as_json: bool) -> None:
    loaded = _load(recipe, set_)
    from llmforge.rlhf.online import run_online, summary_rows

    _finish(run_online(loaded, algo, fresh=fresh), as_json, f"rlhf {algo}", summary_rows)


@app.command("rloo", epilog=EXAMPLE)
def rloo(
    recipe: Path = typer.Argument(..., help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """REINFORCE leave-one-out (trl's RLOOTrainer) with the reward model or a programmatic reward; the same
    report as `rlhf ppo` (reward, KL, reply length per step; rloo.png).

    Example: llmforge rlhf rloo recipes/tiny.toml --set rlhf.rloo.max_steps=10
    """
    _online("rloo", recipe, set_, fresh, as_json)


@app.command("grpo", epilog=EXAMPLE)
def grpo(
    recipe: Path = typer.Argument(..., help=RECIPE_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Group-relative policy optimisation (trl's GRPOTrainer) with the reward model or a programmatic reward
    (e.g. reward_fn = "exact_answer" on GSM8K); the same report as `rlhf ppo` (grpo.png).

    Example: llmforge rlhf grpo recipes/tiny.toml --set rlhf.grpo.max_steps=10
    """
    _online("grpo", recipe, set_, fresh, as_json)


@app.command("make-preference-pairs")
def make_preference_pairs(
    instructions: Path = typer.Option(
        ...,
        "--instructions",
        help="An instructions artifact of prompt/completion pairs (runs/tiny/instructions).",
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the preferences artifact."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the corruptions."),
) -> None:
    """Build preference pairs from instruction pairs: chosen = the real completion (a function body), rejected =
    a corrupted copy (lines shuffled, truncated, another function's body, a wrong return); a preferences
    artifact (train.jsonl, val.jsonl, report.json) keeping the instructions' train/val split.

    Example: llmforge rlhf make-preference-pairs --instructions runs/tiny/instructions --out runs/tiny/preferences
    """
    from llmforge.rlhf.corrupted_pairs import build_corrupted_pairs

    report = build_corrupted_pairs(instructions, out, seed=seed)
    info(f"[green]wrote[/] {out}")
    summary_table(str(out), {k: v for k, v in report.items() if not isinstance(v, (dict, list))})


@app.command("tax")
def tax(
    before: Path = typer.Argument(..., help="The checkpoint before alignment (e.g. the SFT model)."),
    after: Path = typer.Argument(..., help="The checkpoint after alignment (e.g. the DPO or PPO output)."),
    tasks: str = typer.Option(
        ..., "--tasks", help="Comma-separated eval tasks, as `llmforge eval run` takes them."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the report artifact."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Items per task (quick checks)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Local task data (offline), as `llmforge eval run --data-dir` takes it."
    ),
    device: str | None = typer.Option(None, "--device", help="Device of both evals (cpu, cuda)."),
    eval_arg: list[str] = typer.Option(
        [],
        "--eval-arg",
        help="Another `llmforge eval run` option for both evals, e.g. --eval-arg=--num-fewshot=5.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The alignment tax: the eval suite run on both checkpoints (through `llmforge eval`), and per task the
    change of each metric with its 95% confidence interval, in a report artifact (report.json, tax.md, tax.png).

    Example: llmforge rlhf tax runs/tiny/finetune/checkpoint runs/tiny/rlhf/dpo/checkpoint --tasks piqa --limit 50 --data-dir ../shared/data --out runs/tiny/reports/tax
    """
    from llmforge.rlhf.tax import measure_tax, summary_rows

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    extra = [
        *(["--data-dir", str(data_dir)] if data_dir else []),
        *(["--device", device] if device else []),
        *eval_arg,
    ]
    report = measure_tax(before, after, names, out, limit=limit, extra_args=extra)
    if as_json:
        emit_json(report)
    else:
        summary_table("rlhf tax", summary_rows(report))

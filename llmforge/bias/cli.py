"""`llmforge bias`: audit a causal LM for social bias and toxicity (no torch import at module load)."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import UserError, emit_json, print_result, summary_table

app = typer.Typer(
    help="Audit a checkpoint for social bias and toxicity: CrowS-Pairs, StereoSet, BBQ, WinoBias, ETHOS, "
    "toxicity of generations on BOLD prompts, co-occurrence templates; output steering measured before/after.",
    no_args_is_help=True,
)

EXAMPLE = """
Example (the demo model; ../shared/data holds real slices of the public sets):

  llmforge bias run runs/tiny/finetune/checkpoint --data-dir ../shared/data --limit 100 --out runs/tiny/reports/bias-sft

  llmforge bias run runs/tiny/finetune/checkpoint --data-dir ../shared/data --probes toxicity --scorer classifier:runs/tiny/toxicity-classifier --steer recipes/steer.toml --out runs/tiny/reports/bias-steered
"""


def _default_out(model: Path) -> Path:
    """A pretraining step's report goes to the run's reports/bias/<step>, another checkpoint artifact's beside
    it (rlhf/dpo/checkpoint → rlhf/dpo/bias), any other model's to ./reports/bias/<name>."""
    resolved = model.resolve()
    if resolved.parent.name == "checkpoints":
        return resolved.parent.parent / "reports" / "bias" / resolved.name
    if (resolved / "manifest.json").is_file():
        return resolved.parent / "bias"
    return Path("reports") / "bias" / resolved.name


def _config(recipe: Path | None, set_: list[str]):
    """The [bias] table (defaults without a recipe) and the recipe it came from."""
    from llmforge.bias.config import BiasConfig

    if recipe is None:
        if set_:
            raise UserError("--set: needs --recipe")
        return BiasConfig(), None
    from llmforge.recipe import load_recipe

    loaded = load_recipe(recipe, set_)
    return (loaded.bias or BiasConfig()), loaded


def _probe_names(text: str) -> list[str]:
    from llmforge.bias.probes import PROBES

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROBES]
    if unknown:
        raise UserError(f"--probes: unknown probe '{unknown[0]}'; known: {', '.join(PROBES)}")
    if not names:
        raise UserError("--probes: no probe named")
    return names


@app.command("run", epilog=EXAMPLE)
def run(
    checkpoint: Path = typer.Argument(..., help="A causal-LM checkpoint or local Hugging Face model dir."),
    probes: str | None = typer.Option(
        None, "--probes", help="Comma-separated probes (default: every probe whose data is found)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Folder of the public bias datasets (e.g. ../shared/data)."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="At most N items per probe (co-occurrence: at least one continuation per template).",
    ),
    scorer: str | None = typer.Option(
        None, "--scorer", help="Toxicity scorer: classifier:DIR, hf:DIR or perspective (PERSPECTIVE_API_KEY)."
    ),
    steer: Path | None = typer.Option(
        None, "--steer", help="Steering TOML: probes that sample text run unsteered and steered."
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        min=0,
        help="Seed of the sampled continuations, the item order under --limit and the bootstrap intervals "
        "(lm-eval keeps its own fixed seed for few-shot examples).",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: auto)."),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Recipe whose \\[bias] table gives the defaults."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set bias.limit=50."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Report directory (default: with --recipe <run>/reports/bias; a pretraining step: <run>/reports/bias/<step>; another checkpoint: beside it, <dir>/bias).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing report at --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Run bias probes on a model and write a report artifact (results.json, report.md, bias.png, and each
    probe's per-item records). A killed audit rerun with the same command keeps the probes it had finished.
    """
    cfg, loaded_recipe = _config(recipe, set_)
    updates = {
        k: v
        for k, v in {
            "probes": _probe_names(probes) if probes is not None else None,
            "data_dir": str(data_dir.resolve()) if data_dir else None,
            "limit": limit,
            "steer": str(steer.resolve()) if steer else None,
            "seed": seed,
            "device": device,
        }.items()
        if v is not None
    }
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir}: no such directory")
    if steer is not None and not steer.is_file():
        raise UserError(f"--steer {steer}: no such file (a steering TOML: banned_words, token_bias, prefix)")
    cfg = cfg.model_copy(update=updates)
    if scorer is not None:
        cfg = cfg.model_copy(update={"toxicity": cfg.toxicity.model_copy(update={"scorer": scorer})})
    if out is None:
        out = Path(cfg.out) if cfg.out else (
            loaded_recipe.run_dir / "reports" / "bias" if loaded_recipe is not None else _default_out(checkpoint)
        )  # fmt: skip
    from llmforge.bias.run import plan_audit, run_audit, summary_rows

    audit = plan_audit(checkpoint, cfg, out, force=force)
    document = run_audit(audit)
    if as_json:
        emit_json(document)
    else:
        summary_table(f"bias audit of {checkpoint}", summary_rows(document))


@app.command("probes")
def list_probes(as_json: bool = typer.Option(False, "--json", help="Print the probes as JSON.")) -> None:
    """List the probes, the data each reads under --data-dir, and whether it samples text (steering applies).

    Example: llmforge bias probes --json
    """
    from llmforge.bias.probes import PROBES

    if as_json:
        emit_json({name: {"data": spec.data, "generates": spec.generates} for name, spec in PROBES.items()})
        return
    for name, spec in PROBES.items():
        print_result(f"{name:14s} {spec.data}{'  (samples text: --steer applies)' if spec.generates else ''}")

"""`llmforge pretrain`: thin CLI over `llmforge.pretrain.run` (no torch import at module load)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from llmforge.console import emit_json, summary_table

app = typer.Typer(
    help="Pretrain a model (causal LM, masked LM or T5 span corruption) on a tokens artifact (single process, DDP or FSDP).",
    no_args_is_help=True,
)

EXAMPLE = """
Examples:

  llmforge pretrain recipes/tiny.toml --set train.max_steps=50

  torchrun --standalone --nproc_per_node 2 -m llmforge pretrain recipes/tiny.toml

  accelerate launch --multi_gpu --num_processes 8 -m llmforge pretrain recipes/gpt2-124m.toml

  accelerate launch --config_file fsdp.yaml -m llmforge pretrain recipes/llama-1b.toml
  (fsdp.yaml from `llmforge plan parallel ... --write-accelerate-config`; it must match the recipe)
"""


# A callback, not a sub-command, so the command reads `llmforge pretrain RECIPE`; options may follow it.
@app.callback(invoke_without_command=True, epilog=EXAMPLE, context_settings={"allow_interspersed_args": True})
def pretrain(
    recipe: Path = typer.Argument(..., help="Recipe TOML with \\[model] and \\[train] tables."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.lr=3e-4."),
    tokens: Path | None = typer.Option(
        None, "--tokens", help="Tokens artifact (default: train.tokens, else <run dir>/tokens)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Require a checkpoint to resume from (a run resumes by itself when one exists).",
    ),
    max_restarts: int = typer.Option(
        0,
        "--max-restarts",
        min=0,
        help="Relaunch after a crash up to K times, from the latest checkpoint (one process only; under "
        "torchrun use torchrun's own --max-restarts).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Train from scratch, resume, or continue pretraining (model.init_from); writes checkpoints, metrics.jsonl
    and the report artifact reports/pretrain into the run directory.

    Example: llmforge pretrain recipes/tiny.toml --set train.max_steps=50
    """
    from llmforge.recipe import load_recipe

    loaded = load_recipe(recipe, set_)
    if max_restarts:
        from llmforge.pretrain.supervisor import refuse_under_launcher, run_with_restarts

        refuse_under_launcher(os.environ)

        raise typer.Exit(run_with_restarts(_child_args(recipe, set_, tokens, resume, as_json), max_restarts))

    from llmforge.pretrain.run import run_pretraining

    result = run_pretraining(loaded, tokens, resume=resume)
    if result.interrupted:
        raise typer.Exit(128 + result.interrupted)
    if result.report is None:  # ranks other than 0 stay quiet
        return
    if as_json:
        emit_json(result.results)
    else:
        r = result.results
        summary_table(
            f"pretrain {loaded.run.name}",
            {
                "steps": r["steps"],
                "tokens seen": r["tokens_seen"],
                "final val loss": r["final_val_loss"],
                "unigram entropy": r["unigram_entropy"],
                "params": r["params"],
                "tokens/s": r["tokens_per_s"],
                "MFU": r["mfu"],
                "spike events": len(r["spike_events"]),
                "checkpoint": r["checkpoint"],
                "report": str(result.report),
            },
        )


def _child_args(recipe: Path, set_: list[str], tokens: Path | None, resume: bool, as_json: bool) -> list[str]:
    """The same command without --max-restarts, for the supervised child process."""
    from llmforge.console import state

    args = [
        *(["--quiet"] if state.quiet else []),
        *(["--debug"] if state.debug else []),
        "pretrain",
        str(recipe),
    ]
    for item in set_:
        args += ["--set", item]
    if tokens is not None:
        args += ["--tokens", str(tokens)]
    return args + (["--resume"] if resume else []) + (["--json"] if as_json else [])


def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint dir (FSDP shards only, or with its weights)."),
    out: Path = typer.Option(..., "--out", help="The Hugging Face model dir to write (must not exist)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Write a checkpoint's weights as a Hugging Face model dir (config, model.safetensors, tokenizer) that
    eval, generate, finetune and serve load: FSDP checkpoints between export points hold shards only.

    Example: llmforge export runs/tiny/checkpoints/step-000200 --out runs/tiny/hf-step-000200
    """
    from llmforge.pretrain.export import export_checkpoint

    result = export_checkpoint(checkpoint, out)
    if as_json:
        emit_json(result)
    else:
        summary_table(
            "export",
            {"from": f"{checkpoint} ({result['from']})", "params": result["params"], "out": str(out)},
        )

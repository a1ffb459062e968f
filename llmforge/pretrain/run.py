"""One pretraining run end to end: validate, snapshot the environment, train, write the report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmforge.artifacts import TOKENS_DIR
from llmforge.recipe import Recipe

if TYPE_CHECKING:
    from llmforge.pretrain.trainer import Outcome


@dataclass
class RunResult:
    results: dict[str, Any]
    report: Path | None  # None on ranks other than 0 and when a signal stopped the run
    checkpoint: Path
    interrupted: int | None


def run_pretraining(recipe: Recipe, tokens: Path | None = None, *, resume: bool = False) -> RunResult:
    import torch
    from transformers.utils import logging as hf_logging

    from llmforge.console import configure
    from llmforge.pretrain.launch import check_shared_run_dir, launcher_environment, make_accelerator
    from llmforge.pretrain.metrics import read_metrics
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.report import write_report, write_snapshot
    from llmforge.pretrain.trainer import METRICS_FILE, pretrain

    hf_logging.disable_progress_bar()  # our own bar is the only one
    tokens = tokens or Path(recipe.table("train").tokens or recipe.run_dir / TOKENS_DIR)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    inputs = preflight(recipe, tokens, resume=resume, world_size=world, cuda=torch.cuda.is_available())
    launcher = launcher_environment()  # before make_accelerator hands the launcher's FSDP/compile over to us
    accelerator = make_accelerator(recipe.table("train"), recipe.run_dir)
    if not accelerator.is_main_process:
        configure(quiet=True)  # one progress bar and one log, rank 0's; warnings and errors still show
    check_shared_run_dir(recipe.run_dir, accelerator)
    if accelerator.is_main_process:
        write_snapshot(recipe, recipe.run_dir, launcher)
    try:
        outcome = pretrain(recipe, inputs, accelerator)
    except torch.OutOfMemoryError as e:
        raise RuntimeError(
            f"out of memory ({e}); lower train.micro_batch (gradient accumulation keeps the global batch), "
            f"turn on train.activation_checkpointing, or use train.distributed.strategy = 'fsdp'"
        ) from None
    results = _results(recipe, tokens, inputs.index["vocab_size"], outcome, accelerator.num_processes)
    report = None
    if accelerator.is_main_process and outcome.interrupted is None:
        metrics = read_metrics(recipe.run_dir / METRICS_FILE)
        report = write_report(recipe, results, metrics, [tokens, outcome.checkpoint])
    accelerator.wait_for_everyone()
    return RunResult(
        results=results, report=report, checkpoint=outcome.checkpoint, interrupted=outcome.interrupted
    )


def _results(
    recipe: Recipe, tokens: Path, vocab_size: int, outcome: Outcome, processes: int
) -> dict[str, Any]:
    """The run's results.json: losses against the unigram entropy, size, throughput, events."""
    from llmforge.artifacts.tokens import TokenShards
    from llmforge.pretrain.report import unigram_entropy

    state, size, train = outcome.state, outcome.size, recipe.table("train")
    return {
        "objective": outcome.objective,
        "final_val_loss": state.val_loss,
        "unigram_entropy": unigram_entropy(TokenShards(tokens, "train"), vocab_size),
        "params": size.params,
        "non_embedding_params": size.non_embedding_params,
        "flops_per_token": size.flops_per_token,
        "tokens_seen": state.tokens_seen,
        "steps": state.step,
        "tokens_per_s": outcome.tokens_per_s,
        "mfu": outcome.mfu,
        "device": outcome.peak.device,
        "peak_flops": outcome.peak.flops,
        "peak_flops_source": outcome.peak.source,
        "processes": processes,
        "strategy": train.distributed.strategy,
        "local_params": outcome.local_params,
        "precision": train.precision,
        "spike_events": outcome.events,
        "checkpoint": str(outcome.checkpoint.resolve()),
        "completed": outcome.interrupted is None,
    }

"""The parts a run trains with, put together from the recipe and the checked inputs: the strategy and the
model it spreads, the optimizer, the objective and its windows, the checkpointer, the model's size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmforge.artifacts import CHECKPOINTS_DIR
from llmforge.artifacts.tokens import TokenShards, TokenWindows
from llmforge.objectives.base import Objective
from llmforge.pretrain.checkpointer import Checkpointer
from llmforge.pretrain.model import (
    ModelSize,
    build_model,
    enable_activation_checkpointing,
    load_model,
    model_size,
)
from llmforge.pretrain.preflight import Inputs
from llmforge.pretrain.strategy import Strategy, make_strategy
from llmforge.recipe import Recipe


@dataclass
class Engine:
    strategy: Strategy
    objective: Objective
    train_windows: TokenWindows
    val_windows: TokenWindows
    model: Any  # as the strategy wraps it
    optimizer: Any
    checkpointer: Checkpointer
    size: ModelSize


def assemble(recipe: Recipe, inputs: Inputs, accelerator: Any) -> Engine:
    train, seed = recipe.table("train"), recipe.run.seed
    strategy = make_strategy(accelerator, train)
    objective = inputs.objective
    windows = {
        split: objective.windows(
            TokenShards(inputs.tokens, split), train.seq_len, seed, shuffle=split == "train"
        )
        for split in ("train", "val")
    }
    model = initial_model(recipe, inputs)
    size = model_size(model, train.seq_len, objective.target_length(train.seq_len))
    model, optimizer = strategy.prepare(model)
    checkpointer = Checkpointer(
        recipe.run_dir / CHECKPOINTS_DIR,
        strategy,
        tokenizer_dir=inputs.tokenizer_dir,
        specials=inputs.specials,
        recipe=recipe.to_dict(),
        inputs=[inputs.tokens],
        keep_last=train.keep_last,
        keep_every=train.keep_every,
    )
    return Engine(strategy, objective, windows["train"], windows["val"], model, optimizer, checkpointer, size)


def initial_model(recipe: Recipe, inputs: Inputs) -> Any:
    """A fresh model from `[model]`, or the `init_from` checkpoint (continued pretraining)."""
    import torch

    model_cfg, seed = recipe.table("model"), recipe.run.seed
    if model_cfg.init_from:
        torch.manual_seed(seed)
        model = load_model(model_cfg.init_from)
    else:
        specials = inputs.specials
        model = build_model(model_cfg, inputs.vocab_size, specials.eos_id, seed, pad_id=specials.pad_id)
    if recipe.table("train").activation_checkpointing:
        enable_activation_checkpointing(model)
    return model

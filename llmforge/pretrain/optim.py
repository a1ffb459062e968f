"""The optimizer: AdamW with decoupled weight decay on matrices only (Loshchilov & Hutter 2019)."""

from __future__ import annotations

from typing import Any

from llmforge.pretrain.config import TrainConfig


def param_groups(model: Any, train: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on norms and biases, nor on embeddings unless configured."""
    embeddings = {id(model.get_input_embeddings().weight)}
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        skip = p.dim() < 2 or (id(p) in embeddings and not train.decay_embeddings)
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: Any, train: TrainConfig) -> Any:
    """Fused AdamW (one kernel for all parameters, on CPU and GPU)."""
    import torch

    return torch.optim.AdamW(
        param_groups(model, train),
        lr=train.lr,
        betas=(train.beta1, train.beta2),
        eps=train.eps,
        fused=True,
    )

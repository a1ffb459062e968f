"""How a plain model is spread over the processes of a run, applied from outside the model (torchtitan's
rule: parallelism wraps the model, the model does not know about it).

    Replicated   one process, or DDP through Accelerate: every rank holds the whole model
    Sharded      FSDP2 `fully_shard` (parallel.py): parameters, gradients and optimizer state sharded

A strategy builds the optimizer, runs the forward's precision context, backward, gradient sync, clipping
and the reductions, and says how checkpoints hold the state (`sharded`). The training loop calls these and
never asks which strategy it has.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

from llmforge.pretrain.config import TrainConfig
from llmforge.pretrain.optim import make_optimizer
from llmforge.pretrain.parallel import local_numel, shard_model

if TYPE_CHECKING:
    import torch


class Strategy:
    """The part every strategy shares: Accelerate owns devices, process group, backward and reductions."""

    name = ""
    sharded = (
        False  # checkpoints hold one shard per rank (torch.distributed.checkpoint) rather than full state
    )

    def __init__(self, accelerator: Any, train: TrainConfig):
        self.acc, self.train = accelerator, train
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.device = accelerator.device
        self.is_main = accelerator.is_main_process
        self.model: Any = None  # what the loop calls (a DDP wrapper, or the sharded module)
        self.optimizer: Any = None  # Accelerate's optimizer wrapper

    def prepare(self, model: torch.nn.Module) -> tuple[Any, Any]:
        raise NotImplementedError

    @property
    def module(self) -> torch.nn.Module:
        """The model itself, without a DDP wrapper (under FSDP its parameters are DTensor shards)."""
        return self.acc.unwrap_model(self.model)

    @property
    def torch_optimizer(self) -> Any:
        return self.optimizer.optimizer

    def autocast(self) -> Any:
        return self.acc.autocast()

    def gradient_sync(self, sync: bool) -> Any:
        """Gradients are reduced across processes only on the last micro-batch of a step."""
        return contextlib.nullcontext() if sync else self.acc.no_sync(self.model)

    def backward(self, loss: Any) -> None:
        self.acc.backward(loss)

    def clip_grad_norm(self, max_norm: float) -> float:
        """Clip to `max_norm` (0: measure only) and return the global gradient norm before clipping."""
        norm = self.acc.clip_grad_norm_(self.model.parameters(), max_norm if max_norm > 0 else math.inf)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def reduce_sum(self, tensor: Any) -> Any:
        return self.acc.reduce(tensor, reduction="sum")

    def any(self, *flags: bool) -> list[bool]:
        """The OR of each flag over all ranks (signals and wall clocks differ between processes)."""
        if self.world == 1:
            return list(flags)
        import torch

        t = torch.tensor([float(f) for f in flags], device=self.device)
        return [bool(v) for v in self.reduce_sum(t).tolist()]

    def even_share(self, n: int) -> tuple[list[int], list[float]]:
        """This rank's items of `n` for evaluation, padded so every rank makes the same number of forward
        passes (under FSDP each pass all-gathers with the others): padding repeats item 0 with weight 0."""
        per_rank = math.ceil(n / self.world)
        mine = list(range(self.rank, n, self.world))
        weights = [1.0] * len(mine) + [0.0] * (per_rank - len(mine))
        return mine + [0] * (per_rank - len(mine)), weights

    def local_params(self) -> int:
        return local_numel(self.model)

    def weights_finite(self) -> bool:
        """Whether every weight (every shard, on every rank) is finite."""
        import torch

        bad = any(
            not torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()
            for p in self.model.parameters()
        )
        return not self.any(bad)[0]

    def barrier(self) -> None:
        self.acc.wait_for_everyone()


class Replicated(Strategy):
    """One process, or DDP (Accelerate wraps the model and averages gradients in backward)."""

    name = "ddp"

    def prepare(self, model: torch.nn.Module) -> tuple[Any, Any]:
        self.model, self.optimizer = self.acc.prepare(model, make_optimizer(model, self.train))
        return self.model, self.optimizer


class Sharded(Strategy):
    """FSDP2: each block is sharded over all ranks; FSDP's mixed-precision policy casts, so Accelerate's
    autocast stays off (make_accelerator asks it for fp32)."""

    name = "fsdp"
    sharded = True

    def prepare(self, model: torch.nn.Module) -> tuple[Any, Any]:
        distributed = self.train.distributed
        self.model = shard_model(
            model,
            full_shard=distributed.fsdp_sharding == "full-shard",
            precision=self.train.precision,
            device=self.device,
        )
        # Already sharded: only the optimizer goes through Accelerate, which would wrap the model in DDP.
        self.optimizer = self.acc.prepare(make_optimizer(self.model, self.train))
        return self.model, self.optimizer

    def autocast(self) -> Any:
        return contextlib.nullcontext()

    def gradient_sync(self, sync: bool) -> Any:
        self.model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()


def make_strategy(accelerator: Any, train: TrainConfig) -> Strategy:
    return (Sharded if train.distributed.strategy == "fsdp" else Replicated)(accelerator, train)

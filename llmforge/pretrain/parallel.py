"""FSDP2 sharding applied to a built model (torchtitan style: parallelism wraps the model, the model
does not know about it).

torch's `fully_shard` is used directly rather than through Accelerate's FSDP plugin because Accelerate
silently turns FSDP into plain DDP on CPU; this way the code path that runs on GPUs is the one the
2-process CPU test (gloo) exercises. Accelerate still owns launch, process group, precision and
reductions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from llmforge.archs import family_of_model_type
from llmforge.console import UserError

if TYPE_CHECKING:
    import torch

_PRECISION_DTYPES = {"bf16-mixed": "bfloat16", "fp16-mixed": "float16"}


def shard_model(model: torch.nn.Module, *, full_shard: bool, precision: str, device: Any) -> torch.nn.Module:
    """Shard every transformer block (the family's `layer_classes`, llmforge/archs) (one all-gather each in forward and backward), then the root
    (embeddings, final norm, head), over all processes.

    full_shard=True frees gathered parameters after forward (ZeRO-3); False keeps them until backward
    is done (ZeRO-2: only gradients and optimizer state stay sharded between uses).
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise UserError(
                "train.distributed.strategy = 'fsdp': launch with torchrun or `accelerate launch` "
                "(even for one process), or use 'ddp'"
            )
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    dtype = _PRECISION_DTYPES.get(precision)
    mp = MixedPrecisionPolicy(
        param_dtype=getattr(torch, dtype) if dtype else None,
        reduce_dtype=torch.float32 if dtype else None,
    )
    names = set(family_of_model_type(model.config.model_type).layer_classes)
    block_types = tuple({type(m) for m in model.modules() if type(m).__name__ in names})
    if not block_types:
        raise RuntimeError(
            f"{type(model).__name__}: none of its blocks ({', '.join(sorted(names))}) found to shard"
        )
    for module in model.modules():
        if isinstance(module, block_types):
            fully_shard(module, mesh=mesh, reshard_after_forward=full_shard, mp_policy=mp)
    fully_shard(model, mesh=mesh, reshard_after_forward=full_shard, mp_policy=mp)
    return model


def local_numel(model: torch.nn.Module) -> int:
    """Parameter elements held by this process (a shard of each under FSDP, all of them otherwise)."""
    return sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())

"""Process-level setup of a run: the Accelerator (devices, precision, process group, trackers) and the
signal handling that turns SIGTERM/SIGINT into "checkpoint, then stop"."""

from __future__ import annotations

import os
import signal
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.pretrain.config import TrainConfig

_TRUE = {"true", "1", "yes"}
_PRECISION = {"bf16": "bf16-mixed", "fp16": "fp16-mixed"}
_FSDP1_SHARDING = {
    "FULL_SHARD": "full-shard",
    "1": "full-shard",
    "SHARD_GRAD_OP": "shard-grad-op",
    "2": "shard-grad-op",
}


def launcher_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """What `accelerate launch [--config_file F]` asked for, as recipe keys.

    The launcher passes its config to each process as environment variables. Only settings it sets on
    purpose count: `ACCELERATE_MIXED_PRECISION` is always set ("no" when the config says nothing), so
    "no" asks for nothing. Settings llmforge has no code path for are refused here rather than ignored.
    """
    env = {k: v.strip() for k, v in environ.items() if k.startswith(("ACCELERATE_", "FSDP_"))}
    for key, what in (
        ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"),
        ("ACCELERATE_USE_MEGATRON_LM", "Megatron-LM"),
    ):
        if env.get(key, "").lower() in _TRUE:
            raise UserError(
                f"the accelerate config asks for {what}; llmforge pretrain shards with FSDP: use "
                f"distributed_type: FSDP (or `llmforge plan parallel --write-accelerate-config`)"
            )
    wanted: dict[str, Any] = {}
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if precision in _PRECISION:
        wanted["train.precision"] = _PRECISION[precision]
    elif precision != "no":
        raise UserError(f"the accelerate config asks for mixed_precision: {precision}; use bf16, fp16 or no")
    if env.get("ACCELERATE_DYNAMO_BACKEND", "NO").upper() != "NO":
        wanted["train.compile"] = True
    if env.get("ACCELERATE_USE_FSDP", "").lower() in _TRUE:
        wanted["train.distributed.strategy"] = "fsdp"
        if env.get("FSDP_VERSION", "1") == "2":
            reshard = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in _TRUE
            wanted["train.distributed.fsdp_sharding"] = "full-shard" if reshard else "shard-grad-op"
        else:
            strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
            if strategy not in _FSDP1_SHARDING:
                raise UserError(
                    f"the accelerate config asks for fsdp_sharding_strategy {strategy}; llmforge shards "
                    f"FULL_SHARD or SHARD_GRAD_OP"
                )
            wanted["train.distributed.fsdp_sharding"] = _FSDP1_SHARDING[strategy]
        if env.get("FSDP_OFFLOAD_PARAMS", "").lower() in _TRUE:
            raise UserError(
                "the accelerate config asks for fsdp_offload_params: true, which llmforge does not do; set it "
                "to false (shard over more GPUs, or turn on train.activation_checkpointing)"
            )
        if env.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() in _TRUE:
            wanted["train.activation_checkpointing"] = True
    return wanted


def check_launcher(train: TrainConfig, environ: MutableMapping[str, str] = os.environ) -> None:
    """The recipe decides how a run trains; a launcher setting it does not match is an error that lists
    the overrides which would match it (rather than one of the two being silently ignored)."""
    mismatched = {
        key: value for key, value in launcher_settings(environ).items() if _recipe_value(train, key) != value
    }
    if mismatched:
        have = ", ".join(f"{k} = {_recipe_value(train, k)!r}" for k in mismatched)
        sets = " ".join(f"--set {k}={_toml(v)}" for k, v in mismatched.items())
        raise UserError(
            f"the accelerate config does not match the recipe ({have}): add {sets}, or launch with a "
            f"config that matches the recipe"
        )


def _recipe_value(train: TrainConfig, key: str) -> Any:
    value: Any = train
    for part in key.split(".")[1:]:
        value = getattr(value, part)
    return value


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _hand_over_launcher_env(environ: MutableMapping[str, str]) -> None:
    """Our code realises FSDP (parallel.py) and compilation (trainer.py) once `check_launcher` has matched
    them to the recipe; Accelerate must not do either a second time."""
    environ.pop("ACCELERATE_USE_FSDP", None)
    if "ACCELERATE_DYNAMO_BACKEND" in environ:
        environ["ACCELERATE_DYNAMO_BACKEND"] = "NO"


def make_accelerator(train: TrainConfig, run_dir: Path) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    _hand_over_launcher_env(os.environ)
    # Accelerate keeps its settings in a process-wide singleton; a second run in the same process (a
    # notebook, the benchmark, tests) may ask for another precision. The process group is kept.
    AcceleratorState._reset_state()
    precision = {"fp32": "no", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}[train.precision]
    if train.distributed.strategy == "fsdp":  # FSDP's own mixed-precision policy casts (parallel.py)
        precision = "no"
    kwargs: dict[str, Any] = {}
    if train.report_to != "none":
        kwargs.update(log_with=train.report_to, project_dir=str(run_dir / "trackers"))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision, **kwargs)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"Accelerate started {accelerator.num_processes} process(es) but WORLD_SIZE={world}: launch with "
            f"torchrun or `accelerate launch --multi_gpu` (`accelerate launch --cpu` runs one process)"
        )
    return accelerator


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

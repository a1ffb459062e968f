"""Process-level setup of a run: the Accelerator (devices, precision, process group, trackers) and the
signal handling that turns SIGTERM/SIGINT into "checkpoint, then stop"."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.pretrain.config import TrainConfig

_TRUE = {"1", "true", "t", "yes", "y", "on"}  # accelerate's str_to_bool
_FALSE = {"0", "false", "f", "no", "n", "off"}
# train.precision → Accelerate's mixed_precision, and back (for what a launcher config asks for).
ACCELERATE_PRECISION = {"fp32": "no", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}
_PRECISION = {v: k for k, v in ACCELERATE_PRECISION.items() if v != "no"}
# Environment a launcher (torchrun, `accelerate launch`) hands to each process.
_LAUNCHER_PREFIXES = ("ACCELERATE_", "FSDP_", "PARALLELISM_CONFIG_")
_LAUNCHER_KEYS = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
_PARALLELISM_SIZES = ("DP_REPLICATE_SIZE", "TP_SIZE", "CP_SIZE", "SP_SIZE")


def _flag(env: dict[str, str], key: str, default: str = "false") -> bool:
    value = env.get(key, default).lower()
    if value not in _TRUE | _FALSE:
        raise UserError(f"the accelerate config sets {key} = {value!r}; expected true or false")
    return value in _TRUE


def _refuse(setting: str, advice: str) -> UserError:
    return UserError(
        f"the accelerate config asks for {setting}, which llmforge pretrain does not do; {advice}"
    )


def launcher_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """What `accelerate launch [--config_file F]` asked for, as recipe keys.

    The launcher passes its config to each process as environment variables. Only settings it sets on
    purpose count: `ACCELERATE_MIXED_PRECISION` is always set ("no" when the config says nothing), so
    "no" asks for nothing. Settings llmforge has no code path for are refused here rather than ignored.
    """
    env = {k: v.strip() for k, v in environ.items() if k.startswith(_LAUNCHER_PREFIXES)}
    for key, what in (
        ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"),
        ("ACCELERATE_USE_MEGATRON_LM", "Megatron-LM"),
    ):
        if _flag(env, key):
            raise _refuse(
                what, "use distributed_type: FSDP (`llmforge plan parallel --write-accelerate-config`)"
            )
    if _flag(env, "ACCELERATE_USE_PARALLELISM_CONFIG"):
        for size in _PARALLELISM_SIZES:
            if env.get(f"PARALLELISM_CONFIG_{size}", "1") not in ("1", "None", ""):
                raise _refuse(
                    f"parallelism_config {size.lower()} = {env[f'PARALLELISM_CONFIG_{size}']}",
                    "it shards with FSDP over all processes (data parallel only)",
                )
    wanted: dict[str, Any] = {}
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if precision in _PRECISION:
        wanted["train.precision"] = _PRECISION[precision]
    elif precision != "no":
        raise _refuse(f"mixed_precision: {precision}", "use bf16, fp16 or no")
    wanted.update(_compile_settings(env))
    if _flag(env, "ACCELERATE_USE_FSDP"):
        wanted.update(_fsdp_settings(env))
    return wanted


def _compile_settings(env: dict[str, str]) -> dict[str, Any]:
    """`dynamo_backend: INDUCTOR` (with default mode, no fullgraph/dynamic) is `train.compile = true`."""
    backend = env.get("ACCELERATE_DYNAMO_BACKEND", "NO").upper()
    if backend == "NO":
        return {}
    if backend != "INDUCTOR":
        raise _refuse(f"dynamo_backend: {backend}", "torch.compile runs with inductor: use INDUCTOR or NO")
    if env.get("ACCELERATE_DYNAMO_MODE", "default") != "default":
        raise _refuse(f"dynamo_mode: {env['ACCELERATE_DYNAMO_MODE']}", "leave dynamo_mode at default")
    for key in ("ACCELERATE_DYNAMO_USE_FULLGRAPH", "ACCELERATE_DYNAMO_USE_DYNAMIC"):
        if _flag(env, key):
            raise _refuse(f"{key.removeprefix('ACCELERATE_').lower()}: true", "leave it false")
    return {"train.compile": True}


def _fsdp_settings(env: dict[str, str]) -> dict[str, Any]:
    """FSDP2 only (llmforge shards with torch's `fully_shard`): full shard or shard-grad-op, no offload."""
    if env.get("FSDP_VERSION", "1") != "2":
        raise _refuse("fsdp_version: 1", "set fsdp_version: 2 (llmforge shards with FSDP2)")
    reshard = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower()
    if reshard not in _TRUE | _FALSE:  # a FSDP1 sharding strategy name (HYBRID_SHARD, NO_SHARD, ...)
        raise _refuse(
            f"fsdp_reshard_after_forward: {reshard}", "use true (full shard) or false (shard-grad-op)"
        )
    wanted: dict[str, Any] = {
        "train.distributed.strategy": "fsdp",
        "train.distributed.fsdp_sharding": "full-shard" if reshard in _TRUE else "shard-grad-op",
    }
    if _flag(env, "FSDP_OFFLOAD_PARAMS"):
        raise _refuse(
            "fsdp_offload_params: true",
            "set it to false (shard over more GPUs, or turn on activation checkpointing)",
        )
    state_dict_type = env.get("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT").upper()
    if state_dict_type != "FULL_STATE_DICT":  # checkpoints gather full weights into model.safetensors
        raise _refuse(
            f"fsdp_state_dict_type: {state_dict_type}",
            "remove it or set FULL_STATE_DICT (checkpoints hold the gathered weights in Hugging Face format)",
        )
    # FSDP_CPU_RAM_EFFICIENT_LOADING is not checked: `accelerate launch` sets it to true whenever a config
    # leaves it out, and skipping it changes nothing but host memory (every rank builds the same model).
    if _flag(env, "FSDP_ACTIVATION_CHECKPOINTING"):
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


def launcher_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """What torchrun / `accelerate launch` passed to this process (world, rendezvous, Accelerate's settings)."""
    return {
        k: v for k, v in sorted(environ.items()) if k.startswith(_LAUNCHER_PREFIXES) or k in _LAUNCHER_KEYS
    }


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
    precision = ACCELERATE_PRECISION[train.precision]
    if train.distributed.strategy == "fsdp":  # FSDP's own mixed-precision policy casts (parallel.py)
        precision = "no"
    kwargs: dict[str, Any] = {}
    if train.trackers:
        kwargs.update(log_with=list(train.trackers), project_dir=str(run_dir / "trackers"))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision, **kwargs)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"Accelerate started {accelerator.num_processes} process(es) but WORLD_SIZE={world}: launch with "
            f"torchrun or `accelerate launch --multi_gpu` (`accelerate launch --cpu` runs one process)"
        )
    return accelerator


SHARED_MARKER = ".llmforge-shared-fs-check"


def check_shared_run_dir(run_dir: Path, accelerator: Any, wait_s: float = 30.0) -> None:
    """Rank 0 writes checkpoints that every rank reads back (resume, rollback), so the run directory must
    be one filesystem for all nodes. Rank 0 writes a marker there; every rank must see it (NFS may take
    a moment to show a new file, hence the wait)."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import broadcast_object_list, gather_object

    marker = run_dir / SHARED_MARKER
    token = [uuid.uuid4().hex if accelerator.is_main_process else None]
    broadcast_object_list(token)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(token[0])
    accelerator.wait_for_everyone()
    seen = _sees(marker, token[0], wait_s)
    views = gather_object([(accelerator.process_index, socket.gethostname(), seen)])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink(missing_ok=True)
    blind = [(rank, host) for rank, host, ok in views if not ok]
    if blind:
        who = ", ".join(f"rank {rank} on {host}" for rank, host in blind)
        raise UserError(
            f"{who} cannot see the run directory {run_dir} that rank 0 writes (checkpoints are saved by rank 0 "
            f"and read by every rank): a multi-node run needs run.out_dir on a filesystem all nodes share "
            f"(NFS, Lustre, ...)"
        )


def _sees(marker: Path, token: str | None, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if marker.read_text() == token:
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)

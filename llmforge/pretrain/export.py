"""`llmforge export CKPT --out DIR`: a Hugging Face model dir from a checkpoint, whatever its form.

An FSDP run saves most checkpoints as shards only (every rank's piece of the weights and optimizer state, in
`trainer_state/shards/`, torch.distributed.checkpoint); only export points carry `model.safetensors`. This
reads the weights out of the shards in one process (DCP reshards any world size into one), without the
optimizer state, and writes config, weights and tokenizer as an artifact every other stage loads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, read_manifest, write_manifest
from llmforge.console import UserError
from llmforge.pretrain.checkpoint import SHARDS_DIR, STATE_DIR, TOKENIZER_FILES

CONFIG_FILES = ("config.json", "generation_config.json")


def export_checkpoint(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Write `out` (a new dir) from `checkpoint`; returns what was written."""
    shards = _check(checkpoint, out)
    model = _model_from_config(checkpoint)
    if shards is not None:
        _load_shards(model, shards)
        source = "shards"
    else:
        from llmforge.pretrain.checkpoint import load_weights

        load_weights(model, checkpoint)
        source = "model.safetensors"
    manifest = read_manifest(checkpoint)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in (*CONFIG_FILES, *TOKENIZER_FILES):
            if (checkpoint / name).is_file():
                shutil.copy2(checkpoint / name, tmp / name)
        stats = {**manifest.get("stats", {}), "exported_from": source}
        write_manifest(tmp, "checkpoint", recipe=manifest.get("recipe"), inputs=[checkpoint], stats=stats)
    params = sum(p.numel() for p in model.parameters())
    return {"checkpoint": str(checkpoint), "out": str(out), "from": source, "params": params}


def _check(checkpoint: Path, out: Path) -> Path | None:
    """The shards dir (None: whole weights, read from model.safetensors); UserError for a damaged checkpoint
    or an occupied `out`."""
    from llmforge.pretrain.preflight import checkpoint_problem

    if not (checkpoint / "config.json").is_file() or not (checkpoint / "manifest.json").is_file():
        raise UserError(f"{checkpoint}: not an llmforge checkpoint (no config.json and manifest.json)")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise UserError(f"{checkpoint}: damaged checkpoint ({problem})")
    if out.exists():
        raise UserError(f"--out {out}: already exists; give a new directory")
    ensure_writable(out)
    shards = checkpoint / STATE_DIR / SHARDS_DIR
    return shards if shards.is_dir() else None


def _model_from_config(checkpoint: Path) -> Any:
    """A fresh model of the checkpoint's shape, built by its family as pretraining built it (T5's untied head)."""
    from llmforge.archs import family_of_model_type
    from llmforge.artifacts.model_dir import model_config

    config = model_config(checkpoint)  # UserError for a config.json that is not JSON
    family = family_of_model_type(config.get("model_type"))
    import transformers

    try:
        hf_config = transformers.AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{checkpoint}/config.json: not a config transformers reads ({e})") from None
    return family.build(hf_config)


def _load_shards(model: Any, shards: Path) -> None:
    """The model part of the DCP checkpoint into `model`, in this one process (no process group)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}  # the keys and shapes the shards were saved under
    try:
        dcp.load(state, checkpoint_id=str(shards))
    except Exception as e:  # noqa: BLE001 - DCP raises CheckpointException wrapping each rank's error
        raise UserError(f"{shards}: shards do not load into {type(model).__name__} ({e})") from None
    set_model_state_dict(model, state["model"])

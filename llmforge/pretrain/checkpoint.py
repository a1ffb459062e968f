"""Checkpoints: Hugging Face weights beside a `trainer_state/` that makes resuming exact.

    checkpoints/step-000300/
      config.json  model.safetensors  generation_config.json  tokenizer files   (loads with from_pretrained)
      trainer_state/
        state.json      step, data cursor, tokens seen, LR factor, spike-guard history, world size,
                        fp16 loss-scaler state
        optimizer.pt    AdamW state (moments and step counts)
        rng.pt          python / numpy / torch (and CUDA) RNG states of every rank, in rank order
      manifest.json     kind "checkpoint", stats {step, tokens_seen, val_loss}

Rank 0 writes a checkpoint under a temporary name and renames it into place (`atomic_dir`), so a
checkpoint directory that exists is complete.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmforge.artifacts import atomic_dir, write_manifest

if TYPE_CHECKING:
    import torch

STATE_DIR = "trainer_state"
_STEP_DIR = re.compile(r"^step-(\d+)$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs to continue exactly."""

    step: int = 0
    cursor: int = 0  # global window position of the next batch
    tokens_seen: int = 0
    lr_factor: float = 1.0
    spike_history: list[float] = field(default_factory=list)
    spike_events: int = 0
    val_loss: float | None = None
    world_size: int = 1
    grad_scaler: dict[str, Any] | None = None  # fp16 loss scale and its growth tracker (GPU only)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def step_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"step-{step:06d}"


def list_checkpoints(checkpoints: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a manifest), oldest first."""
    if not checkpoints.is_dir():
        return []
    found = []
    for p in checkpoints.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "manifest.json").is_file() and (p / STATE_DIR / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    found = list_checkpoints(checkpoints)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    weights: dict[str, Any] | None,
    optimizer_state: dict[str, Any],
    state: TrainState,
    rng_states: list[dict[str, Any]],
    tokenizer_dir: Path | None,
    recipe: dict[str, Any],
    inputs: list[Path],
) -> None:
    """Write one checkpoint atomically (call on rank 0 only, with the unwrapped model; `weights` is its
    full state dict when the model itself holds only a shard)."""
    import torch

    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (tokenizer_dir / name).is_file():
                    shutil.copy2(tokenizer_dir / name, tmp / name)
        sdir = tmp / STATE_DIR
        sdir.mkdir()
        torch.save(optimizer_state, sdir / "optimizer.pt")
        torch.save(rng_states, sdir / "rng.pt")
        (sdir / "state.json").write_text(json.dumps(asdict(state), indent=2) + "\n")
        write_manifest(
            tmp,
            "checkpoint",
            recipe=recipe,
            inputs=inputs,
            stats={"step": state.step, "tokens_seen": state.tokens_seen, "val_loss": state.val_loss},
        )


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `model.safetensors` into an (unwrapped) model of the same shape, bit for bit."""
    weights = read_weights(path)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight", "embed_out.weight"} if model.config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(
            f"{path}: weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    if model.config.tie_word_embeddings:
        model.tie_weights()


def read_weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def load_trainer_state(path: Path) -> tuple[TrainState, dict[str, Any], list[dict[str, Any]]]:
    import torch

    sdir = path / STATE_DIR
    state = TrainState.from_dict(json.loads((sdir / "state.json").read_text()))
    optimizer_state = torch.load(sdir / "optimizer.pt", weights_only=False)
    rng_states = torch.load(sdir / "rng.pt", weights_only=False)
    return state, optimizer_state, rng_states


def prune_checkpoints(checkpoints: Path, keep_last: int, keep_every: int | None) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints and those whose step is a multiple of
    `keep_every`. Returns what was deleted."""
    found = list_checkpoints(checkpoints)
    keep = {p for _, p in found[-keep_last:]}
    if keep_every:
        keep |= {p for s, p in found if s % keep_every == 0}
    deleted = [p for _, p in found if p not in keep]
    for p in deleted:
        shutil.rmtree(p, ignore_errors=True)
    return deleted

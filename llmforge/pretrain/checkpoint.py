"""Checkpoints: Hugging Face weights beside a `trainer_state/` that makes resuming exact.

    checkpoints/step-000300/
      config.json  model.safetensors  generation_config.json  tokenizer files   (loads with from_pretrained)
      trainer_state/
        state.json      step, data cursor, tokens seen, LR factor, spike-guard history, world size,
                        fp16 loss-scaler state
        optimizer.pt    AdamW state keyed by parameter name (moments and step counts)   [replicated runs]
        shards/         torch.distributed.checkpoint: weights + AdamW state, one file per rank [FSDP runs]
        rng.pt          python / numpy / torch (and CUDA) RNG states of every rank, in rank order
      manifest.json     kind "checkpoint", stats {step, tokens_seen, val_loss}

An FSDP checkpoint carries `model.safetensors` at export points only (checkpointer.py). A checkpoint is
written under a temporary name and renamed into place (`atomic_dir`), so a checkpoint directory that exists
is complete, and never with non-finite weights.

BOS, EOS and PAD agree in config.json, generation_config.json and the tokenizer files (GPT-2's convention:
documents are separated by EOS in training, so EOS is also the BOS a reader such as lm-eval puts before a
text; PAD is the tokenizer's pad token, or EOS when it has none). The KV cache is on for generation.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

STATE_DIR = "trainer_state"
SHARDS_DIR = "shards"  # torch.distributed.checkpoint files of a sharded (FSDP) run
_STEP_DIR = re.compile(r"^step-(\d+)$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class SpecialTokens:
    """The ids and token strings a checkpoint declares for BOS, EOS and PAD."""

    bos_id: int
    eos_id: int
    pad_id: int
    names: dict[str, str] = field(default_factory=dict)  # bos_token/eos_token/pad_token → token string

    @classmethod
    def from_tokenizer(cls, tokenizer_dir: Path | None, eos_id: int) -> SpecialTokens:
        """Read from the tokenizer that made the tokens (`eos_id`: the separator the tokens hold)."""
        if tokenizer_dir is None:
            return cls(eos_id, eos_id, eos_id)
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        declared = _declared_specials(tokenizer_dir)
        eos = tok.id_to_token(eos_id)
        pad = declared.get("pad_token")
        pad_id = tok.token_to_id(pad) if pad else None
        if pad_id is None:
            pad, pad_id = eos, eos_id
        return cls(eos_id, eos_id, pad_id, {"bos_token": eos, "eos_token": eos, "pad_token": pad})

    def apply(self, model: Any) -> None:
        """Declare the ids in the model's config and generation config, with the KV cache on."""
        # An encoder (masked LM) has no generation config.
        for config in (model.config, getattr(model, "generation_config", None)):
            if config is None:
                continue
            config.bos_token_id, config.eos_token_id, config.pad_token_id = (
                self.bos_id,
                self.eos_id,
                self.pad_id,
            )
            config.use_cache = True

    def align_tokenizer_files(self, directory: Path) -> None:
        """Make the copied tokenizer files name the same BOS/EOS/PAD tokens (rewritten only where they differ)."""
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            path = directory / name
            if not path.is_file() or not self.names:
                continue
            data = json.loads(path.read_text())
            if all(_token_text(data.get(key)) == value for key, value in self.names.items()):
                continue
            data.update(self.names)
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _declared_specials(tokenizer_dir: Path) -> dict[str, str]:
    """bos/eos/pad token strings named in special_tokens_map.json, then tokenizer_config.json."""
    names: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = tokenizer_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            for key in ("bos_token", "eos_token", "pad_token"):
                text = _token_text(data.get(key))
                if text:
                    names[key] = text
    return names


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


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


def copy_tokenizer(tokenizer_dir: Path | None, directory: Path, specials: SpecialTokens) -> None:
    """Put the tokenizer files beside the weights, naming the same BOS/EOS/PAD as the config."""
    if tokenizer_dir is None:
        return
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, directory / name)
    specials.align_tokenizer_files(directory)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `model.safetensors` into an (unwrapped) model of the same shape, bit for bit."""
    weights = read_weights(path)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - tied_names(model):
        raise RuntimeError(
            f"{path}: weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    # No tie_weights(): loading copies into the shared tensors, and T5 v1.1's untied head would be re-tied.


def tied_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters shared under several names (a tied head, BERT's decoder bias): a file holds one."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {n for group in names.values() if len(group) > 1 for n in group}


def safetensors_header(file: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names → dtype, shape, data offsets)."""
    with open(file, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(length))


def safetensors_problem(file: Path) -> str | None:
    """Why `file` is not a whole safetensors file (truncated, header damaged), or None; reads the header
    only. The format: an 8-byte little-endian header length, a JSON header, then the tensor bytes."""
    size = file.stat().st_size
    if size < 8:
        return f"truncated ({size} bytes)"
    with open(file, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > size - 8:
            return f"header length {length} exceeds the file's {size} bytes (truncated or corrupted)"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError):
            return "its header is not valid JSON (corrupted)"
    try:
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, IndexError, TypeError):
        return "its header does not describe tensors (corrupted)"
    if 8 + length + end != size:
        return f"holds {size} bytes where its header describes {8 + length + end} (truncated or corrupted)"
    return None


def read_weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to `.damaged-<name>` (a free name), out of `list_checkpoints`' and
    `prune_checkpoints`' sight, so a resumed run neither counts it as the newest nor deletes good ones
    to keep it."""
    aside, n = path.with_name(f".damaged-{path.name}"), 1
    while aside.exists():
        aside, n = path.with_name(f".damaged-{path.name}.{n}"), n + 1
    path.rename(aside)
    return aside


def prune_checkpoints(checkpoints: Path, keep_last: int, keep_every: int | None) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints, those whose step is a multiple of `keep_every`,
    and the newest one with HF weights. Returns what was deleted."""
    found = list_checkpoints(checkpoints)
    keep = {p for _, p in found[-keep_last:]}
    if keep_every:
        keep |= {p for s, p in found if s % keep_every == 0}
    exported = [p for _, p in found if (p / "model.safetensors").is_file()]
    keep |= set(exported[-1:])  # FSDP checkpoints between export points hold shards only
    deleted = [p for _, p in found if p not in keep]
    for p in deleted:
        shutil.rmtree(p, ignore_errors=True)
    return deleted

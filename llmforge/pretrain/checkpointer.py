"""Save, restore and prune the checkpoints of one run, for any strategy (the format is in checkpoint.py).

A replicated model (one process, DDP) is saved whole by rank 0: HF `model.safetensors` plus a full,
name-keyed optimizer state. A sharded one (FSDP) is saved with `torch.distributed.checkpoint`: every rank
writes its own shards of weights and optimizer state into `trainer_state/shards/`, nothing is gathered on
one rank; the HF `model.safetensors` is added at export points only (the `keep_every` checkpoints and the
last one of a run), where the full weights are gathered once.

Either form restores into either strategy at any world size: shards are resharded by
`torch.distributed.checkpoint` on load (2 processes → 1), full state is scattered onto shards.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, stale_temporaries, write_manifest
from llmforge.pretrain.checkpoint import (
    SHARDS_DIR,
    STATE_DIR,
    SpecialTokens,
    TrainState,
    copy_tokenizer,
    load_weights,
    prune_checkpoints,
    read_weights,
    rng_state,
    step_dir,
)
from llmforge.pretrain.strategy import Strategy


class Checkpointer:
    def __init__(
        self,
        directory: Path,
        strategy: Strategy,
        *,
        tokenizer_dir: Path | None,
        specials: SpecialTokens,
        recipe: dict[str, Any],
        inputs: list[Path],
        keep_last: int,
        keep_every: int | None,
    ):
        self.directory, self.strategy = directory, strategy
        self.tokenizer_dir, self.specials = tokenizer_dir, specials
        self.recipe, self.inputs = recipe, inputs
        self.keep_last, self.keep_every = keep_last, keep_every

    def remove_temporaries(self) -> None:
        """Half-written checkpoints of a run killed mid-save (rank 0, at start)."""
        for leftover in stale_temporaries(self.directory):
            shutil.rmtree(leftover, ignore_errors=True)

    def is_export_point(self, step: int, last: bool) -> bool:
        """Whether the checkpoint at `step` carries HF weights (always, when they are whole on rank 0)."""
        return not self.strategy.sharded or last or bool(self.keep_every and step % self.keep_every == 0)

    # ------------------------------------------------------------------------------------------ save

    def save(self, state: TrainState, *, last: bool) -> Path:
        """Write the checkpoint of `state` atomically (a collective: every rank calls it), then prune."""
        from accelerate.utils import gather_object

        strategy = self.strategy
        rngs = gather_object([rng_state()])
        shards = self._state_dicts() if strategy.sharded else None
        export = self.is_export_point(state.step, last)
        weights = self._full_weights() if strategy.sharded and export else None
        # On every rank: with no update applied yet, torch fills an empty AdamW state by a zero-gradient step.
        optimizer = None if strategy.sharded else self._full_optimizer_state()
        path = step_dir(self.directory, state.step)
        if strategy.is_main:
            with atomic_dir(path) as tmp:
                if shards is not None:
                    self._save_shards(shards, self._shared_name(tmp))
                self._write_rank0(tmp, state, rngs, weights, optimizer, export=export)
            prune_checkpoints(self.directory, self.keep_last, self.keep_every)
        elif shards is not None:
            self._save_shards(shards, self._shared_name(None))
        strategy.barrier()
        return path

    def _write_rank0(
        self,
        tmp: Path,
        state: TrainState,
        rngs: list[Any],
        weights: dict | None,
        optimizer: dict | None,
        *,
        export: bool,
    ) -> None:
        import torch

        model = self.strategy.module
        self.specials.apply(model)
        if not self.strategy.sharded:
            model.save_pretrained(tmp, safe_serialization=True)
        elif export:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        else:  # shards only: the config and generation config still say what the model is (and its class,
            # which `save_pretrained` would have written: `llmforge export` builds the model from it)
            model.config.architectures = [_model_class(model).__name__]
            model.config.save_pretrained(tmp)
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(tmp)
        copy_tokenizer(self.tokenizer_dir, tmp, self.specials)
        sdir = tmp / STATE_DIR
        sdir.mkdir(exist_ok=True)
        if optimizer is not None:
            torch.save(optimizer, sdir / "optimizer.pt")
        torch.save(rngs, sdir / "rng.pt")
        (sdir / "state.json").write_text(json.dumps(asdict(state), indent=2) + "\n")
        write_manifest(
            tmp,
            "checkpoint",
            recipe=self.recipe,
            inputs=self.inputs,
            stats={"step": state.step, "tokens_seen": state.tokens_seen, "val_loss": state.val_loss},
        )

    def _shared_name(self, tmp: Path | None) -> Path:
        """Rank 0's temporary checkpoint directory, told to every rank (each writes its shards there)."""
        from accelerate.utils import broadcast_object_list

        name = [str(tmp) if tmp is not None else None]
        broadcast_object_list(name)
        return Path(name[0])

    def _state_dicts(self) -> dict[str, Any]:
        """Model and optimizer state as this rank holds it (shards under FSDP), keyed by parameter name."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        module, optimizer = self.strategy.module, self.strategy.torch_optimizer
        return {"model": get_model_state_dict(module), "optim": get_optimizer_state_dict(module, optimizer)}

    def _save_shards(self, state_dicts: dict[str, Any], tmp: Path) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(state_dicts, checkpoint_id=str(tmp / STATE_DIR / SHARDS_DIR))

    def _full_weights(self) -> dict[str, Any]:
        """The unsharded weights on rank 0's CPU (a collective; other ranks get an empty dict)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(self.strategy.module, options=options)

    def _full_optimizer_state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.strategy.module, self.strategy.torch_optimizer, options=options)

    # --------------------------------------------------------------------------------------- restore

    def restore(self, path: Path) -> tuple[TrainState, list[dict[str, Any]]]:
        """Load weights and optimizer state from `path` into the prepared model (every rank calls it);
        returns the saved train state and the RNG states of every rank that saved it."""
        import torch

        if (path / STATE_DIR / SHARDS_DIR).is_dir():
            self._load_shards(path / STATE_DIR / SHARDS_DIR)
        else:
            self._load_full(path)
        sdir = path / STATE_DIR
        state = TrainState.from_dict(json.loads((sdir / "state.json").read_text()))
        return state, torch.load(sdir / "rng.pt", weights_only=False)

    def _load_shards(self, shards: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        state_dicts = self._state_dicts()  # the layout this run wants; DCP fills it, resharding as needed
        dcp.load(state_dicts, checkpoint_id=str(shards))
        module, optimizer = self.strategy.module, self.strategy.torch_optimizer
        set_model_state_dict(module, state_dicts["model"])
        set_optimizer_state_dict(module, optimizer, state_dicts["optim"])

    def _load_full(self, path: Path) -> None:
        import torch
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        module, optimizer = self.strategy.module, self.strategy.torch_optimizer
        full = StateDictOptions(full_state_dict=True)
        if self.strategy.sharded:
            set_model_state_dict(module, read_weights(path), options=full)
        else:
            load_weights(module, path)
        saved = torch.load(path / STATE_DIR / "optimizer.pt", weights_only=False)
        if all(isinstance(k, int) for k in saved.get("state", {})) and not self.strategy.sharded:
            optimizer.load_state_dict(saved)  # keyed by parameter index (checkpoints before session 4)
        else:
            set_optimizer_state_dict(module, optimizer, saved, options=full)


def _model_class(model: Any) -> type:
    """The transformers class of `model` (FSDP2 swaps in a subclass of its own)."""
    return next(c for c in type(model).__mro__ if c.__module__.startswith("transformers."))

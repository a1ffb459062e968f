"""Loading a model to generate from: a full causal-LM directory (a `checkpoint` artifact, a fine-tune's output,
any local Hugging Face dir) or a peft LoRA adapter directory (its base is loaded, then the adapter on top).

The directory is checked before anything heavy is imported, so a wrong path or an encoder exits 2 at once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, require
from llmforge.artifacts.model_dir import (
    TOKENIZER_FILES,
    has_tokenizer,
    require_causal_lm_dir,
    require_weights_not_shards,
)
from llmforge.console import UserError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass
class Loaded:
    """A model ready to generate: in eval mode on its device, with the ids that end a reply."""

    model: Any
    tokenizer: Any
    stop_ids: list[int]
    has_chat_template: bool
    path: Path
    base: Path | None = None  # the base model dir when `path` is a LoRA adapter
    context: int | None = None  # max_position_embeddings (or n_positions), None when the config gives none
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def load_for_generation(path: str | Path, device: str = "auto") -> Loaded:
    """Load `path` (a causal-LM dir or a LoRA adapter dir) for generation; UserError naming the path and what is
    wrong when it is missing, not a causal LM, or lacks weights or a tokenizer."""
    path = Path(path)
    adapter = check_model_dir(path)
    base = adapter_base(path) if adapter else None
    if base is not None:
        check_model_dir(base, what=f"{path / ADAPTER_CONFIG}: base_model_name_or_path {base}")
    tok_dir = path if has_tokenizer(path) else base
    if tok_dir is None or not has_tokenizer(tok_dir):
        where = f"{path} (nor its base {base})" if base else str(path)
        raise UserError(f"{where}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])})")
    return _load(path, base, tok_dir, pick_device(device))


def check_model_dir(path: Path, what: str | None = None) -> bool:
    """Exit 2 unless `path` is a generation-capable model dir; True when it is a LoRA adapter."""
    what = what or str(path)
    require_weights_not_shards(path, what)
    if (path / MANIFEST).is_file():
        require(path, "checkpoint")
    if (path / ADAPTER_CONFIG).is_file():
        if not any((path / f).is_file() for f in ADAPTER_WEIGHTS):
            raise UserError(f"{what}: LoRA adapter without weights ({' or '.join(ADAPTER_WEIGHTS)})")
        return True
    require_causal_lm_dir(path, needs="generation", tokenizer=False, where=what)
    return False


def adapter_base(adapter: Path) -> Path:
    """The base model dir a LoRA adapter names (an absolute local path in llmforge's adapters)."""
    config_file = adapter / ADAPTER_CONFIG
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{config_file}: not a readable adapter config ({e})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise UserError(f"{config_file}: no base_model_name_or_path")
    if not Path(base).is_dir():
        raise UserError(
            f"{config_file}: base_model_name_or_path {base!r} is not a local model dir (the base must be where "
            "it was when the adapter was trained)"
        )
    return Path(base)


def pick_device(device: str | None) -> str:
    """The torch device to load on: "auto" (or None / "") is cuda when a GPU is visible, else cpu; a cuda device
    without a visible GPU exits 2. Shared by `generate`/`chat` and `eval`."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible")
    return device


def _load(path: Path, base: Path | None, tok_dir: Path, device: str) -> Loaded:
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"{tok_dir}: tokenizer does not load ({e})") from None
    dtype = torch.float32 if device == "cpu" else "auto"  # bf16 matmuls on a CPU are slow
    weights_dir = base or path
    try:
        model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=dtype)
        if base is not None:
            from peft import PeftModel

            if model.get_input_embeddings().weight.shape[0] < len(tokenizer):  # role tokens added in tuning
                model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            model = PeftModel.from_pretrained(model, path)
    except SafetensorError as e:
        raise UserError(f"{weights_dir}: damaged safetensors file ({e})") from None
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"{path}: model does not load ({e})") from None
    model = model.to(device).eval()
    config = model.config
    context = next(
        (
            getattr(config, k)
            for k in ("max_position_embeddings", "n_positions")
            if isinstance(getattr(config, k, None), int)
        ),
        None,
    )
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        stop_ids=stop_ids(model, tokenizer),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        path=path,
        base=base,
        context=context,
    )


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a reply: generation_config's eos_token_id (an int or a list), the tokenizer's EOS and, for
    a built-in chat template, its end-of-turn token."""
    from llmforge.generation.chat_template import BUILTIN, stop_token_ids

    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(i, int) and i not in ids:
            ids.append(i)
    template = next(
        (t for t in BUILTIN.values() if t.source == getattr(tokenizer, "chat_template", None)), None
    )
    for i in stop_token_ids(tokenizer, template):
        if i not in ids:
            ids.append(i)
    return ids

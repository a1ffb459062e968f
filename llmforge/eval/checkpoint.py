"""Finding and loading the model under evaluation: a `checkpoint` artifact or any local Hugging Face model dir.

The model kind, the causal-LM rule, the context length and the safetensors check are the shared ones
(artifacts/model_dir.py); the device rule is the generation layer's (generation/loading.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, require
from llmforge.artifacts import model_dir as hf_dir
from llmforge.artifacts.model_dir import check_weights, model_config, require_weights_not_shards
from llmforge.artifacts.model_dir import safetensors_files as weight_files
from llmforge.console import UserError
from llmforge.generation.loading import pick_device

KIND_NAMES = {
    "causal": "a causal LM",
    "masked": "a masked LM",
    "seq2seq": "an encoder-decoder (seq2seq) model",
}


def resolve(path: str | Path) -> Path:
    """The model directory, after checking it is a checkpoint artifact or an HF directory with config.json, and
    that its safetensors files are whole."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such model directory")
    require_weights_not_shards(path)
    if (path / MANIFEST).is_file():
        require(path, "checkpoint")
    elif not (path / "config.json").is_file():
        raise UserError(
            f"{path}: not a checkpoint (no manifest.json) nor a Hugging Face model dir (no config.json)"
        )
    check_weights(path)
    return path


def context_length(path: Path) -> int | None:
    """The model's context in tokens, from config.json (the keys lm-eval reads too), or None if it gives none."""
    return hf_dir.context_length(model_config(path))


def model_kind(path: str | Path) -> str:
    """What the model dir holds (`artifacts.model_dir.model_kind`): "causal", "masked" or "seq2seq"; exit 2
    for a model with another head (a classifier, a reward model), which eval has no score for."""
    config = model_config(Path(path))
    kind = hf_dir.model_kind(config)
    if kind not in KIND_NAMES:
        raise UserError(
            f"{path}: config.json describes {hf_dir.describe(config)}; eval scores causal LMs, masked LMs and "
            "encoder-decoders"
        )
    return kind


def require_causal(path: str | Path, command: str) -> Path:
    """The resolved model dir, or exit 2 when it is not a causal LM (`command` works on causal LMs only; the
    rule is `artifacts.model_dir.model_kind`, the one `generate` and `finetune sft` apply)."""
    path = resolve(path)
    config = model_config(path)
    kind = hf_dir.model_kind(config)
    if kind == "causal":
        return path
    if kind in KIND_NAMES:
        described, hint = KIND_NAMES[kind], "; `llmforge eval perplexity` scores it"
    else:
        described, hint = hf_dir.describe(config), ""
    raise UserError(f"{path}: {command} needs a causal LM, but config.json describes {described}{hint}")


def _auto_class(kind: str) -> Any:
    import transformers

    names = {
        "causal": "AutoModelForCausalLM",
        "masked": "AutoModelForMaskedLM",
        "seq2seq": "AutoModelForSeq2SeqLM",
    }
    return getattr(transformers, names[kind])


def load(path: str | Path, device: str | None = None, kind: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer), or exit 2 naming what did not load. The model class
    follows `kind` ("causal", "masked", "seq2seq"; default: `model_kind` of the checkpoint)."""
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    path = resolve(path)
    auto_class = _auto_class(kind or model_kind(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: tokenizer does not load ({e})") from None
    try:
        model = auto_class.from_pretrained(path)
    except SafetensorError as e:
        names = ", ".join(map(str, weight_files(path))) or str(path)
        raise UserError(f"{names}: damaged safetensors file ({e})") from None
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"{path}: model does not load ({e})") from None
    return model.to(pick_device(device)).eval(), tokenizer

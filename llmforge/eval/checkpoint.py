"""Finding and loading the model under evaluation: a `checkpoint` artifact or any local Hugging Face model dir."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, require
from llmforge.artifacts.model_dir import ENCODER_TYPES, model_config
from llmforge.console import UserError


def resolve(path: str | Path) -> Path:
    """The model directory, after checking it is a checkpoint artifact or an HF directory with config.json."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such model directory")
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
    config = model_config(path)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a model dir: model.safetensors, or the shards its index names."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise UserError(f"{index}: not a safetensors index ({e})") from None
        return [path / name for name in names]
    single = path / "model.safetensors"
    return [single] if single.is_file() else []


def check_safetensors(f: Path) -> None:
    """Exit 2 naming `f` when its header is unreadable or its tensors do not fit the file (a truncated copy).

    Layout (the safetensors format): 8 bytes little-endian header length N, N bytes of JSON header whose
    tensors give `data_offsets` into the data that follows; the last offset is the data's size."""
    if not f.is_file():
        raise UserError(f"{f}: weights file missing")
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise UserError(f"{f}: damaged safetensors file ({size} bytes, shorter than its header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise UserError(
                f"{f}: damaged safetensors file (header of {n} bytes in a {size}-byte file; truncated or corrupted)"
            )
        try:
            header = json.loads(fh.read(n))
            ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError):
            raise UserError(f"{f}: damaged safetensors file (its header is not valid JSON)") from None
    data = size - 8 - n
    if max(ends, default=0) != data:
        raise UserError(
            f"{f}: damaged safetensors file (tensors need {max(ends, default=0)} bytes of data, the file has "
            f"{data}; truncated or corrupted)"
        )


def check_weights(path: Path) -> None:
    for f in weight_files(path):
        check_safetensors(f)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


# Encoder-only model types trained with a masked-LM head, for configs that name no `architectures`.
KIND_NAMES = {
    "causal": "a causal LM",
    "masked": "a masked LM",
    "seq2seq": "an encoder-decoder (seq2seq) model",
}


def model_kind(path: str | Path) -> str:
    """What the model dir holds, from its config.json: "seq2seq" when `is_encoder_decoder` is true, "masked"
    when an architecture is named `...ForMaskedLM` (or none is named and model_type is BERT-family), else
    "causal"."""
    config = model_config(Path(path))
    if config.get("is_encoder_decoder") is True:
        return "seq2seq"
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        architectures = []
    if any(str(a).endswith("ForMaskedLM") for a in architectures):
        return "masked"
    if not architectures and config.get("model_type") in ENCODER_TYPES:
        return "masked"
    return "causal"


def require_causal(path: str | Path, command: str) -> Path:
    """The resolved model dir, or exit 2 when it is not a causal LM (`command` works on causal LMs only)."""
    path = resolve(path)
    kind = model_kind(path)
    if kind != "causal":
        raise UserError(
            f"{path}: {command} needs a causal LM, but config.json describes {KIND_NAMES[kind]}; "
            "`llmforge eval perplexity` scores it"
        )
    return path


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

"""A Hugging Face model directory as the stages read it before loading anything: its config.json, what kind of
model it describes, whether weights and a tokenizer are there, and whether a safetensors file is whole.

Read without transformers or torch, so a bad directory is refused (exit 2) before any work starts. One rule set
for every stage: `finetune sft`, `generate`/`chat`, `finetune merge` and `eval` all ask `model_kind`."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Literal

from llmforge.console import UserError

# Encoder-only model types (a masked-LM or classification head on a bidirectional encoder).
ENCODER_TYPES = (
    "bert", "roberta", "xlm-roberta", "distilbert", "modernbert", "electra", "albert", "deberta",
    "deberta-v2", "camembert", "mpnet", "ernie", "nomic_bert",
)  # fmt: skip
# Weights as transformers saves them: one file, or shards named by an index (model-00001-of-00002.safetensors).
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")  # the keys lm-eval reads too

Kind = Literal["causal", "masked", "seq2seq", "other"]


def model_config(path: str | Path) -> dict[str, Any]:
    """config.json of the model dir at `path`; UserError when it is missing or not a JSON object."""
    f = Path(path) / "config.json"
    if not f.is_file():
        raise UserError(f"{path}: not a Hugging Face model dir (no config.json)")
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{f}: not a readable JSON config ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{f}: expected a JSON object")
    return config


def architectures(config: dict[str, Any]) -> list[str]:
    names = config.get("architectures")
    return [str(a) for a in names] if isinstance(names, list) else []


def model_kind(config: dict[str, Any]) -> Kind:
    """What a config.json describes: "seq2seq" when `is_encoder_decoder` is true; "causal" when an architecture
    has a causal-LM head (`...ForCausalLM`, `...LMHeadModel`); "masked" when one is `...ForMaskedLM`, or none is
    named and the model type is an encoder; "other" when architectures are named but none of those (a
    classifier, a reward model, a bare encoder); otherwise (a decoder type, no architectures) "causal"."""
    if config.get("is_encoder_decoder") is True:
        return "seq2seq"
    names = architectures(config)
    if any(a.endswith(CAUSAL_HEADS) for a in names):
        return "causal"
    if any(a.endswith("ForMaskedLM") for a in names):
        return "masked"
    if names:
        return "other"
    return "masked" if config.get("model_type") in ENCODER_TYPES else "causal"


def describe(config: dict[str, Any]) -> str:
    """What a non-causal config describes, for an error message: "an encoder-decoder (t5)", "an encoder-only
    model (bert)", "a LlamaForSequenceClassification"."""
    model_type = config.get("model_type")
    kind = model_kind(config)
    if kind == "seq2seq":
        return f"an encoder-decoder ({model_type})"
    if kind == "masked":
        return f"an encoder-only model ({model_type})"
    if kind == "other":
        return f"a {', '.join(architectures(config))}"
    return f"a causal LM ({model_type})"


def context_length(config: dict[str, Any]) -> int | None:
    """The model's context in tokens (positions), or None when config.json gives none."""
    for key in CONTEXT_KEYS:
        if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
            return config[key]
    return None


# The DCP index of an FSDP checkpoint's shards (pretrain/checkpoint.py: STATE_DIR/SHARDS_DIR/.metadata).
SHARDS_METADATA = "trainer_state/shards/.metadata"


def require_weights_not_shards(path: Path, where: str | None = None) -> None:
    """UserError for a checkpoint that holds FSDP shards only, telling how to write its weights."""
    if (path / SHARDS_METADATA).is_file() and not has_weights(path):
        raise UserError(
            f"{where or path}: an FSDP checkpoint that holds shards only; write its weights with "
            f"`llmforge export {path} --out DIR` and use DIR"
        )


def has_weights(path: Path) -> bool:
    return any(any(path.glob(p)) for p in WEIGHT_PATTERNS)


def has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in TOKENIZER_FILES)


class NotCausalLM(UserError):
    """A model dir whose config.json describes no causal LM; `kind`, `described` (see `describe`) and
    `model_type` let a caller word the refusal its own way."""

    def __init__(self, message: str, kind: Kind, described: str, model_type: Any):
        super().__init__(message)
        self.kind, self.described, self.model_type = kind, described, model_type


def require_causal_config(config: dict[str, Any], where: str, needs: str = "generation") -> dict[str, Any]:
    """`config`, or NotCausalLM (exit 2) "<where>: <needs> needs a causal LM (decoder-only), but config.json
    describes …" when `model_kind` is not "causal"."""
    kind = model_kind(config)
    if kind == "causal":
        return config
    described = describe(config)
    raise NotCausalLM(
        f"{where}: {needs} needs a causal LM (decoder-only), but config.json describes {described}",
        kind,
        described,
        config.get("model_type"),
    )


def require_causal_lm_dir(
    path: str | Path,
    key: str | None = None,
    *,
    needs: str = "generation",
    tokenizer: bool = True,
    where: str | None = None,
) -> dict[str, Any]:
    """config.json of a causal-LM dir with weights (and, with `tokenizer`, tokenizer files); UserError otherwise,
    each message starting "<key>: <path>" (just "<path>" without a key; `where` replaces both):
    - no such model directory · not a Hugging Face model dir (no config.json)
    - NotCausalLM: <needs> needs a causal LM (decoder-only), but config.json describes …
    - no model weights (model.safetensors or pytorch_model.bin) · no tokenizer files (…)"""
    path = Path(path)
    where = where or (f"{key}: {path}" if key else str(path))
    if not path.is_dir():
        raise UserError(
            f"{where}: no such model directory (expected a checkpoint or a Hugging Face causal-LM dir)"
        )
    try:
        config = model_config(path)
    except UserError as e:
        raise UserError(f"{key}: {e}" if key else str(e)) from None
    require_causal_config(config, where, needs)
    if not has_weights(path):
        require_weights_not_shards(path, where)
        raise UserError(f"{where}: no model weights (model.safetensors or pytorch_model.bin)")
    if tokenizer and not has_tokenizer(path):
        raise UserError(
            f"{where}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}); save the tokenizer there"
        )
    return config


# ------------------------------------------------------------------------------------------- safetensors


def safetensors_files(path: Path) -> list[Path]:
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


def safetensors_problem(f: Path) -> str | None:
    """Why the file `f` is not a whole safetensors file (truncated, header damaged), or None. Reads the header
    only. Layout (the safetensors format): 8 bytes little-endian header length N, N bytes of JSON header whose
    tensors give `data_offsets` into the data that follows; the last offset is the data's size."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than its header"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"header of {n} bytes in a {size}-byte file; truncated or corrupted"
        try:
            header = json.loads(fh.read(n))
            ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError):
            return "its header is not valid JSON"
    data = size - 8 - n
    if max(ends, default=0) != data:
        return (
            f"tensors need {max(ends, default=0)} bytes of data, the file has {data}; truncated or corrupted"
        )
    return None


def check_safetensors(f: Path) -> None:
    """Exit 2 "<f>: damaged safetensors file (why)" unless `f` is a whole safetensors file."""
    if not f.is_file():
        raise UserError(f"{f}: weights file missing")
    problem = safetensors_problem(f)
    if problem:
        raise UserError(f"{f}: damaged safetensors file ({problem})")


def check_weights(path: Path) -> None:
    """Exit 2 naming the first damaged safetensors file of the model dir at `path`."""
    for f in safetensors_files(path):
        check_safetensors(f)

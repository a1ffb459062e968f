"""Full fine-tuning or a low-rank adapter: the peft configuration, its checks against the model, and what each
choice trains and costs.

- LoRA (Hu et al. 2021): W + (α/r)·B·A on the target linear layers, B initialised to zero so training starts
  from the base model; only A and B train. rsLoRA (Kalajdzievski 2023) scales by α/√r instead; DoRA (Liu et al.
  2024) also learns the magnitude of each weight column.
- QLoRA (Dettmers et al. 2023): the frozen base weights stored in 4-bit NormalFloat (double quantisation of the
  scales), LoRA on top in 16-bit. bitsandbytes' kernels need a CUDA GPU.
- Role tokens a chat template adds are new rows of the embedding. Under LoRA they must train, or every new
  token keeps the same mean vector: the model could not tell `<|im_start|>` from `<|im_end|>` on input, and
  their logits would be equal, so it could never choose to end a turn. The embedding (and an untied output
  head) is then a peft `modules_to_save` copy, tied again to the head when the model ties them; it is saved
  with the adapter and counted in the trainable parameters the plan shows. (peft's `trainable_token_indices`
  would train the new rows alone, but trl's fused LM head reads `lm_head.weight` directly and bypasses it.)
"""

from __future__ import annotations

from typing import Any

from llmforge.console import UserError
from llmforge.finetune.config import InstructConfig, LoraConfig


def check_qlora_available() -> None:
    """QLoRA needs bitsandbytes and a CUDA GPU; refuse with what is missing."""
    import importlib.util

    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package is not installed (pip install bitsandbytes)")
    if missing:
        raise UserError(
            f"finetune.method = 'qlora' needs a CUDA GPU and bitsandbytes: {'; '.join(missing)}; use "
            "method = 'lora' (16/32-bit base weights) on this machine"
        )


def linear_module_names(model: Any) -> list[str]:
    """The distinct leaf names of the model's linear layers (what LoRA can target), output head excluded."""
    import torch

    linear_types: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

        linear_types += (Conv1D,)
    except ImportError:  # pragma: no cover
        pass
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, linear_types) and module is not head
    }
    return sorted(names)


def check_targets(model: Any, lora: LoraConfig) -> None:
    if lora.target_modules == "all-linear":
        return
    available = linear_module_names(model)
    missing = [t for t in lora.target_modules if t not in available]
    if missing:
        raise UserError(
            f"finetune.lora.target_modules: {', '.join(missing)} not in the model; its linear layers are "
            f'{", ".join(available)} (or use "all-linear")'
        )


def embedding_modules(model: Any) -> tuple[list[str], bool]:
    """(leaf names of the input embedding and, when untied, the output head; whether they are tied)."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embedding.weight
    names = [
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if m is embedding or (m is head and not tied)
    ]
    return names, tied


def peft_config(lora: LoraConfig, model: Any, tokens_added: bool) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    save, tied = embedding_modules(model) if tokens_added else ([], False)
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        modules_to_save=save or None,
        ensure_weight_tying=tied,
        bias="none",
        task_type="CAUSAL_LM",
    )


def quantization_config(lora: LoraConfig) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if lora.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters, tied weights once. A trained copy of a module (peft's modules_to_save)
    counts as trainable but not again in the total, which is the base model plus the adapters."""
    seen: set[int] = set()
    trainable = total = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)  # 4-bit storage packs 2 per byte
        total += 0 if "modules_to_save" in name else n
        trainable += n if p.requires_grad else 0
    return trainable, total


def lora_input_features(model: Any) -> int:
    """Sum of the input widths of the layers carrying a LoRA adapter (0 for a plain model)."""
    return sum(m.in_features for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "in_features"))


def planned_memory(
    cfg: InstructConfig, model_config: Any, trainable: int, total: int, model: Any, half: bool
) -> dict:
    """Bytes the choice should need, before anything runs: frozen and trained weights, gradients and AdamW's
    two fp32 moments for the trained parameters only (the PEFT saving), and activations per micro-batch.

    - Activations per layer follow Korthikanti et al. 2022 (Eq. 2, 16-bit): s·b·h·(34 + 5·a·s/h) bytes, doubled
      for fp32; gradient checkpointing keeps only each layer's input (2·s·b·h). LoRA keeps them all (gradients
      still flow through the frozen layers) and adds, with dropout, a copy of each adapted layer's input and
      its mask (s·b·in·(4 + 1) bytes).
    - The logits: s·b·V in fp32, about three copies (logits, log-softmax, gradient).
    An estimate: allocator slack, the tokenizer and framework buffers are not counted."""
    s, b = cfg.max_len, cfg.batch_size
    if cfg.method == "qlora":
        frozen_bytes = 0.5 if cfg.lora.bits == 4 else 1.0
    else:
        frozen_bytes = 2.0 if cfg.method == "lora" and half else 4.0
    h = int(getattr(model_config, "hidden_size", 0) or getattr(model_config, "n_embd", 0) or 0)
    a = int(getattr(model_config, "num_attention_heads", 0) or getattr(model_config, "n_head", 0) or 1)
    layers = int(getattr(model_config, "num_hidden_layers", 0) or getattr(model_config, "n_layer", 0) or 0)
    vocab = int(getattr(model_config, "vocab_size", 0) or 0)
    per_layer = 2 * s * b * h if cfg.gradient_checkpointing else s * b * h * (34 + 5 * a * s / max(h, 1))
    activations = per_layer * layers * (1 if half else 2)
    if cfg.method != "full" and cfg.lora.dropout > 0:
        activations += s * b * lora_input_features(model) * 5
    logits = 3 * s * b * vocab * 4
    parts = {
        "weights_frozen": (total - trainable) * frozen_bytes,
        "weights_trained": trainable * 4,
        "gradients": trainable * 4,
        "optimizer_states": trainable * 8,
        "activations": activations,
        "logits": logits,
    }
    return {**parts, "total": sum(parts.values())}

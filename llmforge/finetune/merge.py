"""`finetune merge ADAPTER`: fold a LoRA adapter into its base weights, W ← W + (α/r)·B·A, and write a full
checkpoint that loads without peft.

The merge is checked, not assumed: the base + adapter and the merged model score one probe text, and the
largest absolute logit difference is recorded in the manifest (fp32 sums in another order differ by ~1e-6
relative; anything above MERGE_TOLERANCE is an error, not a checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, require, write_manifest
from llmforge.console import UserError, info, quiet_hf_libraries

ADAPTER_CONFIG = "adapter_config.json"
MERGE_TOLERANCE = 1e-3  # absolute, on logits of order 1–10 in fp32
PROBE = "def main():\n    return 0\n"


def require_adapter(adapter: Path) -> None:
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise UserError(f"{adapter}: not a LoRA adapter (no {ADAPTER_CONFIG}); it is a full model already")


def load_adapter_model(adapter: Path) -> tuple[Any, Any]:
    """(base + adapter as a PeftModel in eval mode on the CPU, the adapter's tokenizer); UserError when
    `adapter` is not a LoRA adapter or its base is not where it was trained."""
    from llmforge.generation.loading import load_for_generation

    require_adapter(adapter)
    loaded = load_for_generation(adapter, device="cpu")
    return loaded.model, loaded.tokenizer


def merge_adapter(adapter: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the merged full model to `out` (a `checkpoint` artifact); returns its stats."""
    import torch
    from transformers import GenerationConfig

    adapter, out = Path(adapter), Path(out)
    manifest = require(adapter, "checkpoint")
    require_adapter(adapter)
    ensure_writable(out)
    quiet_hf_libraries()
    model, tokenizer = load_adapter_model(adapter)
    probe = torch.tensor([tokenizer(PROBE)["input_ids"]])
    with torch.no_grad():
        before = model(probe).logits
        merged = model.merge_and_unload()
        after = merged(probe).logits
    diff = float((before - after).abs().max())
    if diff > MERGE_TOLERANCE:
        raise RuntimeError(f"merged logits differ from base + adapter by {diff:.2e} (> {MERGE_TOLERANCE})")
    info(f"merged: largest logit difference from base + adapter {diff:.2e}")
    stats = {
        **{k: v for k, v in manifest.get("stats", {}).items() if k != "variant"},
        "variant": "merged",
        "merge_max_abs_logit_diff": diff,
        "params": sum(p.numel() for p in merged.parameters()),
    }
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (adapter / "generation_config.json").is_file():
            GenerationConfig.from_pretrained(adapter).save_pretrained(tmp)
        write_manifest(tmp, "checkpoint", recipe=manifest.get("recipe"), inputs=[adapter], stats=stats)
    return {
        "checkpoint": str(out),
        "adapter": str(adapter),
        "merge_max_abs_logit_diff": diff,
        "params": stats["params"],
    }

"""Transformer shapes: exact parameter counts, training FLOPs per token, and shapes proposed for a target size.

The counts and formulas are the architecture registry's (`llmforge.archs`, one module per family): they follow
the Hugging Face implementations term by term, e.g. GPT-2 small (12 × 768, vocab 50,257, 1,024 positions, tied)
124,439,808 parameters, LLaMA-7B (32 × 4,096, FFN 11,008, vocab 32,000, untied) 6,738,415,616, Pythia-160M
(GPT-NeoX 12 × 768, vocab 50,304, untied) 162,322,944.

Training FLOPs per token = 6·N_matmul + 12·L·S·d_attn (Chowdhery et al. 2022, "PaLM", Appendix B), where N_matmul
counts every weight that takes part in a matrix product (all parameters except the input token and position
embeddings; the output projection counts even when tied) and the second term is attention's QKᵀ and AV products.
Encoder-decoders (t5) count per encoder input token (see llmforge/archs/t5.py).
"""

from __future__ import annotations

import math
from dataclasses import replace

from llmforge.archs import ARCHS as ARCHS  # re-exported: the CLI's --arch choices
from llmforge.archs import FAMILIES, Shape, family
from llmforge.console import UserError

DEFAULT_VOCAB = {name: fam.default_vocab for name, fam in FAMILIES.items()}
DEFAULT_TIED = {name: fam.default_tied for name, fam in FAMILIES.items()}
# Head counts that 8-way tensor parallelism cannot split evenly (Shoeybi et al. 2019, §3) rank as if their aspect
# ratio were ~35% further from the family's.
TP_PENALTY = 0.3
ASPECT_RANGE = (16, 512)  # d_model / n_layers considered at all (Kaplan et al. 2020 Fig. 5 spans ~10–400)


def default_ffn(arch: str, d_model: int) -> int:
    return family(arch).default_ffn(d_model)


def param_counts(s: Shape) -> dict[str, int]:
    """Parameters by part; `total` matches `sum(p.numel() for p in model.parameters())` of the HF model."""
    return family(s.arch).param_counts(s)


def flops_per_token(s: Shape) -> dict[str, float]:
    """Training (forward + backward) FLOPs per token, PaLM Appendix B, split into dense and attention parts."""
    return family(s.arch).flops_per_token(s)


def layer_params(s: Shape) -> int:
    """Parameters one more layer adds (t5: one encoder and, unless fixed, one decoder block)."""
    return param_counts(replace(s, n_layers=s.n_layers + 1))["total"] - param_counts(s)["total"]


def describe(s: Shape) -> dict:
    counts, flops = param_counts(s), flops_per_token(s)
    return {
        "arch": s.arch,
        "n_layers": s.n_layers,
        "d_model": s.d_model,
        "n_heads": s.n_heads,
        "n_kv_heads": s.kv_heads,
        "head_dim": s.head_dim,
        "ffn_dim": s.ffn,
        "vocab_size": s.vocab_size,
        "seq_len": s.seq_len,
        "context": s.positions,
        "tied": s.tied,
        "objective": family(s.arch).objective,
        **(
            {"n_decoder_layers": s.decoder_layers, "target_len": s.targets}
            if family(s.arch).encoder_decoder
            else {}
        ),
        "params": counts["total"],
        "param_counts": counts,
        "flops_per_token": flops["train"],
        "flops": flops,
        "aspect_ratio": s.d_model / s.n_layers,
    }


def preferred_aspect(target_params: float) -> float:
    """d_model / n_layers the well-known families use: ~64 below 1B (GPT-2 small, GPT-3 125M/760M), ~128 above
    (GPT-3 6.7B–175B, LLaMA 7B/13B). Kaplan et al. 2020 (§3.1, Figure 5) found loss within a few percent over
    aspect ratios of roughly 20–200, so this is a convention, not a sharp optimum."""
    return 64.0 if target_params < 1e9 else 128.0


def propose_shapes(
    target_params: float,
    *,
    arch: str = "llama",
    vocab_size: int | None = None,
    seq_len: int = 2048,
    tied: bool | None = None,
    decoder_layers: int | None = None,
    count: int = 5,
    tolerance: float = 0.1,
) -> list[Shape]:
    """Up to `count` shapes within `tolerance` of the target size, closest to the family aspect ratio first.

    Widths are multiples of the head size (64 up to d = 1,024, then 128 as in GPT-3 ≥ 1.3B and LLaMA); for each
    width the depth that lands nearest the target is taken; aspect ratios outside ASPECT_RANGE are left out.
    """
    base = Shape(
        arch,
        1,
        64,
        1,
        vocab_size or DEFAULT_VOCAB[arch],
        seq_len,
        DEFAULT_TIED[arch] if tied is None else tied,
        n_decoder_layers=decoder_layers,
    )
    pref = preferred_aspect(target_params)
    found: list[tuple[float, Shape]] = []
    for d in range(64, 32768 + 1, 64):
        head_dim = 64 if d <= 1024 else 128
        if d % head_dim:
            continue
        one = replace(base, d_model=d, n_heads=d // head_dim, n_layers=1)
        step = layer_params(one)
        layers = round((target_params - param_counts(one)["total"] + step) / step)
        if layers < 1 or not ASPECT_RANGE[0] <= d / layers <= ASPECT_RANGE[1]:
            continue
        shape = replace(one, n_layers=layers)
        error = abs(param_counts(shape)["total"] / target_params - 1)
        if error <= tolerance:
            split_penalty = TP_PENALTY if shape.n_heads >= 8 and shape.n_heads % 8 else 0.0
            found.append((abs(math.log(d / layers / pref)) + error + split_penalty, shape))
    found.sort(key=lambda item: item[0])
    if not found:
        embed = base.vocab_size * 64 * (1 if base.tied else 2)
        raise UserError(
            f"--params {target_params:.3g}: no {arch} shape within {tolerance:.0%} of it with vocab "
            f"{base.vocab_size} (the smallest embedding alone takes {embed:,} parameters); lower --vocab or raise --params"
        )
    return [shape for _, shape in found[:count]]


def model_table(s: Shape) -> dict:
    """`s` as a recipe's `[model]` table (keys of `llmforge.pretrain`'s ModelConfig). FFN width, tying and the
    context (`max_seq_len`: the position table, at least the sequence) are written out: the pretrain stage's own
    defaults for them differ from the families' here."""
    table = {
        "arch": s.arch,
        "n_layers": s.n_layers,
        "d_model": s.d_model,
        "n_heads": s.n_heads,
        "ffn_dim": s.ffn,
        "vocab_size": s.vocab_size,
        "max_seq_len": s.positions,
        "tie_embeddings": s.tied,
    }
    if s.kv_heads != s.n_heads:
        table["n_kv_heads"] = s.kv_heads
    if s.decoder_layers != s.n_layers:
        table["n_decoder_layers"] = s.decoder_layers
    return table


def model_toml(s: Shape) -> str:
    """A `[model]` TOML table for `s`, headed by a comment with its exact parameter count."""
    import tomli_w

    header = f"# {s.arch} {s.n_layers}×{s.d_model}: {param_counts(s)['total']:,} parameters (llmforge plan shape)\n"
    return header + tomli_w.dumps({"model": model_table(s)})

"""Transformer shapes: exact parameter counts, training FLOPs per token, and shapes proposed for a target size.

Parameter counts follow the Hugging Face implementations term by term (GPT2LMHeadModel, LlamaForCausalLM,
GPTNeoXForCausalLM): GPT-2 small (12 × 768, vocab 50,257, 1,024 positions, tied) has 124,439,808 parameters,
LLaMA-7B (32 × 4,096, FFN 11,008, vocab 32,000, untied) 6,738,415,616, Pythia-160M (GPT-NeoX 12 × 768, vocab
50,304, untied) 162,322,944.

Training FLOPs per token = 6·N_matmul + 12·L·S·d_attn (Chowdhery et al. 2022, "PaLM", Appendix B), where N_matmul
counts every weight that takes part in a matrix product (all parameters except the input token and position
embeddings; the output projection counts even when tied) and the second term is attention's QKᵀ and AV products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from llmforge.console import UserError

ARCHS = ("gpt2", "llama", "gpt-neox")
DEFAULT_VOCAB = {"gpt2": 50257, "llama": 32000, "gpt-neox": 50304}
DEFAULT_TIED = {"gpt2": True, "llama": False, "gpt-neox": False}
# Head counts that 8-way tensor parallelism cannot split evenly (Shoeybi et al. 2019, §3) rank as if their aspect
# ratio were ~35% further from the family's.
TP_PENALTY = 0.3
ASPECT_RANGE = (16, 512)  # d_model / n_layers considered at all (Kaplan et al. 2020 Fig. 5 spans ~10–400)


@dataclass(frozen=True)
class Shape:
    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int
    seq_len: int
    tied: bool
    n_kv_heads: int | None = None
    ffn_dim: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"arch {self.arch!r}: unknown architecture; choose one of {', '.join(ARCHS)}")
        for name in ("n_layers", "d_model", "n_heads", "vocab_size", "seq_len"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} = {getattr(self, name)}: expected a positive integer")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model = {self.d_model}: not divisible by n_heads = {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise UserError(f"n_heads = {self.n_heads}: not divisible by n_kv_heads = {self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        return self.ffn_dim or default_ffn(self.arch, self.d_model)


def default_ffn(arch: str, d_model: int) -> int:
    """4·d for GPT-2/NeoX; LLaMA's SwiGLU width 2/3·4·d rounded up to a multiple of 256 (Touvron et al. 2023, §2.2;
    11,008 for d = 4,096)."""
    if arch == "llama":
        return 256 * math.ceil(int(8 * d_model / 3) / 256)
    return 4 * d_model


def layer_params(s: Shape) -> int:
    d, kv_dim, f = s.d_model, s.kv_heads * s.head_dim, s.ffn
    if s.arch == "llama":  # q, k, v, o without bias; gate, up, down; two RMSNorm weights
        return d * (d + 2 * kv_dim) + d * d + 3 * d * f + 2 * d
    # GPT-2 / GPT-NeoX: fused qkv and output projection with biases, 2-matrix MLP with biases, two LayerNorms
    return (d * (d + 2 * kv_dim) + d + 2 * kv_dim) + (d * d + d) + (2 * d * f + f + d) + 4 * d


def param_counts(s: Shape) -> dict[str, int]:
    """Parameters by part; `total` matches `sum(p.numel() for p in model.parameters())` of the HF model."""
    token_embedding = s.vocab_size * s.d_model
    position_embedding = s.seq_len * s.d_model if s.arch == "gpt2" else 0
    final_norm = s.d_model if s.arch == "llama" else 2 * s.d_model
    lm_head = 0 if s.tied else s.vocab_size * s.d_model
    layers = s.n_layers * layer_params(s)
    total = token_embedding + position_embedding + layers + final_norm + lm_head
    return {
        "total": total,
        "non_embedding": layers + final_norm,
        "token_embedding": token_embedding,
        "position_embedding": position_embedding,
        "layers": layers,
        "per_layer": layer_params(s),
        "lm_head": lm_head,
        "final_norm": final_norm,
    }


def flops_per_token(s: Shape) -> dict[str, float]:
    """Training (forward + backward) FLOPs per token, PaLM Appendix B, split into dense and attention parts."""
    counts = param_counts(s)
    matmul_params = counts["non_embedding"] + s.vocab_size * s.d_model
    dense = 6 * matmul_params
    attention = 12 * s.n_layers * s.seq_len * s.d_model
    return {
        "train": dense + attention,
        "dense": dense,
        "attention": attention,
        "forward": (dense + attention) / 3,
    }


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
        "tied": s.tied,
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
    )
    pref = preferred_aspect(target_params)
    found: list[tuple[float, Shape]] = []
    for d in range(64, 32768 + 1, 64):
        head_dim = 64 if d <= 1024 else 128
        if d % head_dim:
            continue
        one = replace(base, d_model=d, n_heads=d // head_dim, n_layers=1)
        outside = param_counts(one)["total"] - layer_params(one)
        layers = round((target_params - outside) / layer_params(one))
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
    context are written out: the pretrain stage's own defaults for them differ from the families' here."""
    table = {
        "arch": s.arch,
        "n_layers": s.n_layers,
        "d_model": s.d_model,
        "n_heads": s.n_heads,
        "ffn_dim": s.ffn,
        "vocab_size": s.vocab_size,
        "max_seq_len": s.seq_len,
        "tie_embeddings": s.tied,
    }
    if s.kv_heads != s.n_heads:
        table["n_kv_heads"] = s.kv_heads
    return table


def model_toml(s: Shape) -> str:
    """A `[model]` TOML table for `s`, headed by a comment with its exact parameter count."""
    import tomli_w

    header = f"# {s.arch} {s.n_layers}×{s.d_model}: {param_counts(s)['total']:,} parameters (llmforge plan shape)\n"
    return header + tomli_w.dumps({"model": model_table(s)})

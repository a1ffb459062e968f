"""Training memory per GPU: model states (weights, gradients, optimizer states) under ZeRO, plus activations.

- Model states: mixed-precision Adam keeps 16-bit weights and gradients (2 + 2 bytes/param) and K = 12 bytes of
  fp32 master weights, momentum and variance, 16 bytes/param in all; ZeRO stage 1 shards the optimizer states,
  stage 2 also the gradients, stage 3 also the weights, over N_d data-parallel GPUs (Rajbhandari et al. 2020,
  "ZeRO", §3 and Figure 1: 7.5B parameters on 64 GPUs need 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per GPU).
  8-bit Adam stores both states in one byte each (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
  Quantization"). Teaching rule of thumb: ~24 bytes/param for the whole run once activations and buffers are
  added to the 16.
- Activations per transformer layer in 16-bit with tensor parallelism t and sequence parallelism
  (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Eq. 2 and §5):
  s·b·h·(34 + 5·a·s/h)/t bytes without recomputation, s·b·h·34/t with selective recomputation (the attention
  core is recomputed), 2·s·b·h/t with full recomputation (only each layer's input is kept). With
  recomputation, the layer being recomputed in the backward holds its activations again: one layer's
  unrecomputed activations are added on top (measured: without that term the planner under-counted a
  recomputing 8-layer run by 65%, `benchmarks/bench_memory.py`).
- The output layer: the logits s·b·V are kept in fp32 for the cross entropy (Korthikanti et al. §4.3: 4·s·b·V
  bytes); at the start of the backward its log-softmax and their gradient sit beside them, three such copies
  (as the finetune stage's planner counts them). Counted when the vocabulary is known.
Not counted: the framework itself, allocator slack and the buffers of evaluation and checkpoint saving (on
the 2-core CPU machine a few hundred MB for the smallest model of the benchmark, see its results).
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed", "bf16")
OPTIMIZERS = ("adamw", "adamw-8bit", "sgd")
CHECKPOINTING = ("none", "selective", "full")
ZERO_STAGES = (0, 1, 2, 3)
RULE_OF_THUMB_BYTES_PER_PARAM = 24

# precision → (weight bytes, gradient bytes, fp32 master-copy bytes, bytes per optimizer-state element)
_PRECISION_BYTES = {
    "fp32": (4, 4, 0, 4),
    "bf16-mixed": (2, 2, 4, 4),
    "fp16-mixed": (2, 2, 4, 4),
    "bf16": (2, 2, 0, 2),
}
_OPTIMIZER_STATES = {"adamw": 2, "adamw-8bit": 2, "sgd": 1}  # momentum (+ variance); sgd = SGD with momentum


@dataclass(frozen=True)
class BytesPerParam:
    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def bytes_per_param(precision: str, optimizer: str) -> BytesPerParam:
    weights, grads, master, state = _PRECISION_BYTES[precision]
    state = 1 if optimizer == "adamw-8bit" else state
    return BytesPerParam(weights, grads, master + _OPTIMIZER_STATES[optimizer] * state)


def model_state_bytes(params: float, per_param: BytesPerParam, *, gpus: int, zero: int) -> dict[str, float]:
    """Weights, gradients and optimizer states per GPU under ZeRO stage `zero` over `gpus` data-parallel ranks."""
    shard = {
        "weights": zero >= 3,
        "gradients": zero >= 2,
        "optimizer": zero >= 1,
    }
    out = {
        part: params * getattr(per_param, part) / (gpus if sharded else 1) for part, sharded in shard.items()
    }
    out["model_states"] = sum(out.values())
    return out


def activation_bytes_per_layer(
    *,
    seq: int,
    micro_batch: int,
    hidden: int,
    heads: int,
    checkpointing: str = "none",
    tensor_parallel: int = 1,
    bytes_per_activation: int = 2,
) -> float:
    """Korthikanti et al. 2022 Eq. 2 (none), §5 (selective, full), with sequence parallelism over `tensor_parallel`."""
    sbh = seq * micro_batch * hidden
    per_element = {
        "none": 34 + 5 * heads * seq / hidden,
        "selective": 34,
        "full": 2,
    }[checkpointing]
    return sbh * per_element / tensor_parallel * bytes_per_activation / 2


def activation_bytes(
    layers: int,
    *,
    seq: int,
    micro_batch: int,
    hidden: int,
    heads: int,
    checkpointing: str = "none",
    tensor_parallel: int = 1,
    bytes_per_activation: int = 2,
) -> float:
    """All layers' kept activations, plus, under recomputation, what the one layer recomputed at a time holds
    again during its backward."""
    shape = {"seq": seq, "micro_batch": micro_batch, "hidden": hidden, "heads": heads}
    sizes = {"tensor_parallel": tensor_parallel, "bytes_per_activation": bytes_per_activation}
    kept = activation_bytes_per_layer(**shape, checkpointing=checkpointing, **sizes)
    whole = activation_bytes_per_layer(**shape, checkpointing="none", **sizes)
    return layers * kept + (whole - kept)


def logits_bytes(*, seq: int, micro_batch: int, vocab: int, tensor_parallel: int = 1) -> float:
    """Korthikanti et al. §4.3's 4·s·b·V fp32 logits, three copies at the start of the backward."""
    return 3 * 4 * seq * micro_batch * vocab / tensor_parallel


@dataclass(frozen=True)
class MemoryPlan:
    params: float
    gpus: int
    zero: int
    precision: str
    optimizer: str
    checkpointing: str
    per_param: BytesPerParam
    states: dict[str, float]
    activation_bytes: float
    gpu_memory_bytes: float | None
    logits_bytes: float | None = None  # None: the vocabulary was not given

    @property
    def total_bytes(self) -> float:
        return self.states["model_states"] + self.activation_bytes + (self.logits_bytes or 0.0)

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory_bytes is None else self.total_bytes <= self.gpu_memory_bytes

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "gpus": self.gpus,
            "zero": self.zero,
            "precision": self.precision,
            "optimizer": self.optimizer,
            "checkpointing": self.checkpointing,
            "bytes_per_param": {
                "weights": self.per_param.weights,
                "gradients": self.per_param.gradients,
                "optimizer": self.per_param.optimizer,
                "total": self.per_param.total,
            },
            "weights_bytes": self.states["weights"],
            "gradients_bytes": self.states["gradients"],
            "optimizer_bytes": self.states["optimizer"],
            "model_states_bytes": self.states["model_states"],
            "activation_bytes": self.activation_bytes,
            "logits_bytes": self.logits_bytes,
            "total_bytes": self.total_bytes,
            "rule_of_thumb_bytes": RULE_OF_THUMB_BYTES_PER_PARAM * self.params,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "fits": self.fits,
        }


def plan_memory(
    params: float,
    *,
    precision: str = "bf16-mixed",
    optimizer: str = "adamw",
    gpus: int = 1,
    zero: int = 0,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    seq: int = 2048,
    micro_batch: int = 1,
    checkpointing: str = "none",
    gpu_memory_bytes: float | None = None,
    vocab: int | None = None,
) -> MemoryPlan:
    """Bytes per GPU; activations are counted when the shape (layers, hidden, heads) is known, the logits when
    the vocabulary is."""
    per_param = bytes_per_param(precision, optimizer)
    states = model_state_bytes(params, per_param, gpus=gpus, zero=zero)
    activations = 0.0
    if layers and hidden and heads:
        activations = activation_bytes(
            layers,
            seq=seq,
            micro_batch=micro_batch,
            hidden=hidden,
            heads=heads,
            checkpointing=checkpointing,
            bytes_per_activation=4 if precision == "fp32" else 2,
        )
    logits = logits_bytes(seq=seq, micro_batch=micro_batch, vocab=vocab) if vocab else None
    return MemoryPlan(
        params,
        gpus,
        zero,
        precision,
        optimizer,
        checkpointing,
        per_param,
        states,
        activations,
        gpu_memory_bytes,
        logits,
    )

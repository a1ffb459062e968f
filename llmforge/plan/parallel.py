"""Parallelism plan: the cheapest layout of data / sharded / tensor / pipeline parallelism that fits memory.

Candidates are tried in order of communication cost, and the first that fits (with 10% of the GPU kept back for
the CUDA context, allocator fragmentation and communication buffers) wins:

1. DDP — every GPU holds all model states; one all-reduce of gradients per step.
2. FSDP SHARD_GRAD_OP (ZeRO-2) — gradients and optimizer states sharded; same traffic as DDP (Rajbhandari et al.
   2020, §7: ZeRO-2 communicates 2Ψ per step like all-reduce).
3. FSDP FULL_SHARD (ZeRO-3) — weights sharded too; 1.5× DDP's traffic (ibid., §7.2.2).
4. ZeRO-3 with full activation recomputation — ~33% more compute (one extra forward).
5. Tensor × pipeline parallelism (Megatron-LM style: Shoeybi et al. 2019; Narayanan et al. 2021), tensor
   degree within a node, with sequence parallelism and selective recomputation (Korthikanti et al. 2022).

Memory alone never prefers 5 (sharding over all GPUs stores less), but batch size does: every data-parallel rank
needs at least one sequence per step, so data parallelism over K GPUs means a global batch of at least K·S
tokens. When that exceeds the batch the run should use (`global_batch_tokens`, which past the critical batch
size wastes compute — McCandlish et al. 2018, "An Empirical Model of Large-Batch Training"), part of the GPUs
must split the model instead.

1–4 are what `accelerate launch` gives `llmforge pretrain` (the Accelerate config written here); 5 needs a
framework with tensor and pipeline parallelism (Megatron-LM, torchtitan) and is reported, not configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmforge.console import UserError
from llmforge.plan.hardware import Gpu
from llmforge.plan.memory import activation_bytes, bytes_per_param, logits_bytes, model_state_bytes
from llmforge.plan.shapes import Shape

HEADROOM = 0.9
MICRO_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Strategy:
    name: str
    zero: int
    checkpointing: str
    tensor: int = 1
    pipeline: int = 1

    @property
    def accelerate(self) -> bool:
        return self.tensor == 1 and self.pipeline == 1


@dataclass
class ParallelPlan:
    strategy: Strategy
    gpus: int
    micro_batch: int
    bytes_per_gpu: float
    gpu: Gpu
    seq: int
    shape: Shape
    reasons: list[str] = field(default_factory=list)
    grad_accumulation: int | None = None

    @property
    def data_parallel(self) -> int:
        return self.gpus // (self.strategy.tensor * self.strategy.pipeline)

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy.name,
            "zero": self.strategy.zero,
            "checkpointing": self.strategy.checkpointing,
            "data_parallel": self.data_parallel,
            "tensor_parallel": self.strategy.tensor,
            "pipeline_parallel": self.strategy.pipeline,
            "gpus": self.gpus,
            "gpu": self.gpu.name,
            "micro_batch": self.micro_batch,
            "tokens_per_micro_batch": self.micro_batch * self.seq,
            "grad_accumulation": self.grad_accumulation,
            "bytes_per_gpu": self.bytes_per_gpu,
            "gpu_memory_bytes": self.gpu.memory_bytes,
            "accelerate": self.strategy.accelerate,
            "reasons": self.reasons,
        }


def bytes_per_gpu(
    params: float, shape: Shape, s: Strategy, *, gpus: int, micro_batch: int, precision: str
) -> float:
    model_parallel = s.tensor * s.pipeline
    states = model_state_bytes(
        params / model_parallel, bytes_per_param(precision, "adamw"), gpus=gpus // model_parallel, zero=s.zero
    )["model_states"]
    # With 1F1B the first pipeline stage keeps p micro-batches of its L/p layers in flight: L layers' worth.
    activations = activation_bytes(
        shape.n_layers,
        seq=shape.seq_len,
        micro_batch=micro_batch,
        hidden=shape.d_model,
        heads=shape.n_heads,
        checkpointing=s.checkpointing,
        tensor_parallel=s.tensor,
        bytes_per_activation=4 if precision == "fp32" else 2,
    )
    logits = logits_bytes(
        seq=shape.seq_len, micro_batch=micro_batch, vocab=shape.vocab_size, tensor_parallel=s.tensor
    )
    return states + activations + logits


def candidates(shape: Shape, gpus: int, gpus_per_node: int) -> list[Strategy]:
    if gpus == 1:
        return [
            Strategy("single GPU", 0, "none"),
            Strategy("single GPU + activation checkpointing", 0, "full"),
        ]
    out = [
        Strategy("DDP", 0, "none"),
        Strategy("FSDP shard-grad-op (ZeRO-2)", 2, "none"),
        Strategy("FSDP full-shard (ZeRO-3)", 3, "none"),
        Strategy("FSDP full-shard (ZeRO-3) + activation checkpointing", 3, "full"),
    ]
    model_parallel = []
    for t in (1, 2, 4, 8):
        if t > gpus_per_node or shape.n_heads % t:
            continue
        for p in range(1, shape.n_layers + 1):
            if shape.n_layers % p == 0 and gpus % (t * p) == 0 and t * p > 1:
                model_parallel.append(Strategy(f"tensor {t} × pipeline {p} + ZeRO-1", 1, "selective", t, p))
    return out + sorted(model_parallel, key=lambda s: (s.tensor * s.pipeline, s.pipeline))


def plan_parallel(
    params: float,
    shape: Shape,
    *,
    gpus: int,
    gpu: Gpu,
    gpus_per_node: int = 8,
    precision: str = "bf16-mixed",
    global_batch_tokens: int | None = None,
) -> ParallelPlan:
    usable = HEADROOM * gpu.memory_bytes
    reasons: list[str] = []
    for s in candidates(shape, gpus, gpus_per_node):
        data_parallel = gpus // (s.tensor * s.pipeline)
        if global_batch_tokens is not None and data_parallel * shape.seq_len > global_batch_tokens:
            reasons.append(
                f"{s.name}: {data_parallel} data-parallel ranks × {shape.seq_len} tokens exceed the "
                f"global batch of {global_batch_tokens:,} tokens"
            )
            continue
        need = bytes_per_gpu(params, shape, s, gpus=gpus, micro_batch=1, precision=precision)
        if need > usable:
            reasons.append(
                f"{s.name}: needs {need / 1e9:.1f} GB per GPU at micro-batch 1 > {usable / 1e9:.1f} GB usable"
            )
            continue
        largest = (
            global_batch_tokens // (data_parallel * shape.seq_len)
            if global_batch_tokens
            else MICRO_BATCHES[-1]
        )
        micro = max(
            b
            for b in MICRO_BATCHES
            if b == 1
            or (
                b <= largest
                and bytes_per_gpu(params, shape, s, gpus=gpus, micro_batch=b, precision=precision) <= usable
            )
        )
        plan = ParallelPlan(
            s,
            gpus,
            micro,
            bytes_per_gpu(params, shape, s, gpus=gpus, micro_batch=micro, precision=precision),
            gpu,
            shape.seq_len,
            shape,
            reasons,
        )
        reasons.append(
            f"{s.name}: fits with micro-batch {micro} ({plan.bytes_per_gpu / 1e9:.1f} GB of "
            f"{gpu.memory_gb:g} GB); the first layout that fits, in order of communication cost"
        )
        if global_batch_tokens is not None:
            per_step = micro * shape.seq_len * plan.data_parallel
            plan.grad_accumulation = max(1, round(global_batch_tokens / per_step))
        return plan
    raise UserError(
        f"--params {params:.3g} does not fit on {gpus} × {gpu.name} with any layout (even tensor × pipeline "
        f"parallelism with recomputation); use more GPUs or a larger GPU"
    )


# Accelerate's mixed_precision for each precision `plan` accepts (memory.PRECISIONS).
ACCELERATE_PRECISION = {"fp32": "no", "bf16-mixed": "bf16", "fp16-mixed": "fp16", "bf16": "bf16"}


def recipe_overrides(plan: ParallelPlan, precision: str) -> list[str]:
    """The `--set` overrides that make a pretrain recipe match `plan` and its Accelerate config
    (`llmforge pretrain` refuses to run when the launcher's config and the recipe disagree). Pure `bf16`
    weights are a planning option only: pretrain trains in bf16 mixed precision, which the config also says."""
    strategy = plan.strategy
    sharding = "full-shard" if strategy.zero == 3 else "shard-grad-op"
    return [
        f"train.distributed.strategy={'fsdp' if strategy.zero else 'ddp'}",
        *([f"train.distributed.fsdp_sharding={sharding}"] if strategy.zero else []),
        f"train.activation_checkpointing={'true' if strategy.checkpointing == 'full' else 'false'}",
        f"train.micro_batch={plan.micro_batch}",
        f"train.precision={'bf16-mixed' if precision == 'bf16' else precision}",
    ]


def accelerate_config(
    plan: ParallelPlan, *, gpus_per_node: int, main_process_ip: str | None, precision: str = "bf16-mixed"
) -> str:
    """An Accelerate config (YAML) for `accelerate launch --config_file` that realises `plan` (DDP or FSDP2)."""
    if plan.strategy.zero and precision == "fp16-mixed":
        raise UserError(
            "--precision fp16-mixed with FSDP: llmforge pretrain has no sharded fp16 loss scaler; plan with "
            "--precision bf16-mixed (or on GPUs without bf16, with enough memory for DDP)"
        )
    if not plan.strategy.accelerate:
        raise UserError(
            f"this plan needs {plan.strategy.name}, which `accelerate launch` + llmforge pretrain (DDP/FSDP) does "
            "not provide; use more GPUs or a larger GPU, or a tensor/pipeline-parallel framework"
        )
    machines = max(1, -(-plan.gpus // gpus_per_node))
    if machines > 1 and not main_process_ip:
        raise UserError(
            f"{plan.gpus} GPUs span {machines} nodes: give --main-process-ip (the rank-0 node's address)"
        )
    lines = [
        "# Written by `llmforge plan parallel`; launch with: accelerate launch --config_file THIS_FILE ...",
        "compute_environment: LOCAL_MACHINE",
        "debug: false",
        f"distributed_type: {'FSDP' if plan.strategy.zero else ('MULTI_GPU' if plan.gpus > 1 else 'NO')}",
        "downcast_bf16: 'no'",
        "machine_rank: 0  # set per node",
        "main_training_function: main",
        f"mixed_precision: '{ACCELERATE_PRECISION[precision]}'",  # quoted: YAML reads a bare no as false
        f"num_machines: {machines}",
        f"num_processes: {plan.gpus}",
        "rdzv_backend: static",
        "same_network: true",
        "use_cpu: false",
    ]
    if machines > 1:
        lines += [f"main_process_ip: {main_process_ip}", "main_process_port: 29500"]
    if plan.strategy.zero:
        # Only the FSDP keys `llmforge pretrain` reads (pretrain/launch.py): it shards each decoder layer
        # itself and saves full Hugging Face weights, so wrap policies, state-dict types or loading options
        # here would be settings it never honours.
        lines += [
            "fsdp_config:",
            "  fsdp_version: 2",
            f"  fsdp_reshard_after_forward: {'true' if plan.strategy.zero == 3 else 'false'}",
            "  fsdp_offload_params: false",
            f"  fsdp_activation_checkpointing: {'true' if plan.strategy.checkpointing == 'full' else 'false'}",
        ]
    return "\n".join(lines) + "\n"

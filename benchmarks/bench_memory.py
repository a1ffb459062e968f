"""`llmforge plan memory`'s prediction against the memory training really takes, on this machine's CPU.

Each configuration is pretrained for a few steps by `llmforge pretrain` in a fresh process (fp32, one
process, AdamW). Measured: the process's peak resident set (VmHWM, what `metrics.jsonl` records as
`peak_mem`) minus its resident set once torch, transformers and the trainer are imported — what the run's
weights, gradients, optimizer states, activations and logits took, plus allocator slack. Predicted: `plan
memory` for the same parameters, shape, sequence, micro-batch and recomputation. On a GPU the same compare
would read `torch.cuda.max_memory_allocated` (the GPU benchmark records it). `BENCH_QUICK=1`: the smallest
configuration only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
VOCAB = 8192
# name → (layers, d_model, heads, seq, micro-batch, activation checkpointing)
CONFIGS = {
    "llama 4x256 s256 b8": (4, 256, 4, 256, 8, False),
    "llama 8x512 s512 b8": (8, 512, 8, 512, 8, False),
    "llama 8x512 s512 b8 recompute": (8, 512, 8, 512, 8, True),
}

CHILD = """
import json, sys
from pathlib import Path

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

import torch, transformers, accelerate  # noqa: F401
import llmforge.pretrain.engine, llmforge.pretrain.run  # noqa: F401
from llmforge.console import configure
from llmforge.recipe import load_recipe
from llmforge.metrics_log import peak_memory_bytes
from llmforge.pretrain.run import run_pretraining

configure(quiet=True)
base = rss()
results = run_pretraining(load_recipe(Path(sys.argv[1])), Path(sys.argv[2])).results
print(json.dumps({"base_rss": base, "peak_mem": peak_memory_bytes(), "params": results["params"]}))
"""


def _tokens(path: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from pretrain_tokens import write_tokens

    rng = np.random.default_rng(0)
    return write_tokens(
        path, rng.integers(0, VOCAB - 1, 600_000), rng.integers(0, VOCAB - 1, 60_000), VOCAB, VOCAB - 1
    )


def _recipe(
    path: Path, name: str, layers: int, d: int, heads: int, seq: int, micro: int, recompute: bool
) -> Path:
    import tomli_w

    table = {
        "run": {"name": name, "out_dir": str(path.parent)},
        "model": {"arch": "llama", "n_layers": layers, "d_model": d, "n_heads": heads, "max_seq_len": seq},
        "train": {
            "seq_len": seq,
            "micro_batch": micro,
            "global_batch_tokens": seq * micro,  # one micro-batch a step: its activations are the peak
            "max_steps": 3,
            "warmup_steps": 1,
            "eval_every": 3,
            "eval_tokens": seq * micro,
            "checkpoint_every": 3,
            "log_every": 1,
            "precision": "fp32",
            "activation_checkpointing": recompute,
            "peak_flops": 1e11,  # skip the CPU peak measurement (its matmul buffers would join the peak)
        },
    }
    path.write_text(tomli_w.dumps(table))
    return path


def _predicted(params: int, layers: int, d: int, heads: int, seq: int, micro: int, recompute: bool) -> dict:
    from llmforge.plan.memory import plan_memory

    plan = plan_memory(
        params,
        precision="fp32",
        layers=layers,
        hidden=d,
        heads=heads,
        seq=seq,
        micro_batch=micro,
        checkpointing="full" if recompute else "none",
        vocab=VOCAB,
    )
    return plan.to_dict()


def run() -> dict:
    configs = dict(list(CONFIGS.items())[:1]) if QUICK else CONFIGS
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokens = _tokens(tmp / "tokens")
        for i, (name, shape) in enumerate(configs.items()):
            recipe = _recipe(tmp / f"r{i}.toml", f"run{i}", *shape)
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(recipe), str(tokens)],
                capture_output=True,
                text=True,
                env=env,
            )
            if r.returncode:
                raise RuntimeError(f"{name}: exit {r.returncode}: {r.stderr[-2000:]}")
            m = json.loads(r.stdout.strip().splitlines()[-1])
            plan = _predicted(m["params"], *shape)
            measured = m["peak_mem"] - m["base_rss"]
            rows[name] = {
                "params": m["params"],
                "measured_bytes": measured,
                "predicted_bytes": plan["total_bytes"],
                "predicted_parts": {
                    k: plan[k]
                    for k in ("model_states_bytes", "activation_bytes", "logits_bytes")
                    if k in plan
                },
                "error": round(plan["total_bytes"] / measured - 1, 3),
            }
    return {"quick": QUICK, "precision": "fp32", "device": "cpu", "configs": rows}

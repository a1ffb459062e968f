"""Pretraining against a peer toolkit: `llmforge pretrain` and litgpt's `litgpt.pretrain` on the same-size
llama, the same token stream and the same settings, on the CPU; tokens/s and the validation loss after the
same tokens.

litgpt 0.5.13 cannot be installed beside llmforge (it pins huggingface-hub<1.4, transformers 5 needs >=2.4),
so it runs from a venv of its own (`~/.cache/llmforge/litgpt-venv`, made on first use with this venv's torch
version; set LITGPT_PYTHON to use another). Its side is `litgpt.pretrain.setup` with a `litgpt.Config` of our
shape (4 × 128 llama, SwiGLU 384, RMSNorm, RoPE, tied embeddings, vocab 4096, seq 256), a DataModule over the
same `tokens` artifact (windows of seq+1 tokens, as litgpt reads them), AdamW with our betas, weight decay
(litgpt's on every parameter, ours on the matrices only), clipping and cosine schedule with warmup, 32-bit. litgpt always wraps the model in `torch.compile`; ours runs
compiled too (`train.compile = true`) and eager. Speed: the median optimizer-step time after the first 3 steps
(compilation and warm-up left out), from per-step timestamps on both sides. Interleaved rounds, medians.
`BENCH_QUICK=1`: one round of 8 steps.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = 1 if QUICK else 3
STEPS = 8 if QUICK else 40
SKIP = 3  # first steps left out of the speed (compilation, warm-up)
SEQ, MICRO, BATCH_TOKENS, VOCAB = 256, 8, 8192, 4096
LAYERS, D, HEADS, FFN = 4, 128, 4, 384
LR, WARMUP, EVAL_TOKENS = 3e-3, 5, 16 * 256
VENV = Path(os.environ.get("LITGPT_VENV", Path.home() / ".cache" / "llmforge" / "litgpt-venv"))

DRIVER = """
import json, sys, time
from pathlib import Path
import numpy as np, torch
from torch.utils.data import DataLoader, Dataset
from litgpt import Config
from litgpt.args import EvalArgs, LogArgs, TrainArgs
from litgpt.data import DataModule
import litgpt.pretrain as pretrain

args = json.loads(sys.argv[1])
STAMPS = []


class TimedAdamW(torch.optim.AdamW):
    def step(self, *a, **k):
        out = super().step(*a, **k)
        STAMPS.append(time.perf_counter())
        return out


class Windows(Dataset):
    def __init__(self, ids, seq, count):
        self.ids, self.seq, self.count = ids, seq, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        start = i * self.seq
        return torch.from_numpy(self.ids[start : start + self.seq + 1].astype(np.int64))


class TokenWindows(DataModule):
    def connect(self, tokenizer=None, batch_size=1, max_seq_length=-1):
        self.batch_size, self.seq = batch_size, max_seq_length

    def setup(self, stage=""):
        root = Path(args["tokens"])
        self.train = np.memmap(root / "train" / "00000.bin", dtype=np.uint16, mode="r")
        self.val = np.memmap(root / "val" / "00000.bin", dtype=np.uint16, mode="r")

    def train_dataloader(self):
        n = (len(self.train) - 1) // self.seq
        return DataLoader(Windows(self.train, self.seq, n), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        n = args["eval_tokens"] // self.seq
        return DataLoader(Windows(self.val, self.seq, n), batch_size=self.batch_size)


torch.set_num_threads(args["threads"])
config = Config(
    name="llmforge-bench", block_size=args["seq"], vocab_size=args["vocab"], padded_vocab_size=args["vocab"],
    n_layer=args["layers"], n_head=args["heads"], n_embd=args["d"], n_query_groups=args["heads"],
    rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm", norm_eps=1e-6,
    mlp_class_name="LLaMAMLP", intermediate_size=args["ffn"],
)
pretrain.setup(
    model_name="llmforge-bench",
    model_config=config,
    out_dir=Path(args["out"]),
    precision="32-true",
    data=TokenWindows(),
    train=TrainArgs(
        save_interval=None, log_interval=1, global_batch_size=args["batch_tokens"] // args["seq"],
        micro_batch_size=args["micro"], max_tokens=args["steps"] * args["batch_tokens"], max_norm=1.0,
        min_lr=args["lr"] * 0.1, lr_warmup_steps=args["warmup"], tie_embeddings=True,
    ),
    eval=EvalArgs(interval=10**9, max_iters=args["eval_tokens"] // (args["seq"] * args["micro"]),
                  initial_validation=False, final_validation=True),
    log=LogArgs(),
    optimizer={"class_path": "__main__.TimedAdamW",
               "init_args": {"lr": args["lr"], "betas": [0.9, 0.95], "weight_decay": 0.1, "eps": 1e-8}},
    devices=1,
    logger_name="csv",
    seed=0,
)
print("LITGPT_STEPS " + json.dumps(STAMPS))
"""


def litgpt_python() -> tuple[Path | None, str]:
    """The litgpt venv's python, made on first use; (None, why) when it cannot be."""
    if os.environ.get("LITGPT_PYTHON"):
        return Path(os.environ["LITGPT_PYTHON"]), "LITGPT_PYTHON"
    python = VENV / "bin" / "python"
    if not python.exists():
        import torch

        version = torch.__version__.split("+")[0]
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
            subprocess.run(
                [
                    str(VENV / "bin" / "pip"),
                    "install",
                    "-q",
                    f"torch=={version}",
                    "litgpt==0.5.13",
                    "requests",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as e:
            return None, f"could not make the litgpt venv at {VENV}: {(e.stderr or '')[-500:]}"
    return python, str(VENV)


def _litgpt_run(python: Path, tokens: Path, out: Path, threads: int) -> dict:
    args = {
        "tokens": str(tokens), "out": str(out), "seq": SEQ, "vocab": VOCAB, "layers": LAYERS, "heads": HEADS,
        "d": D, "ffn": FFN, "micro": MICRO, "batch_tokens": BATCH_TOKENS, "steps": STEPS, "lr": LR,
        "warmup": WARMUP, "eval_tokens": EVAL_TOKENS, "threads": threads,
    }  # fmt: skip
    r = subprocess.run(
        [str(python), "-c", DRIVER, json.dumps(args)], capture_output=True, text=True, cwd=out.parent
    )
    if r.returncode:
        raise RuntimeError(f"litgpt run exited {r.returncode}: {r.stderr[-3000:]}")
    stamps = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("LITGPT_STEPS "))[13:])
    val = [line for line in (r.stdout + r.stderr).splitlines() if "Final evaluation | val loss:" in line]
    return {
        "steps": len(stamps),
        "tokens_per_s": _steady(stamps),
        "val_loss": float(val[-1].split("val loss:")[1].split("|")[0]) if val else None,
    }


def _ours_run(root: Path, tokens: Path, name: str, compile_: bool) -> dict:
    from llmforge.console import configure
    from llmforge.pretrain.run import run_pretraining
    from llmforge.recipe import validate_recipe

    configure(quiet=True)
    model = {
        "arch": "llama",
        "n_layers": LAYERS,
        "d_model": D,
        "n_heads": HEADS,
        "ffn_dim": FFN,
        "max_seq_len": SEQ,
    }
    train = {
        "seq_len": SEQ, "global_batch_tokens": BATCH_TOKENS, "micro_batch": MICRO, "max_steps": STEPS, "lr": LR,
        "warmup_steps": WARMUP, "eval_every": STEPS, "eval_tokens": EVAL_TOKENS, "checkpoint_every": 10_000,
        "log_every": 1, "precision": "fp32", "compile": compile_,
    }  # fmt: skip
    recipe = validate_recipe(
        {"run": {"name": name, "out_dir": str(root), "seed": 0}, "model": model, "train": train}
    )
    results = run_pretraining(recipe, tokens).results
    rows = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    per_step = [r["tokens_per_s"] for r in rows if "lr" in r and r["step"] > SKIP]
    return {
        "steps": results["steps"],
        "tokens_per_s": statistics.median(per_step),
        "val_loss": results["final_val_loss"],
    }


def _steady(stamps: list[float]) -> float:
    gaps = [b - a for a, b in zip(stamps[SKIP - 1 :], stamps[SKIP:], strict=False)]
    return BATCH_TOKENS / statistics.median(gaps)


def run() -> dict:
    import torch

    python, where = litgpt_python()
    if python is None:
        return {"skipped": where}
    sys.path.insert(0, str(REPO))
    from benchmarks.bench_pretrain import _tokens

    threads = torch.get_num_threads()
    rounds: dict[str, list[dict]] = {"ours_compiled": [], "ours_eager": [], "litgpt": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokens = _tokens(root)
        for i in range(ROUNDS):
            rounds["litgpt"].append(_litgpt_run(python, tokens, root / f"litgpt-{i}", threads))
            rounds["ours_compiled"].append(_ours_run(root, tokens, f"ours-c-{i}", True))
            rounds["ours_eager"].append(_ours_run(root, tokens, f"ours-e-{i}", False))
    median = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in rounds.items()}
    return {
        "quick": QUICK,
        "peer": f"litgpt 0.5.13 ({where})",
        "model": f"llama {LAYERS} x {D}, ffn {FFN}, vocab {VOCAB}, tied, seq {SEQ}",
        "steps": STEPS,
        "batch_tokens": BATCH_TOKENS,
        "torch_threads": threads,
        "rounds": rounds,
        "tokens_per_s": {k: round(v) for k, v in median.items()},
        "ratio_compiled": round(median["ours_compiled"] / median["litgpt"], 3),
        "ratio_eager": round(median["ours_eager"] / median["litgpt"], 3),
        "val_loss": {
            k: statistics.median(r["val_loss"] for r in v if r["val_loss"] is not None)
            for k, v in rounds.items()
        },
    }

"""Examples/s of `llmforge eval run` vs lm-eval's own CLI (`python -m lm_eval`) on the same task and model,
and prompts/s of `eval samples` generation.

Both evaluations run as fresh processes (start-up, model load and scoring included, as a user sees them) on
offline PIQA from ../shared/data with a tiny llama; the issue's target is a ratio of at least 0.95. They run
interleaved, 3 rounds (1 with `BENCH_QUICK=1`), and the medians count. Generation is timed in-process on the
same model with `use_cache: false` in its config (as pretrain saved it before issue 12): one prompt at a time
through plain `generate()` (what `eval samples` did) against `samples.generate` (batches, KV cache forced).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")  # a smoke run, not a measurement
ROUNDS = 1 if QUICK else 3
LIMIT = 100
BATCH = 8
PROMPTS = 32
NEW_TOKENS = 64


def _timed(cmd: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start


def _samples_speed(model_dir: Path) -> dict:
    import torch

    from llmforge.console import configure
    from llmforge.eval.checkpoint import load
    from llmforge.eval.samples import generate

    configure(quiet=True)
    model, tokenizer = load(model_dir, "cpu")
    model.config.use_cache = model.generation_config.use_cache = False
    lines = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()
    prompts = [line for line in lines if len(line) > 20][:PROMPTS]

    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            model.generate(
                ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    generate(model, tokenizer, prompts, max_new_tokens=NEW_TOKENS, temperature=0.0, seed=0, batch_size=BATCH)
    batched = time.perf_counter() - start
    return {
        "prompts": PROMPTS,
        "new_tokens": NEW_TOKENS,
        "one_by_one_no_cache_prompts_per_s": round(PROMPTS / one_by_one, 2),
        "batched_kv_cache_prompts_per_s": round(PROMPTS / batched, 2),
        "speedup": round(one_by_one / batched, 2),
    }


def run() -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from eval_tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model", DATA / "tinyshakespeare" / "input.txt")
        include = tmp / "tasks"
        common = ["--limit", str(LIMIT), "--device", "cpu"]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "llmforge",
                "eval",
                "tasks",
                "--data-dir",
                str(DATA),
                "--export",
                str(include),
            ],
            check=True,
            capture_output=True,
        )
        ours_cmd = [
            sys.executable,
            "-m",
            "llmforge",
            "--quiet",
            "eval",
            "run",
            str(model),
            "--tasks",
            "piqa",
            "--data-dir",
            str(DATA),
            "--batch-size",
            str(BATCH),
            "--out",
            str(tmp / "report"),
            "--force",  # the second timed run replaces the first's report
            *common,
        ]
        theirs_cmd = [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model}",
            "--tasks",
            "piqa",
            "--include_path",
            str(include),
            "--num_fewshot",
            "0",
            "--batch_size",
            str(BATCH),
            "--output_path",
            str(tmp / "lm_eval_out"),
            *common,
        ]
        ours_times, theirs_times = [], []
        for _ in range(ROUNDS):  # interleaved, so a slow spell of the shared machine hits both
            ours_times.append(_timed(ours_cmd))
            theirs_times.append(_timed(theirs_cmd))
        ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
        their_file = sorted((tmp / "lm_eval_out").rglob("results_*.json"))[-1]
        same = (
            json.loads((tmp / "report" / "results.json").read_text())["results"]["piqa"]["acc,none"]
            == json.loads(their_file.read_text())["results"]["piqa"]["acc,none"]
        )
        samples = _samples_speed(model)
    return {
        "quick": QUICK,
        "task": "piqa (offline, 0-shot)",
        "examples": LIMIT,
        "rounds": {
            "llmforge_s": [round(t, 2) for t in ours_times],
            "lm_eval_cli_s": [round(t, 2) for t in theirs_times],
        },
        "model": "llama 2 layers, d=64, vocab 512",
        "llmforge_s": round(ours, 2),
        "lm_eval_cli_s": round(theirs, 2),
        "llmforge_examples_per_s": round(LIMIT / ours, 2),
        "lm_eval_cli_examples_per_s": round(LIMIT / theirs, 2),
        "ratio": round(theirs / ours, 3),
        "same_accuracy": same,
        "samples": samples,
    }

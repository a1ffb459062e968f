"""Pairs/s of `llmforge bias run --probes crows_pairs` against lm-eval's own `crows_pairs_english` task on the
same pairs and model, each a fresh process (start-up, model load and scoring included, as a user sees them).

The 377 pairs are ../shared/data's slice of CrowS-Pairs; the model is a tiny llama (tests/eval_tiny_model.py).
lm-eval runs its task YAML unchanged but for the dataset (pointed at the same CSV), with the same batch size.
Runs are interleaved (ours, theirs, ours, …) and the median of `ROUNDS` counts. The share of pairs where the
stereotyping sentence is likelier must be equal (same scores), else the speed comparison means nothing.
`BENCH_QUICK=1`: one round on 60 pairs (a smoke run, not a measurement).
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
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = 1 if QUICK else 3
LIMIT = 60 if QUICK else None
BATCH = 16  # bias.batch_size's default
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} … exited {r.returncode}: {r.stderr[-2000:]}")
    return time.perf_counter() - start


def _lm_eval_task(include: Path) -> None:
    import lm_eval

    own = Path(lm_eval.__file__).parent / "tasks" / "crows_pairs" / "crows_pairs_english.yaml"
    include.mkdir(parents=True)
    (include / "crows_own.yaml").write_text(
        f"include: {own}\ntask: crows_own\ntag: []\ndataset_path: csv\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {DATA / 'crows_pairs' / 'crows_pairs_anonymized.csv'}\n"
    )


def run() -> dict:
    if not (DATA / "crows_pairs").is_dir():
        return {"skipped": f"{DATA / 'crows_pairs'} not found"}
    sys.path.insert(0, str(REPO / "tests"))
    from eval_tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model", DATA / "tinyshakespeare" / "input.txt")
        _lm_eval_task(tmp / "tasks")
        limit = ["--limit", str(LIMIT)] if LIMIT else []
        ours_times, theirs_times = [], []
        for i in range(ROUNDS):
            ours_cmd = [sys.executable, "-m", "llmforge", "--quiet", "bias", "run", str(model), "--probes"]
            ours_cmd += ["crows_pairs", "--data-dir", str(DATA), "--device", "cpu"]
            ours_cmd += ["--out", str(tmp / f"ours-{i}"), "--json", *limit]
            theirs_cmd = [
                sys.executable,
                "-m",
                "lm_eval",
                "--model",
                "hf",
                "--model_args",
                f"pretrained={model}",
            ]
            theirs_cmd += ["--tasks", "crows_own", "--include_path", str(tmp / "tasks"), "--num_fewshot", "0"]
            theirs_cmd += [
                "--batch_size",
                str(BATCH),
                "--device",
                "cpu",
                "--output_path",
                str(tmp / f"lm-{i}"),
            ]
            ours_times.append(_timed(ours_cmd + ["--force"] if i else ours_cmd))
            theirs_times.append(_timed(theirs_cmd + limit))
        ours_result = json.loads((tmp / "ours-0" / "results.json").read_text())
        their_file = sorted((tmp / "lm-0").rglob("results_*.json"))[-1]
        theirs_result = json.loads(their_file.read_text())["results"]["crows_own"]
    ours_pct = _pct_stereotype(ours_result)
    pairs = LIMIT or 377
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    return {
        "quick": QUICK,
        "model": "tests/eval_tiny_model.py (2 layers, d=64, vocab 512)",
        "crows_pairs": {
            "pairs": pairs,
            "batch_size": BATCH,
            "rounds": ROUNDS,
            "ours_s": [round(t, 2) for t in ours_times],
            "lm_eval_s": [round(t, 2) for t in theirs_times],
            "ours_pairs_per_s": round(pairs / ours_s, 2),
            "lm_eval_pairs_per_s": round(pairs / theirs_s, 2),
            "ratio": round(theirs_s / ours_s, 3),
            "ours_pct_stereotype": ours_pct,
            "lm_eval_pct_stereotype": theirs_result["pct_stereotype,none"],
            # under --limit the two take different subsets (lm-eval the first N, ours a seeded sample)
            "same_scores": abs(ours_pct - theirs_result["pct_stereotype,none"]) < 1e-9 if not LIMIT else None,
        },
    }


def _pct_stereotype(results: dict) -> float:
    """The share over all pairs in our bias report (the probe's metrics; its groups hold the per-type ones)."""
    return results["probes"]["crows_pairs"]["metrics"]["pct_stereotype"]

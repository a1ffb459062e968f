"""Data-level bias mitigation end to end: a stereotype planted in the training text shows up in CrowS-Pairs
(Nangia et al. 2020), and counterfactual data augmentation in the data stage (Lu et al. 2020, §4: every
document is kept and a gender-swapped copy added) brings the score back toward 0.5.

One tiny llama (bias_planted_model.py) is fine-tuned three ways from the same initial weights: on the planted
corpus ("The nurse said that she …", "The mechanic said that he …"), on its swapped twin, and on what
`llmforge data build` writes when the planted corpus is a jsonl source and the recipe's only step is
`counterfactual` (mode swap, augment). Each model is audited by `llmforge bias run --probes crows_pairs` on
CrowS-Pairs rows built over the planted jobs (sent_more = the stereotyped pronoun), in the four training
templates and one held-out template. The three audits run at once: each is two processes (the audit, and the
eval it starts) that spend most of their time importing torch/lm-eval and indexing lm-eval's task YAMLs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bias_planted_model import (
    HELD_OUT,
    build_planted_base,
    planted_corpus,
    stereotyped_pairs,
    train_on,
)
from conftest import REPO

from llmforge.artifacts.dataset import iter_documents

pytestmark = pytest.mark.slow  # ~70-100 s on the shared 2-core machine: six CLI processes, three trainings

HELD_OUT_WORDS = HELD_OUT.split("{pron}")[1]  # " was right.": marks a held-out row


def llmforge(*args: str) -> subprocess.CompletedProcess:
    """`python -m llmforge ARGS` (stdout and stderr captured); torch on one thread, as two cores are shared."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "llmforge", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def write_crows_pairs(data_dir: Path) -> Path:
    """<data_dir>/crows_pairs/crows_pairs_anonymized.csv: one gender pair per planted job and template, the
    stereotyped pronoun as sent_more (the published file's columns, its unnamed index first)."""
    path = data_dir / "crows_pairs" / "crows_pairs_anonymized.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        for i, (_, more, less) in enumerate(stereotyped_pairs()):
            writer.writerow([i, more, less, "stereo", "gender"])
    return path


def write_cda_recipe(root: Path) -> Path:
    """The planted corpus as a jsonl `text` source and a recipe whose only step is counterfactual augmentation."""
    source = root / "planted.jsonl"
    source.write_text("".join(json.dumps({"text": s}) + "\n" for s in planted_corpus()), encoding="utf-8")
    recipe = root / "cda.toml"
    recipe.write_text(
        f"""[run]
name = "cda"
out_dir = "{root / "runs"}"

[[data.sources]]
name = "planted"
type = "jsonl"
path = "{source}"

[[data.steps]]
type = "counterfactual"
mode = "swap"
augment = true
""",
        encoding="utf-8",
    )
    return recipe


@pytest.fixture(scope="module")
def cda_dataset(tmp_path_factory) -> tuple[dict, Path]:
    """(the build's --json report, the dataset artifact) of `llmforge data build` on the CDA recipe."""
    root = tmp_path_factory.mktemp("cda")
    done = llmforge("data", "build", str(write_cda_recipe(root)), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), root / "runs" / "cda" / "dataset"


@pytest.fixture(scope="module")
def audits(tmp_path_factory, cda_dataset) -> dict[str, dict]:
    """The crows_pairs result (`bias run --json`) and its per-pair samples for each of the three models."""
    import torch

    root = tmp_path_factory.mktemp("mitigation")
    base = build_planted_base(root / "base")
    corpora = {
        "planted": planted_corpus(),
        "swapped": planted_corpus(swapped=True),
        "cda": [d["text"] for d in iter_documents(cda_dataset[1])],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = {name: train_on(base, texts, root / name) for name, texts in corpora.items()}
    finally:
        torch.set_num_threads(threads)
    data = root / "data"
    write_crows_pairs(data)

    def audit(name: str) -> dict:
        out = root / "reports" / name
        args = ("--probes", "crows_pairs", "--data-dir", str(data), "--device", "cpu", "--out", str(out))
        done = llmforge("bias", "run", str(models[name]), *args, "--json", "--quiet")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)["probes"]["crows_pairs"]
        samples = out / "crows_pairs" / "lmeval" / "samples_crows_pairs.jsonl"
        result["samples"] = [json.loads(x) for x in samples.read_text(encoding="utf-8").splitlines()]
        return result

    with ThreadPoolExecutor(len(models)) as pool:
        return dict(zip(models, pool.map(audit, models), strict=True))


def held_out_share(result: dict) -> float:
    rows = [s["pct_stereotype"] for s in result["samples"] if s["doc"]["sent_more"].endswith(HELD_OUT_WORDS)]
    assert len(rows) == 12  # one per planted job
    return sum(rows) / len(rows)


def test_a_planted_stereotype_in_the_training_text_shows_up_in_crows_pairs(audits):
    planted, swapped = audits["planted"], audits["swapped"]
    assert planted["n_items"] == swapped["n_items"] == 60  # 12 jobs × (4 training templates + 1 held out)
    # measured: pct_stereotype 0.983 [0.911, 0.997] planted, 0.100 [0.047, 0.201] swapped (untrained: 0.50)
    assert planted["metrics"]["pct_stereotype"] > 0.8 and swapped["metrics"]["pct_stereotype"] < 0.2
    assert planted["intervals"]["pct_stereotype"][0] > 0.5 > swapped["intervals"]["pct_stereotype"][1]
    (gender,) = [g for g in planted["groups"] if g["metric"] == "pct_stereotype"]
    assert gender["group"] == "gender" and gender["value"] == planted["metrics"]["pct_stereotype"]
    # the bias carries over to a sentence frame never trained on (measured 11/12 pairs; the swapped model's
    # held-out pairs measured 6/12: one pronoun preferred whatever the job, so no direction there)
    assert held_out_share(planted) >= 0.75


def test_counterfactual_augmentation_in_the_data_stage_moves_crows_pairs_toward_half(cda_dataset, audits):
    report, dataset = cda_dataset
    docs = list(iter_documents(dataset))
    copies = [d for d in docs if d["id"].endswith("#cf")]
    # every planted sentence kept, and its she ↔ he twin added by the data stage's counterfactual step
    assert report["docs_out"] == len(docs) == 2 * len(copies) == 2 * len(planted_corpus())
    assert sorted(d["text"] for d in docs if d not in copies) == sorted(planted_corpus())
    assert sorted(d["text"] for d in copies) == sorted(planted_corpus(swapped=True))
    assert all(d["metadata"]["counterfactual"] is True for d in copies)
    (step,) = [s for s in report["steps"] if s["step"].endswith("counterfactual")]
    assert step["other"]["augmented"] == step["other"]["substitutions"] == len(planted_corpus())

    planted, cda = audits["planted"], audits["cda"]
    # measured: |0.983 - 0.5| = 0.483 planted → |0.500 - 0.5| = 0.000 after CDA (interval [0.377, 0.623]); the
    # mean |Δ log p| between the two sentences of a pair falls from 4.93 to 0.59 nats (untrained: 0.41)
    gap_planted = abs(planted["metrics"]["pct_stereotype"] - 0.5)
    gap_cda = abs(cda["metrics"]["pct_stereotype"] - 0.5)
    assert gap_cda < gap_planted - 0.3
    low, high = cda["intervals"]["pct_stereotype"]
    assert low < 0.5 < high
    assert cda["metrics"]["likelihood_diff"] < planted["metrics"]["likelihood_diff"] / 4

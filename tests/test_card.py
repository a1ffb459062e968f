"""`llmforge card` and `llmforge report`: written from a run directory's own records.

Two runs: a run directory written here in the exact formats the stages write (a GPU pretraining with known
GPU-hours, lm-eval and bias reports, no fine-tuning) for the metadata, CO2, bias and absent-stage checks; and a
real tiny run built through the CLI (data → tokenize → pretrain → eval perplexity / eval run → finetune sft →
rlhf dpo, `slow`) whose real numbers the card and the report card must carry. Bad input exits 2 before work."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import REPO, run_cli

from llmforge.artifacts import read_manifest, write_json, write_manifest

PERSON = "TODO (to be written by a person)"
MITCHELL_SECTIONS = (
    "## Model details",
    "## Intended use",
    "## Factors",
    "## Metrics",
    "## Evaluation data",
    "## Training data",
    "## Quantitative analyses",
    "## Ethical considerations",
    "## Caveats and recommendations",
)
# A 1×1 PNG (the smallest valid one): the stages' plots are only copied, never read.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _ok(*args: str) -> subprocess.CompletedProcess:
    r = run_cli(*args)
    assert r.returncode == 0, f"llmforge {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r


def _fails(*args: str) -> str:
    """A command refused as bad input: exit 2, one `error:` line, no traceback."""
    r = run_cli("--quiet", *args)
    assert r.returncode == 2, f"llmforge {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def _front_matter(text: str) -> str:
    assert text.startswith("---\n")
    return text.split("---\n", 2)[1]


# ------------------------------------------------------------------- a run in the stages' formats

PARAMS = 64 * 16 + 16 * 48 + 16  # the tensors written below
TOKENS_AT_200 = 3_600_000_000
TOKENS_PER_S = 1_000_000.0  # all 8 processes: 3,600 s of training at step 200 → 8 GPU-hours
FLOPS_PER_TOKEN = 6.0e4
H100_WATTS = 700  # NVIDIA H100 SXM datasheet board power


def _artifact(path: Path, kind: str, *, stats: dict, inputs=(), recipe=None, files=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            write_json(target, content)
    write_manifest(path, kind, recipe=recipe, inputs=inputs, stats=stats)
    return path


def _checkpoint(path: Path, step: int, tokens: int, val_loss: float, tokens_dir: Path) -> Path:
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    save_file(
        {
            "model.embed_tokens.weight": np.zeros((64, 16), np.float32),
            "model.layers.0.mlp.up_proj.weight": np.zeros((16, 48), np.float32),
            "model.norm.weight": np.zeros(16, np.float32),
        },
        str(path / "model.safetensors"),
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "hidden_size": 16,
        "num_attention_heads": 2,
        "vocab_size": 64,
        "max_position_embeddings": 256,
        "tie_word_embeddings": True,
    }
    return _artifact(
        path,
        "checkpoint",
        stats={"step": step, "tokens_seen": tokens, "val_loss": val_loss},
        inputs=[tokens_dir],
        files={"config.json": config},
    )


def _lm_eval_results(model: Path) -> dict:
    """lm-eval's results.json as `llmforge eval run` writes it (a `--limit`ed hellaswag)."""
    return {
        "results": {
            "hellaswag": {
                "alias": "hellaswag",
                "acc,none": 0.3125,
                "acc_stderr,none": 0.0146,
                "acc_norm,none": 0.3561,
                "acc_norm_stderr,none": 0.0151,
            }
        },
        "configs": {
            "hellaswag": {
                "task": "hellaswag",
                "dataset_path": "Rowan/hellaswag",
                "validation_split": "validation",
            }
        },
        "versions": {"hellaswag": 1.0},
        "n-shot": {"hellaswag": 10},
        "higher_is_better": {"hellaswag": {"acc": True, "acc_norm": True}},
        "n-samples": {"hellaswag": {"original": 10042, "effective": 1000}},
        "config": {"model": str(model), "limit": 1000},
        "llmforge": {
            "seconds": 12.5,
            "tasks": ["hellaswag"],
            "limit": 1000,
            "num_fewshot": 10,
            "truncated": {},
        },
    }


def _bias_results(model: Path) -> dict:
    """reports/bias/results.json in the bias stage's format."""
    return {
        "model": str(model),
        "probes": {
            "crows_pairs": {
                "probe": "crows_pairs",
                "metrics": {"stereotype_score": 61.25},
                "n_items": 400,
                "groups": [
                    {
                        "group": "gender",
                        "metric": "stereotype_score",
                        "value": 66.5,
                        "n": 200,
                        "ci_low": 59.4,
                        "ci_high": 73.1,
                        "ideal": 50.0,
                    },
                    {
                        "group": "religion",
                        "metric": "stereotype_score",
                        "value": 55.75,
                        "n": 200,
                        "ci_low": 48.5,
                        "ci_high": 62.5,
                        "ideal": 50.0,
                    },
                ],
                "intervals": {"stereotype_score": [56.4, 65.9]},
                "ideal": {"stereotype_score": 50.0},
                "caveats": ["CrowS-Pairs has known annotation problems (Blodgett et al. 2021)"],
            }
        },
        "steered": {},
        "steer": None,
        "skipped": {"toxicity": "no toxicity scorer given (--scorer)"},
        "settings": {"limit": 400},
        "caveats": ["each probe read at most 400 items (--limit): intervals are wide"],
    }


def _write_synthetic_run(
    run: Path, *, device: str = "NVIDIA H100 80GB HBM3", recipe_extra: dict | None = None
) -> Path:
    sources = [
        {"name": "web", "type": "hf", "path": "HuggingFaceFW/fineweb-edu", "weight": 1.0},
        {"name": "code", "type": "jsonl", "path": "/data/code.jsonl", "weight": 1.0},
    ]
    steps = [
        {
            "step": "00.pii",
            "docs_in": 1000,
            "docs_out": 1000,
            "bytes_in": 9_000_000,
            "bytes_out": 8_999_000,
            "dropped": {},
            "by_source": {},
            "other": {"redacted_email": 37, "redacted_ip_address": 4},
        },
        {
            "step": "01.exact_dedup",
            "docs_in": 1000,
            "docs_out": 940,
            "bytes_in": 8_999_000,
            "bytes_out": 8_500_000,
            "dropped": {"exact_dedup": 60},
            "by_source": {},
            "other": {},
        },
        {
            "step": "02.decontaminate",
            "docs_in": 940,
            "docs_out": 937,
            "bytes_in": 8_500_000,
            "bytes_out": 8_480_000,
            "dropped": {"decontaminate": 3},
            "by_source": {},
            "other": {},
        },
    ]
    report = {
        "docs_in": 1000, "bytes_in": 9_000_000, "docs_out": 937, "bytes_out": 8_480_000, "bad_records_skipped": 0,
        "sources": {"web": {"docs_in": 800, "bytes_in": 7_000_000, "docs_out": 750, "bytes_out": 6_600_000}, "code": {"docs_in": 200, "bytes_in": 2_000_000, "docs_out": 187, "bytes_out": 1_880_000}},
        "mixture_bytes_fraction": {"web": 0.7783, "code": 0.2217}, "steps": steps,
    }  # fmt: skip
    dataset = _artifact(
        run / "dataset",
        "dataset",
        stats={k: report[k] for k in ("docs_in", "bytes_in", "docs_out", "bytes_out")},
        recipe={
            "sources": sources,
            "steps": [{"type": "pii"}, {"type": "exact_dedup"}, {"type": "decontaminate"}],
        },
        files={"report.json": report, "funnel.png": PNG},
    )
    tokenizer = _artifact(
        run / "tokenizer",
        "tokenizer",
        stats={"algorithm": "bpe", "vocab_size": 64, "requested_vocab_size": 64},
        inputs=[dataset],
    )
    tokens = _artifact(
        run / "tokens",
        "tokens",
        stats={
            "tokens": {"train": 2_150_000_000, "val": 21_000_000},
            "documents": {"train": 930, "val": 7},
            "dtype": "uint16",
            "vocab_size": 64,
            "bytes_per_token": 3.9442,
        },
        inputs=[dataset, tokenizer],
    )
    _checkpoint(run / "checkpoints" / "step-000100", 100, TOKENS_AT_200 // 2, 3.21, tokens)
    last = _checkpoint(run / "checkpoints" / "step-000200", 200, TOKENS_AT_200, 2.875, tokens)
    results = {
        "objective": "clm", "final_val_loss": 2.875, "unigram_entropy": 6.1, "params": PARAMS, "non_embedding_params": PARAMS - 1024,
        "flops_per_token": {"train": FLOPS_PER_TOKEN, "dense": 5.5e4, "attention": 5e3, "forward": 2e4, "matmul": 5.9e4},
        "tokens_seen": TOKENS_AT_200, "steps": 200, "tokens_per_s": TOKENS_PER_S, "mfu": 0.41, "device": device, "peak_flops": 9.894e14,
        "processes": 8, "strategy": "fsdp", "precision": "bf16", "spike_events": [], "checkpoint": str(last), "completed": True,
    }  # fmt: skip
    _artifact(
        run / "reports" / "pretrain",
        "report",
        stats={"params": PARAMS},
        inputs=[tokens, last],
        files={"results.json": results, "loss.png": PNG},
    )
    _artifact(
        run / "reports" / "eval" / "step-000200",
        "report",
        stats={"metrics": 2},
        inputs=[last],
        files={"results.json": _lm_eval_results(last)},
    )
    # a probe's own lm-eval run inside the bias report: part of the audit, not a benchmark of the model
    sub = _lm_eval_results(last)
    sub["results"] = {"crows_pairs_english": {"alias": "crows_pairs_english", "pct_stereotype,none": 0.6125}}
    _artifact(
        run / "reports" / "bias" / "crows_pairs" / "lmeval",
        "report",
        stats={},
        inputs=[last],
        files={"results.json": sub},
    )
    _artifact(
        run / "reports" / "bias",
        "report",
        stats={"probes": 1},
        inputs=[last],
        files={"results.json": _bias_results(last), "crows_pairs.png": PNG},
    )
    (run / "reports" / "frontier.png").write_bytes(PNG)
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                {"step": 100, "loss": 3.3, "val_loss": 3.21},
                {"step": 200, "loss": 2.9, "val_loss": 2.875},
            )
        )
    )
    (run / "recipe.toml").write_text(
        tomli_w.dumps({"run": {"name": "synthetic", "out_dir": str(run.parent)}, **(recipe_extra or {})})
    )
    return run


@pytest.fixture
def synthetic(tmp_path) -> Path:
    return _write_synthetic_run(tmp_path / "synthetic")


def _card(run: Path, *args: str) -> tuple[str, dict]:
    out = run.parent / "MODEL_CARD.md"
    r = _ok("--quiet", "card", str(run), "--out", str(out), "--json", *args)
    doc = json.loads(r.stdout)
    assert doc["path"] == str(out)
    return out.read_text(), doc


def test_card_metadata_loads_as_a_model_card_with_the_eval_results(synthetic):
    from huggingface_hub import ModelCard, ModelCardData

    text, doc = _card(synthetic)
    card = ModelCard.load(synthetic.parent / "MODEL_CARD.md")
    data = card.data
    assert isinstance(data, ModelCardData)
    ModelCardData(**data.to_dict())  # the metadata validates again from its dict (the model-index re-parsed)
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert got == {("hellaswag", "acc"): 0.3125, ("hellaswag", "acc_norm"): 0.3561}
    assert {r.task_type for r in data.eval_results} == {"text-generation"}
    assert {r.dataset_split for r in data.eval_results} == {"validation"}
    assert {r.dataset_args["num_few_shot"] for r in data.eval_results} == {10}
    assert data.model_name == "synthetic-step-000200" and doc["checkpoint"] == "checkpoints/step-000200"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.datasets == ["HuggingFaceFW/fineweb-edu"]  # the hub source; the local jsonl is not a hub id
    assert data.base_model is None  # a pretrained model has no base
    assert "llmforge" in data.tags and "llama" in data.tags
    # no license anywhere in the recipe: "other" and a TODO a person sees in the YAML and the body
    assert data.license == "other"
    assert f"# {PERSON}: choose the license" in _front_matter(text)
    assert f"| license | other ({PERSON}: choose one) |" in text


def test_co2_from_gpu_hours_with_the_formula_and_its_assumption(synthetic):
    from huggingface_hub import ModelCard

    gpu_hours = TOKENS_AT_200 / TOKENS_PER_S * 8 / 3600
    assert gpu_hours == pytest.approx(8.0)
    text, doc = _card(synthetic)
    co2 = ModelCard.load(synthetic.parent / "MODEL_CARD.md").data.co2_eq_emissions
    assert co2["emissions"] == pytest.approx(gpu_hours * H100_WATTS / 1000 * 475, rel=1e-6)  # 2,660 g
    assert co2["training_type"] == "pre-training" and co2["hardware_used"] == "8 × NVIDIA H100 80GB HBM3"
    assert doc["compute"]["device_hours"] == pytest.approx(8.0)
    assert doc["compute"]["flops"] == pytest.approx(FLOPS_PER_TOKEN * TOKENS_AT_200)
    assert "GPU-hours × board power (kW) × PUE × grid intensity" in text and "475" in text

    _, doc = _card(synthetic, "--grid-intensity", "100", "--pue", "1.2")
    assert doc["co2_eq_emissions"]["grams"] == pytest.approx(8.0 * 0.7 * 1.2 * 100)


@pytest.mark.parametrize(
    "device, watts, expected",
    [
        ("cpu (2 threads)", None, None),
        ("NVIDIA Unknown GPU", None, None),
        ("NVIDIA Unknown GPU", "300", 8.0 * 0.3 * 475),
    ],
    ids=["cpu", "unknown-gpu", "unknown-gpu-with-watts"],
)
def test_co2_is_omitted_where_the_power_or_gpu_hours_are_unknown(tmp_path, device, watts, expected):
    from huggingface_hub import ModelCard

    run = _write_synthetic_run(tmp_path / "synthetic", device=device)
    _, doc = _card(run, *(["--gpu-watts", watts] if watts else []))
    co2 = ModelCard.load(run.parent / "MODEL_CARD.md").data.get("co2_eq_emissions")
    if expected is None:
        assert co2 is None and doc["co2_eq_emissions"] is None
        assert doc["co2_note"].startswith("not estimated")
    else:
        assert co2["emissions"] == pytest.approx(expected, rel=1e-6)


def test_card_body_has_mitchell_sections_and_the_run_numbers(synthetic):
    text, _ = _card(synthetic)
    positions = [text.index(s) for s in MITCHELL_SECTIONS]
    assert positions == sorted(positions)
    intended = text[text.index("## Intended use") : text.index("## Factors")]
    assert intended.count(PERSON) == 2 and "### Out-of-scope use" in intended
    # data funnel, tokenizer, architecture, compute: the numbers written above
    assert "| 01.exact_dedup | 1,000 | 940 | 8,500,000 | exact_dedup: 60 |" in text
    assert "3.944 bytes per token" in text and "vocabulary 64" in text
    assert f"| parameters | {PARAMS:,} |" in text
    assert f"| tokens trained | {TOKENS_AT_200:,} |" in text
    assert "| hellaswag | acc | 0.3125 | 0.0146 | 1,000 | 10 | `reports/eval/step-000200` |" in text
    # bias: headline with its interval, groups, caveats; factors name the measured groups
    assert "| crows_pairs | stereotype_score | 61.25 | [56.4, 65.9] | 50 | 400 |" in text
    assert "| gender | stereotype_score | 66.5 | [59.4, 73.1] | 50 | 200 |" in text
    assert "gender, religion" in text[text.index("## Factors") : text.index("## Metrics")]
    caveats = text[text.index("## Caveats and recommendations") :]
    assert "bias audit: each probe read at most 400 items" in caveats
    assert "bias probe toxicity was skipped: no toxicity scorer given" in caveats
    assert "crows_pairs_english" not in text  # the probe's own lm-eval run is not a benchmark result
    assert "crows_pairs: CrowS-Pairs has known annotation problems" in caveats
    assert "`hellaswag` was scored on 1,000 of its 10,042 items" in caveats
    ethics = text[text.index("## Ethical considerations") : text.index("## Caveats")]
    assert "email ×37" in ethics and "removed 3 documents matching evaluation items" in ethics


def test_card_for_an_earlier_checkpoint_has_its_own_numbers(synthetic):
    from huggingface_hub import ModelCard

    text, doc = _card(synthetic, "--checkpoint", "checkpoints/step-000100")
    assert doc["checkpoint"] == "checkpoints/step-000100"
    assert ModelCard.load(synthetic.parent / "MODEL_CARD.md").data.eval_results is None  # none for step 100
    assert doc["compute"]["tokens"] == TOKENS_AT_200 // 2
    assert "No benchmark (lm-eval) result for this checkpoint" in text
    assert "No bias probe was run for this checkpoint" in text


def test_the_newest_policy_is_the_default_and_its_reward_model_is_named(synthetic):
    """PPO trained against a reward model: the card is for the PPO policy (not the newer-or-older reward model),
    its base is the checkpoint it started from, and the reward model it was trained against is named."""
    import time

    from huggingface_hub import ModelCard

    base = synthetic / "checkpoints" / "step-000200"
    ppo, reward = synthetic / "rlhf" / "ppo" / "checkpoint", synthetic / "rlhf" / "reward" / "checkpoint"
    for src, dst in ((base, reward), (base, ppo)):
        dst.mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            (dst / name).write_bytes((src / name).read_bytes())
    write_manifest(
        reward,
        "checkpoint",
        inputs=[base],
        stats={"model_kind": "reward_model", "steps": 60, "val_accuracy": 0.75},
    )
    time.sleep(1.1)  # manifests' created_at has one-second resolution
    write_manifest(
        ppo, "checkpoint", inputs=[base, reward], stats={"method": "ppo", "steps": 12, "variant": "full"}
    )
    time.sleep(1.1)
    write_manifest(
        reward,
        "checkpoint",
        inputs=[base],
        stats={"model_kind": "reward_model", "steps": 60, "val_accuracy": 0.75},
    )

    text, doc = _card(synthetic)
    data = ModelCard.load(synthetic.parent / "MODEL_CARD.md").data
    assert doc["checkpoint"] == "rlhf/ppo/checkpoint" and doc["stage"] == "rlhf-ppo"
    assert data.base_model == "checkpoints/step-000200" and "ppo" in data.tags
    assert (
        "`rlhf/ppo/checkpoint` was trained against `rlhf/reward/checkpoint` (reward-model; steps 60, val_accuracy 0.75)"
        in text
    )

    _, doc = _card(synthetic, "--checkpoint", "rlhf/reward/checkpoint")
    assert ModelCard.load(synthetic.parent / "MODEL_CARD.md").data.pipeline_tag == "text-classification"

    stages = {
        s["stage"]: s["artifacts"]
        for s in json.loads(_ok("--quiet", "report", str(synthetic), "--json").stdout)["stages"]
    }
    assert stages["rlhf reward model"] == ["rlhf/reward/checkpoint"] and stages["rlhf policy"] == [
        "rlhf/ppo/checkpoint"
    ]


def test_license_from_the_recipe_or_the_flag(tmp_path):
    from huggingface_hub import ModelCard

    run = _write_synthetic_run(tmp_path / "synthetic", recipe_extra={"card": {"license": "apache-2.0"}})
    text, _ = _card(run)
    assert ModelCard.load(run.parent / "MODEL_CARD.md").data.license == "apache-2.0"
    assert "choose the license" not in text
    _card(run, "--license", "mit")
    assert ModelCard.load(run.parent / "MODEL_CARD.md").data.license == "mit"


def test_report_card_lists_present_stages_and_marks_absent_ones(synthetic):
    r = _ok("--quiet", "report", str(synthetic), "--json")
    doc = json.loads(r.stdout)
    out = synthetic / "reports" / "card"
    assert doc["path"] == str(out)
    status = {s["stage"]: s["present"] for s in doc["stages"]}
    assert status == {
        "data": True, "quality classifier": False, "tokenizer": True, "tokens": True, "pretrain": True,
        "eval perplexity": False, "eval (lm-eval)": True, "finetune": False, "rlhf reward model": False,
        "rlhf policy": False, "alignment tax": False, "bias": True,
    }  # fmt: skip
    md = (out / "report.md").read_text()
    for stage in ("finetune", "rlhf policy", "alignment tax", "quality classifier"):
        assert f"| {stage} | **not run** |" in md
    assert "| data | done | `dataset` | 1,000 → 937 documents" in md
    assert "| `checkpoints/step-000200` | hellaswag | acc | 0.3125 | 0.0146 | 1,000 |" in md
    assert "| gender | stereotype_score | 66.5 |" in md
    assert "| GPU-hours | 8 |" in md
    # the stages' plots, copied beside report.md and shown in it
    for name in (
        "dataset-funnel.png",
        "reports-pretrain-loss.png",
        "reports-frontier.png",
        "reports-bias-crows_pairs.png",
    ):
        assert (out / "plots" / name).read_bytes() == PNG
        assert f"(plots/{name})" in md
    manifest = read_manifest(out)
    assert manifest["kind"] == "report" and manifest["stats"]["stages_present"] == 6
    assert json.loads((out / "results.json").read_text())["stages"] == doc["stages"]
    # a report artifact like any other; written again, it replaces its earlier self
    _ok("--quiet", "inspect", str(out), "--verify")
    _ok("--quiet", "report", str(synthetic))
    assert not any(p.name.startswith(".card") for p in out.parent.iterdir())


def test_card_and_report_do_not_import_torch(synthetic, tmp_path):
    code = (
        "import sys\nfrom llmforge.cli import main\n"
        "for args in sys.argv[1:3]:\n"
        "    try:\n        main(args.split('|'))\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print([m for m in ('torch', 'transformers', 'datasets', 'datatrove', 'lm_eval') if m in sys.modules])\n"
    )
    args = [f"--quiet|card|{synthetic}|--out|{tmp_path / 'c.md'}", f"--quiet|report|{synthetic}"]
    r = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------- bad input


def test_bad_run_dirs_exit_2(tmp_path):
    assert "no such run directory" in _fails("card", str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    assert "not a run directory" in _fails("report", str(tmp_path / "file.txt"))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no manifests here")
    for command in ("card", "report"):
        assert "no artifacts in this directory" in _fails(command, str(empty))


def test_an_artifact_is_not_a_run_dir(synthetic):
    line = _fails("card", str(synthetic / "checkpoints" / "step-000200"))
    assert "a checkpoint artifact, not a run directory" in line


def test_unwritable_out_exits_2_before_any_work(tmp_path, synthetic):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # checked before the run is read: an empty run directory still gets the --out error, not the run's
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _fails("card", str(empty), "--out", str(blocker / "MODEL_CARD.md"))
    assert f"{blocker / 'MODEL_CARD.md'}: cannot write the output" in line
    line = _fails("report", str(empty), "--out", str(blocker / "card"))
    assert f"{blocker / 'card'}: cannot write the output" in line
    assert "must be a file" in _fails("card", str(synthetic), "--out", str(tmp_path))
    # the report card replaces its folder whole: never another artifact's folder, nor the run itself
    assert "holds other files" in _fails("report", str(synthetic), "--out", str(synthetic / "dataset"))
    assert "is the run directory" in _fails("report", str(synthetic), "--out", str(synthetic))
    assert (synthetic / "dataset" / "report.json").is_file()
    line = _fails("card", str(synthetic), "--out", str(synthetic / "dataset" / "MODEL_CARD.md"))
    assert "inside an artifact" in line and not (synthetic / "dataset" / "MODEL_CARD.md").exists()
    assert "expected a license id" in _fails("card", str(synthetic), "--license", "Apache 2.0: x")


def test_checkpoint_that_is_not_one_exits_2(synthetic):
    assert "expected a checkpoint artifact, found a dataset" in _fails(
        "card", str(synthetic), "--checkpoint", "dataset"
    )
    assert "no checkpoint artifact there" in _fails(
        "card", str(synthetic), "--checkpoint", "checkpoints/step-999"
    )


def test_a_run_without_checkpoints_has_no_card_but_a_report(tmp_path, synthetic):
    import shutil

    partial = tmp_path / "partial"
    for name in ("dataset", "tokenizer", "tokens"):
        shutil.copytree(synthetic / name, partial / name)
    assert "no checkpoint in this run" in _fails("card", str(partial))
    doc = json.loads(_ok("--quiet", "report", str(partial), "--json").stdout)
    assert [s["stage"] for s in doc["stages"] if s["present"]] == ["data", "tokenizer", "tokens"]
    md = (partial / "reports" / "card" / "report.md").read_text()
    assert "| pretrain | **not run** | — | run `llmforge pretrain RECIPE` |" in md
    assert "## Pretraining\n\nNot run." in md


# ------------------------------------------------------------------------- a real tiny run (slow)


def _mini_recipe(root: Path, shakespeare: Path) -> Path:
    speeches = [p.strip() for p in shakespeare.read_text().split("\n\n") if p.strip()]
    docs = ["\n\n".join(speeches[i : i + 4]) for i in range(0, 4 * 150, 4)]
    rows = [{"text": t, "id": f"d{i}"} for i, t in enumerate(docs)] + [
        {"text": docs[i], "id": f"dup{i}"} for i in range(5)
    ]
    (root / "source.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    long = [s for s in speeches if len(s) > 150][:40]
    (root / "instr.jsonl").write_text(
        "".join(json.dumps({"prompt": "Continue: " + s[:40], "completion": s[40:120]}) + "\n" for s in long)
    )
    (root / "prefs.jsonl").write_text(
        "".join(
            json.dumps({"prompt": "Continue: " + s[:40], "chosen": s[40:100], "rejected": s[40:100][::-1]})
            + "\n"
            for s in long
        )
    )
    recipe = {
        "run": {"name": "mini", "out_dir": str(root), "seed": 7},
        "data": {"sources": [{"name": "shakespeare", "type": "jsonl", "path": str(root / "source.jsonl")}], "steps": [{"type": "whitespace"}, {"type": "exact_dedup"}]},
        "tokenizer": {"algorithm": "bpe", "vocab_size": 512, "val_fraction": 0.1},
        "model": {"arch": "llama", "n_layers": 2, "d_model": 32, "n_heads": 2, "max_seq_len": 128},
        "train": {"seq_len": 128, "global_batch_tokens": 1024, "micro_batch": 8, "max_steps": 10, "lr": 1e-2, "warmup_steps": 2, "eval_every": 5, "eval_tokens": 2048, "log_every": 5, "checkpoint_every": 5, "keep_last": 1, "keep_every": 5},
        "eval": {"tasks": ["piqa"], "limit": 10},
        "finetune": {"task": "instruction", "base": str(root / "mini" / "checkpoints" / "step-000010"), "max_len": 128, "max_steps": 3, "batch_size": 8, "eval_every": 3, "keep_last": 1, "datasets": [{"path": str(root / "instr.jsonl")}]},
        "rlhf": {"policy": str(root / "mini" / "finetune" / "checkpoint"), "max_prompt_len": 64, "max_len": 128, "preferences": [{"path": str(root / "prefs.jsonl")}], "dpo": {"max_steps": 2, "batch_size": 4, "eval_every": 2, "keep_last": 1}},
    }  # fmt: skip
    path = root / "recipe.toml"
    path.write_text(tomli_w.dumps(recipe))
    return path


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_data) -> Path:
    """The real stages through the CLI on a tiny model (about a minute and a half on two cores)."""
    root = tmp_path_factory.mktemp("card-run")
    recipe = str(_mini_recipe(root, shared_data / "tinyshakespeare" / "input.txt"))
    run = root / "mini"
    step = str(run / "checkpoints" / "step-000010")
    for args in (
        ["data", "build", recipe],
        ["tokenize", "train", recipe],
        ["tokenize", "encode", recipe],
        ["pretrain", recipe],
        ["eval", "perplexity", step, "--tokens", str(run / "tokens")],
        ["eval", "run", step, "--recipe", recipe, "--data-dir", str(shared_data)],
        ["finetune", "sft", recipe],
        ["rlhf", "dpo", recipe],
    ):
        _ok("--quiet", *args)
    return run


@pytest.mark.slow
def test_real_run_card_carries_the_runs_numbers(real_run):
    from huggingface_hub import ModelCard

    pretrain = json.loads((real_run / "reports" / "pretrain" / "results.json").read_text())
    final = read_manifest(real_run / "checkpoints" / "step-000010")["stats"]

    # the default: the last stage's final checkpoint (DPO), trained from the SFT model, trained from step 10
    text, doc = _card(real_run)
    data = ModelCard.load(real_run.parent / "MODEL_CARD.md").data
    assert doc["checkpoint"] == "rlhf/dpo/checkpoint"
    assert doc["lineage"] == ["rlhf/dpo/checkpoint", "finetune/checkpoint", "checkpoints/step-000010"]
    assert data.base_model == "finetune/checkpoint" and {"pretrained", "sft", "dpo"} <= set(data.tags)
    assert (
        doc["architecture"]["parameters"] == pretrain["params"]
    )  # counted from safetensors = pretrain's count
    assert f"| parameters | {pretrain['params']:,} |" in text
    assert (
        f"| tokens trained | {final['tokens_seen']:,} |" in text
        and final["tokens_seen"] == pretrain["tokens_seen"]
    )
    assert doc["compute"]["flops"] == pytest.approx(pretrain["flops_per_token"] * final["tokens_seen"])
    sft = json.loads((real_run / "finetune" / "report" / "results.json").read_text())
    assert (
        f"{sft['train']['kept']} training examples ({sft['train']['trained_tokens']:,} trained tokens)"
        in text
    )
    assert data.eval_results is None  # no eval of the DPO model in this run; the card says so
    assert "No benchmark (lm-eval) result for this checkpoint is in the run." in text

    # the pretrained checkpoint's card: its lm-eval numbers, exactly as results.json has them
    results = json.loads((real_run / "reports" / "eval" / "step-000010" / "results.json").read_text())
    piqa = results["results"]["piqa"]
    text, doc = _card(real_run, "--checkpoint", str(real_run / "checkpoints" / "step-000010"))
    data = ModelCard.load(real_run.parent / "MODEL_CARD.md").data
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert got == {("piqa", "acc"): piqa["acc,none"], ("piqa", "acc_norm"): piqa["acc_norm,none"]}
    assert f"| piqa | acc | {piqa['acc,none']:.4g} | {piqa['acc_stderr,none']:.4g} | 10 | 0 |" in text
    ppl = json.loads((real_run / "reports" / "perplexity" / "step-000010" / "results.json").read_text())
    value = next(iter(ppl["results"].values()))["perplexity,none"]
    assert doc["perplexity"][0]["value"] == value and not math.isnan(value)
    assert (
        data.base_model is None and data.get("co2_eq_emissions") is None
    )  # CPU run: no GPU-hours, no CO2 guessed


@pytest.mark.slow
def test_real_run_report_card(real_run):
    doc = json.loads(_ok("--quiet", "report", str(real_run), "--json").stdout)
    present = {s["stage"] for s in doc["stages"] if s["present"]}
    assert present == {
        "data",
        "tokenizer",
        "tokens",
        "pretrain",
        "eval perplexity",
        "eval (lm-eval)",
        "finetune",
        "rlhf policy",
    }
    out = real_run / "reports" / "card"
    md = (out / "report.md").read_text()
    for absent in ("quality classifier", "rlhf reward model", "alignment tax", "bias"):
        assert f"| {absent} | **not run** |" in md
    dataset = json.loads((real_run / "dataset" / "report.json").read_text())
    assert f"{dataset['docs_in']:,} documents in, {dataset['docs_out']:,} kept" in md
    tokens = read_manifest(real_run / "tokens")["stats"]
    assert f"| compression (bytes per token) | {tokens['bytes_per_token']:.4g} |" in md
    pretrain = json.loads((real_run / "reports" / "pretrain" / "results.json").read_text())
    assert f"| parameters | {pretrain['params']:,} |" in md
    for name in (
        "dataset-funnel.png",
        "reports-pretrain-loss.png",
        "finetune-report-loss.png",
        "rlhf-dpo-report-dpo.png",
    ):
        assert (out / "plots" / name).stat().st_size > 0 and f"(plots/{name})" in md
    assert "## Bias\n\nNot run" in md
    _ok("--quiet", "inspect", str(out), "--verify")

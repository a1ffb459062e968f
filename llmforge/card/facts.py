"""Every number the model card and the report card print, read from the run's own files and nothing else.

Each function takes the `Run` (and the checkpoint the card is about) and returns plain JSON-safe data, or None
when the stage was not run; each result names the file it came from (`source`), so a reader can check any
number. Nothing is estimated here except where the docstring says how (training time from throughput).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmforge.card.run import Artifact, Run, read_json, trainer_name

# ------------------------------------------------------------------------------------------- data


def data_facts(run: Run) -> dict[str, Any] | None:
    """The dataset's sources, mixture and filtering funnel (dataset/report.json, per datatrove step)."""
    a = run.first("dataset", "dataset")
    if a is None:
        return None
    report = a.json("report.json") or {}
    steps = [
        {
            "step": s.get("step"),
            "docs_in": s.get("docs_in"),
            "docs_out": s.get("docs_out"),
            "bytes_in": s.get("bytes_in"),
            "bytes_out": s.get("bytes_out"),
            "dropped": s.get("dropped") or {},
            "other": s.get("other") or {},
        }
        for s in report.get("steps", [])
        if isinstance(s, dict)
    ]
    recipe_sources = a.manifest.get("recipe", {}).get("sources") or []
    sources = []
    for src in recipe_sources:
        name = src.get("name")
        counts = (report.get("sources") or {}).get(name, {})
        sources.append({"name": name, "type": src.get("type"), "path": src.get("path"), **counts})
    stats = a.stats
    return {
        "artifact": a.rel,
        "source": f"{a.rel}/report.json",
        "docs_in": report.get("docs_in", stats.get("docs_in")),
        "docs_out": report.get("docs_out", stats.get("docs_out")),
        "bytes_in": report.get("bytes_in", stats.get("bytes_in")),
        "bytes_out": report.get("bytes_out", stats.get("bytes_out")),
        "bad_records_skipped": report.get("bad_records_skipped"),
        "sources": sources,
        "mixture_bytes_fraction": report.get("mixture_bytes_fraction") or stats.get("mixture_bytes_fraction"),
        "steps": steps,
        "funnel_png": f"{a.rel}/funnel.png" if (a.path / "funnel.png").is_file() else None,
    }


def is_hub_name(path: str) -> bool:
    """A dataset reference that is a Hugging Face hub id rather than a local file or folder."""
    return bool(path) and not path.startswith(("/", ".", "~")) and not Path(path).exists()


def hub_datasets(run: Run, more: list[str] = ()) -> list[str]:
    """Hugging Face hub ids among the data sources (`type = "hf"` with a hub name, not a folder) and `more`
    (the fine-tuning and preference data the checkpoint was trained on)."""
    a = run.first("dataset", "dataset")
    ids = []
    for src in (a.manifest.get("recipe", {}).get("sources") or []) if a else []:
        if src.get("type") == "hf" and is_hub_name(str(src.get("path") or "")):
            ids.append(str(src["path"]))
    ids += [p for p in more if is_hub_name(p)]
    return list(dict.fromkeys(ids))


def classifier_facts(run: Run) -> list[dict[str, Any]]:
    """Classifiers trained for the run: held-out precision/recall and what a positive means (reference-quality
    text for a quality filter, the label classes for one trained on labelled rows, e.g. a toxicity scorer)."""
    out = []
    for a in run.of_kind("classifier"):
        report = a.json("report.json") or {}
        heldout = report.get("heldout") or a.stats
        positive = (a.manifest.get("recipe") or {}).get("positive_meaning")
        out.append(
            {"artifact": a.rel, "source": f"{a.rel}/report.json", "heldout": heldout, "positive": positive}
        )
    return out


def tokenizer_facts(run: Run) -> dict[str, Any] | None:
    """The tokenizer (algorithm, vocabulary) and the token shards made with it (counts, bytes per token)."""
    tok, tokens = run.first("tokenizer", "tokenizer"), run.first("tokens", "tokens")
    if tok is None and tokens is None:
        return None
    out: dict[str, Any] = {}
    if tok is not None:
        s = tok.stats
        out.update(
            tokenizer=tok.rel,
            algorithm=s.get("algorithm"),
            vocab_size=s.get("vocab_size"),
            requested_vocab_size=s.get("requested_vocab_size"),
            sample_bytes=s.get("sample_bytes"),
            sample_documents=s.get("sample_documents"),
        )
    if tokens is not None:
        s = tokens.stats
        counts = s.get("tokens") or {}
        out.update(
            tokens=tokens.rel,
            train_tokens=counts.get("train"),
            val_tokens=counts.get("val"),
            documents=s.get("documents"),
            bytes=s.get("bytes"),
            bytes_per_token=s.get("bytes_per_token"),
            dtype=s.get("dtype"),
            tokens_vocab_size=s.get("vocab_size"),
        )
    out["source"] = ", ".join(f"{a.rel}/manifest.json" for a in (tok, tokens) if a is not None)
    return out


# ------------------------------------------------------------------------------------- the model


def parameter_count(folder: Path) -> int | None:
    """Parameters stored in a checkpoint's safetensors files, counted from their headers (8-byte little-endian
    header length, then JSON: tensor → shape), so no weights are read and torch is not needed. Tied weights
    are stored once, so each parameter counts once. None when there is no safetensors file."""
    files = [f for f in sorted(folder.glob("*.safetensors")) if not f.name.startswith("adapter_")]
    if not files:
        return None
    total = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length))
        except (OSError, ValueError, struct.error):
            return None
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


_ARCH_KEYS = {
    "model_type": "model type",
    "architectures": "architectures",
    "num_hidden_layers": "layers",
    "n_layer": "layers",
    "hidden_size": "hidden size",
    "n_embd": "hidden size",
    "num_attention_heads": "attention heads",
    "n_head": "attention heads",
    "num_key_value_heads": "key/value heads",
    "intermediate_size": "feed-forward size",
    "n_inner": "feed-forward size",
    "vocab_size": "vocabulary",
    "max_position_embeddings": "context length",
    "n_positions": "context length",
    "tie_word_embeddings": "tied embeddings",
    "torch_dtype": "weights dtype",
    "dtype": "weights dtype",
}


def architecture_facts(ckpt: Artifact) -> dict[str, Any]:
    """The checkpoint's config.json (the fields a reader needs), its parameter count and its variant."""
    config = read_json(ckpt.path / "config.json") or {}
    fields: dict[str, Any] = {}
    for key, label in _ARCH_KEYS.items():
        if key in config and label not in fields:
            value = config[key]
            fields[label] = ", ".join(value) if isinstance(value, list) else value
    adapter = read_json(ckpt.path / "adapter_config.json")
    return {
        "config": fields,
        "model_type": config.get("model_type"),
        "parameters": parameter_count(ckpt.path),
        "adapter": None
        if adapter is None
        else {
            k: adapter.get(k)
            for k in ("peft_type", "r", "lora_alpha", "target_modules", "base_model_name_or_path")
        },
        "source": f"{ckpt.rel}/config.json, *.safetensors headers",
    }


# ---------------------------------------------------------------------------------- pretraining


def pretrain_facts(run: Run) -> dict[str, Any] | None:
    """reports/pretrain/results.json: losses, size, throughput, device; and the validation curve from
    metrics.jsonl."""
    a = run.at("reports/pretrain")
    if a is None and not run.pretrain_checkpoints:
        return None
    results = (a.json("results.json") if a else None) or {}
    val = [
        {"step": r["step"], "val_loss": r["val_loss"]} for r in run.metrics if "val_loss" in r and "step" in r
    ]
    train = [r for r in run.metrics if "loss" in r and "step" in r]
    keys = (
        "objective",
        "final_val_loss",
        "unigram_entropy",
        "params",
        "non_embedding_params",
        "tokens_seen",
        "steps",
        "tokens_per_s",
        "mfu",
        "device",
        "peak_flops",
        "processes",
        "strategy",
        "precision",
        "completed",
    )
    last = run.pretrain_checkpoints[-1].stats if run.pretrain_checkpoints else {}
    if not results:  # interrupted (no report yet): what the last checkpoint recorded
        results = {
            "steps": last.get("step"),
            "tokens_seen": last.get("tokens_seen"),
            "final_val_loss": last.get("val_loss"),
        }
    return {
        "report": a.rel if a else None,
        "note": None
        if a
        else "pretraining has no report (reports/pretrain): stopped before its last step, or still running; "
        "throughput, device and FLOPs per token are not recorded",
        "source": f"{a.rel}/results.json" if a else "checkpoints/*/manifest.json",
        **{k: results.get(k) for k in keys},
        "train_flops_per_token": flops_per_token(results.get("flops_per_token")),
        "spike_events": len(results["spike_events"])
        if isinstance(results.get("spike_events"), list)
        else None,
        "checkpoints": [
            {
                "step": c.stats.get("step"),
                "tokens_seen": c.stats.get("tokens_seen"),
                "val_loss": c.stats.get("val_loss"),
                "path": c.rel,
            }
            for c in run.pretrain_checkpoints
        ],
        "val_curve": val,
        "first_train_loss": train[0]["loss"] if train else None,
        "last_train_loss": train[-1]["loss"] if train else None,
        "loss_png": f"{a.rel}/loss.png" if a and (a.path / "loss.png").is_file() else None,
    }


def flops_per_token(value: Any) -> float | None:
    """Training (forward + backward) FLOPs per token as pretrain recorded it: a number, or the architecture
    registry's breakdown whose `train` entry is the total (PaLM, Chowdhery et al. 2022, App. B)."""
    if isinstance(value, dict):
        value = value.get("train")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Compute:
    """Pretraining compute up to one checkpoint.

    flops = train FLOPs per token × tokens seen (the 6N + attention count of Kaplan et al. 2020 / PaLM App. B).
    seconds = tokens seen / the run's measured training throughput (tokens/s, all processes): training steps
    only, without validation or checkpoint writes, so the wall clock was longer.
    device_hours = seconds × processes / 3600 (GPU-hours when the device is a GPU)."""

    step: int | None
    tokens: int | None
    flops: float | None
    seconds: float | None
    device: str | None
    processes: int | None
    device_hours: float | None
    gpu: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_facts(run: Run, chain: list[Artifact]) -> Compute | None:
    """Pretraining compute of the pretrained ancestor of the card's checkpoint (at its step)."""
    base = next((c for c in chain if c in run.pretrain_checkpoints), None)
    pre = pretrain_facts(run)
    if base is None or pre is None:
        return None
    tokens = base.stats.get("tokens_seen")
    per_token, rate = pre["train_flops_per_token"], pre["tokens_per_s"]
    flops = per_token * tokens if per_token and isinstance(tokens, int) else None
    seconds = (
        tokens / rate if isinstance(tokens, int) and isinstance(rate, (int, float)) and rate > 0 else None
    )
    processes = pre["processes"] if isinstance(pre["processes"], int) else None
    device = pre["device"]
    gpu = bool(device) and not str(device).lower().startswith("cpu")
    hours = seconds * processes / 3600 if seconds is not None and processes else None
    return Compute(
        step=base.stats.get("step"),
        tokens=tokens,
        flops=flops,
        seconds=seconds,
        device=device,
        processes=processes,
        device_hours=hours,
        gpu=gpu,
        source=f"{base.rel}/manifest.json (tokens_seen), {pre['source']} (flops_per_token, tokens_per_s, device)",
    )


# ------------------------------------------------------------------------------ fine-tuning, RLHF


_FINETUNE_KEYS = (
    "task",
    "method",
    "steps",
    "first_val_loss",
    "val_loss",
    "best_val_loss",
    "first_train_loss",
    "last_train_loss",
    "trainable_params",
    "total_params",
    "chat_template",
    "seconds",
    "train_runtime_s",
    "tokens_per_s",
    "accuracy",
    "macro_f1",
)


def finetune_facts(run: Run) -> list[dict[str, Any]]:
    out = []
    for a in run.reports("finetune"):
        results = a.json("results.json") or {}
        train, val = results.get("train") or {}, results.get("val") or {}
        out.append(
            {
                "report": a.rel,
                "source": f"{a.rel}/results.json",
                "checkpoint": run.relative(
                    results.get("checkpoint") or (run.report_model(a) or {}).get("path", "")
                ),
                **{k: results[k] for k in _FINETUNE_KEYS if k in results},
                "train_examples": train.get("kept"),
                "train_examples_read": train.get("examples"),
                "trained_tokens": train.get("trained_tokens"),
                "val_examples": val.get("kept"),
                "datasets": _finetune_datasets(results),
                "pngs": [f"{a.rel}/{p.name}" for p in sorted(a.path.glob("*.png"))],
            }
        )
    return out


def _finetune_datasets(results: dict[str, Any]) -> list[str]:
    """The instruction files a fine-tune read (results.json `data`: one entry per source, with its path)."""
    data = results.get("data") or []
    if isinstance(data, dict):
        data = list(data.values())
    return [str(x.get("path") or x.get("name")) for x in data if isinstance(x, dict)]


def _scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            out[prefix + k] = v
    return out


def rlhf_facts(run: Run) -> list[dict[str, Any]]:
    """Each RLHF trainer's report: its top-level numbers and, where it measured them, before → after."""
    out = []
    for a in run.reports("rlhf"):
        results = a.json("results.json") or {}
        before, after = results.get("before"), results.get("after")
        changes = {}
        if isinstance(before, dict) and isinstance(after, dict):
            for k in before:
                b, c = before.get(k), after.get(k)
                if _number(b) and _number(c):
                    changes[k] = [b, c]
        nested = {}
        for key in ("val", "pairs"):
            if isinstance(results.get(key), dict):
                nested.update(_scalars(results[key], f"{key}."))
        out.append(
            {
                "trainer": trainer_name(a.rel),
                "report": a.rel,
                "source": f"{a.rel}/results.json",
                "checkpoint": run.relative((run.report_model(a) or {}).get("path", "")),
                "numbers": {**_scalars(results), **nested},
                "before_after": changes,
                "pngs": [f"{a.rel}/{p.name}" for p in sorted(a.path.glob("*.png"))],
            }
        )
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------ evaluation


@dataclass
class EvalRow:
    """One metric of one task from an lm-eval style results.json (`"<metric>,<filter>"` keys, stderr under
    `"<metric>_stderr,<filter>"`)."""

    task: str
    alias: str
    metric: str
    filter: str
    value: float
    stderr: float | None
    n: int | None
    num_fewshot: int | None
    higher_is_better: bool | None
    limit: int | float | None
    report: str


def eval_rows(results: dict[str, Any], report: str) -> list[EvalRow]:
    rows = []
    n_samples = results.get("n-samples") or {}
    n_shot = results.get("n-shot") or {}
    better = results.get("higher_is_better") or {}
    limit = (results.get("llmforge") or {}).get("limit", results.get("config", {}).get("limit"))
    for task, values in (results.get("results") or {}).items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if "," not in key or "_stderr," in key or not _number(value):
                continue
            metric, filt = key.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filt}")
            samples = n_samples.get(task) or {}
            rows.append(
                EvalRow(
                    task=task,
                    alias=str(values.get("alias") or task).strip(),
                    metric=metric,
                    filter=filt,
                    value=float(value),
                    stderr=float(stderr) if _number(stderr) and math.isfinite(stderr) else None,
                    n=samples.get("effective") if isinstance(samples, dict) else None,
                    num_fewshot=n_shot.get(task) if _number(n_shot.get(task)) else None,
                    higher_is_better=(better.get(task) or {}).get(metric),
                    limit=limit if _number(limit) else None,
                    report=report,
                )
            )
    return rows


def evals_for(run: Run, ckpt: Artifact, role: str) -> list[EvalRow]:
    """The checkpoint's metrics from its lm-eval (`eval`) or perplexity reports; when two reports measured one
    task, the newer one's numbers."""
    by_task: dict[str, list[EvalRow]] = {}
    for a in run.reports_for(role, ckpt):  # oldest first: later reports replace a task's rows
        rows = eval_rows(a.json("results.json") or {}, a.rel)
        for task in {r.task for r in rows}:
            by_task[task] = [r for r in rows if r.task == task]
    return [r for rows in by_task.values() for r in rows]


def task_configs(run: Run, rows: list[EvalRow]) -> dict[str, dict[str, Any]]:
    """lm-eval's config of each task in these rows (dataset path/name, split), from the reports they came from."""
    out: dict[str, dict[str, Any]] = {}
    for report in {r.report for r in rows}:
        results = read_json(run.root / report / "results.json") or {}
        for task, cfg in (results.get("configs") or {}).items():
            if isinstance(cfg, dict):
                out[task] = cfg
    return out


def eval_table(run: Run) -> list[dict[str, Any]]:
    """Every checkpoint's lm-eval and perplexity numbers (the report card's evaluation table)."""
    rows = []
    for role in ("perplexity", "eval"):
        for a in run.reports(role):
            model = (run.report_model(a) or {}).get("path", "")
            for r in eval_rows(a.json("results.json") or {}, a.rel):
                rows.append({"model": run.relative(model), "kind": role, **asdict(r)})
    return rows


# ------------------------------------------------------------------------------------- bias, tax


def bias_facts(run: Run, ckpt: Artifact | None) -> list[dict[str, Any]]:
    """Bias reports (results.json: {"model", "probes": {name: {metrics, groups, intervals, ideal, caveats}}});
    for a checkpoint only the reports about it."""
    reports = run.reports("bias") if ckpt is None else run.reports_for("bias", ckpt)
    out = []
    for a in reports:
        results = a.json("results.json") or {}
        probes = []
        for name, p in (results.get("probes") or {}).items():
            if not isinstance(p, dict):
                continue
            probes.append(
                {
                    "name": name,
                    "metrics": {k: v for k, v in (p.get("metrics") or {}).items() if _number(v)},
                    "intervals": p.get("intervals") or {},
                    "ideal": p.get("ideal") or {},
                    "n_items": p.get("n_items"),
                    "groups": [g for g in p.get("groups") or [] if isinstance(g, dict)],
                    "caveats": [str(c) for c in p.get("caveats") or []],
                }
            )
        out.append(
            {
                "report": a.rel,
                "source": f"{a.rel}/results.json",
                "model": run.relative(results.get("model") or ""),
                "steer": results.get("steer"),
                "probes": probes,
                "caveats": [str(c) for c in results.get("caveats") or []],
                "skipped": {str(k): str(v) for k, v in (results.get("skipped") or {}).items()},
                "pngs": [run.relative(p) for p in sorted(a.path.rglob("*.png"))],
            }
        )
    return out


def tax_facts(run: Run, ckpt: Artifact | None) -> list[dict[str, Any]]:
    """Alignment-tax reports (report.json rows: before, after, delta with its 95% CI, verdict); for a
    checkpoint, those whose after-model it is."""
    out = []
    for a in run.reports("tax"):
        report = a.json("report.json") or {}
        if ckpt is not None and not run.names(ckpt, report.get("after")):
            continue
        out.append(
            {
                "report": a.rel,
                "source": f"{a.rel}/report.json",
                "before": run.relative(report.get("before", "")),
                "after": run.relative(report.get("after", "")),
                "limit": report.get("limit"),
                "rows": [r for r in report.get("rows") or [] if isinstance(r, dict)],
                "summary": report.get("summary") or {},
                "png": f"{a.rel}/tax.png" if (a.path / "tax.png").is_file() else None,
            }
        )
    return out

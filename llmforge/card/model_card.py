"""The model card of one checkpoint of a run: Hugging Face YAML metadata (validated as `ModelCardData`, with a
`model-index` built from the checkpoint's lm-eval results) and the sections of Mitchell et al. 2019, "Model Cards
for Model Reporting" (model details, intended use, factors, metrics, evaluation data, training data, quantitative
analyses, ethical considerations, caveats and recommendations).

Every number comes from the run's files (card/facts.py) and names its source; what only a person can know (who
made the model, what it is for, what it must not be used for) is left as a marked TODO, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llmforge import __version__
from llmforge.card import emissions as co2
from llmforge.card import facts as f
from llmforge.card.md import PERSON, big, ci, classifier_line, kv, num, person, table
from llmforge.card.run import Artifact, Run

TASK_TYPE = "text-generation"  # the Hub's task id for a causal LM's benchmark results


@dataclass
class CardOptions:
    license: str | None = None
    gpu_watts: float | None = None
    pue: float = 1.0
    grid_intensity: float | None = None


@dataclass
class CardFacts:
    """What the card says, gathered once (also what `--json` prints)."""

    run: Run
    ckpt: Artifact
    chain: list[Artifact]
    arch: dict[str, Any]
    data: dict[str, Any] | None
    tokenizer: dict[str, Any] | None
    pretrain: dict[str, Any] | None
    compute: f.Compute | None
    emissions: co2.Emissions | None
    emissions_note: str
    finetune: list[dict[str, Any]]
    rlhf: list[dict[str, Any]]
    evals: list[f.EvalRow]
    perplexity: list[f.EvalRow]
    bias: list[dict[str, Any]]
    tax: list[dict[str, Any]]
    license: str
    license_todo: bool
    classifiers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self.run.stage_of(self.ckpt)

    @property
    def model_name(self) -> str:
        step = self.ckpt.path.name if self.stage == "pretrain" else self.stage.removeprefix("rlhf-")
        return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{self.run.name}-{step}").strip("-")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "run": str(self.run.root),
            "checkpoint": self.ckpt.rel,
            "stage": self.stage,
            "lineage": [c.rel for c in self.chain],
            "model_name": self.model_name,
            "architecture": self.arch,
            "data": self.data,
            "tokenizer": self.tokenizer,
            "pretrain": self.pretrain,
            "compute": self.compute.to_dict() if self.compute else None,
            "co2_eq_emissions": self.emissions.to_dict() if self.emissions else None,
            "co2_note": self.emissions_note,
            "finetune": self.finetune,
            "rlhf": self.rlhf,
            "eval": [asdict(r) for r in self.evals],
            "perplexity": [asdict(r) for r in self.perplexity],
            "bias": self.bias,
            "tax": self.tax,
            "license": self.license,
        }


def gather(run: Run, ckpt: Artifact, opts: CardOptions) -> CardFacts:
    chain = run.ancestry(ckpt)
    compute = f.compute_facts(run, chain)
    hours = compute.device_hours if compute and compute.gpu else None
    est, note = co2.estimate(
        hours,
        compute.device if compute else None,
        gpu_watts=opts.gpu_watts,
        pue=opts.pue,
        grid_g_per_kwh=opts.grid_intensity,
    )
    in_chain = {c.rel for c in chain} | {h.rel for c in chain for h in run.helpers(c)}
    license_, todo = _license(run, opts)
    return CardFacts(
        run=run,
        ckpt=ckpt,
        chain=chain,
        arch=f.architecture_facts(ckpt),
        data=f.data_facts(run),
        tokenizer=f.tokenizer_facts(run),
        pretrain=f.pretrain_facts(run),
        compute=compute,
        emissions=est,
        emissions_note=note,
        finetune=[x for x in f.finetune_facts(run) if x["checkpoint"] in in_chain],
        rlhf=[x for x in f.rlhf_facts(run) if x["checkpoint"] in in_chain],
        evals=f.evals_for(run, ckpt, "eval"),
        perplexity=f.evals_for(run, ckpt, "perplexity"),
        bias=f.bias_facts(run, ckpt),
        tax=f.tax_facts(run, ckpt),
        license=license_,
        license_todo=todo,
        classifiers=f.classifier_facts(run),
    )


def _license(run: Run, opts: CardOptions) -> tuple[str, bool]:
    """(license, whether a person must still choose it): --license, else the recipe's `card.license`, else
    "other" with a TODO."""
    given = opts.license or (run.recipe.get("card") or {}).get("license")
    return (str(given), False) if given else ("other", True)


# ------------------------------------------------------------------------------------ metadata


def metadata(c: CardFacts) -> Any:
    """The card's YAML metadata as huggingface_hub's `ModelCardData` (which builds and checks the model-index)."""
    from huggingface_hub import EvalResult, ModelCardData

    configs = f.task_configs(c.run, c.evals)
    results = [
        EvalResult(
            task_type=TASK_TYPE,
            dataset_type=r.task,
            dataset_name=r.alias,
            dataset_split=_split(configs.get(r.task, {})),
            dataset_args={"num_few_shot": r.num_fewshot} if r.num_fewshot is not None else None,
            metric_type=r.metric,
            metric_name=r.metric if r.filter == "none" else f"{r.metric} ({r.filter})",
            metric_value=r.value,
        )
        for r in c.evals
    ]
    extra: dict[str, Any] = {}
    if c.emissions is not None:
        e = c.emissions
        extra["co2_eq_emissions"] = {
            "emissions": round(e.grams, 3),
            "source": f"llmforge card estimate (Lacoste et al. 2019): {e.grid_source}; power: {e.watts_source}",
            "training_type": "pre-training",
            "hardware_used": f"{c.compute.processes} × {e.device}" if c.compute else e.device,
        }
    base = c.chain[1] if len(c.chain) > 1 else None
    return ModelCardData(
        model_name=c.model_name,
        eval_results=results or None,
        datasets=hub_ids(c) or None,
        base_model=c.run.relative(base.path) if base is not None else None,
        license=c.license,
        library_name="transformers",
        pipeline_tag="text-classification" if c.run.is_reward_model(c.ckpt) else "text-generation",
        tags=_tags(c),
        **extra,
    )


def hub_ids(c: CardFacts) -> list[str]:
    """Hub dataset ids the checkpoint was trained on: pretraining sources, instruction and preference files."""
    more = [p for ft in c.finetune for p in ft["datasets"]]
    for r in c.rlhf:
        data = (f.read_json(c.run.root / r["report"] / "results.json") or {}).get("data") or []
        more += [str(x.get("path")) for x in data if isinstance(x, dict) and x.get("path")]
    return f.hub_datasets(c.run, more)


def _split(config: dict[str, Any]) -> str | None:
    for key in ("test_split", "validation_split", "train_split"):
        if config.get(key):
            return str(config[key])
    return None


def _tags(c: CardFacts) -> list[str]:
    tags = ["llmforge"]
    if c.arch.get("model_type"):
        tags.append(str(c.arch["model_type"]))
    for a in reversed(c.chain):
        stage = c.run.stage_of(a)
        tags.append(
            {"pretrain": "pretrained", "finetune": "sft"}.get(
                stage, stage.removeprefix("rlhf-").split("/")[-1]
            )
        )
    if c.arch.get("adapter"):
        tags.append("lora")
    return tags


def front_matter(c: CardFacts) -> str:
    text = metadata(c).to_yaml()
    if c.license_todo:  # a YAML comment: ignored by parsers, seen by the person who publishes the card
        text = text.replace(
            "license: other",
            f"# {PERSON}: choose the license (the data's licenses bound it); set card.license in the recipe\n"
            "license: other",
            1,
        )
    return f"---\n{text.rstrip()}\n---\n"


# -------------------------------------------------------------------------------------- the body


def render(c: CardFacts) -> str:
    parts = [
        front_matter(c),
        f"\n# Model card: {c.model_name}\n",
        "Written by `llmforge card` from the run's own manifests and reports "
        f"(`{c.run.root}`); each section names the files its numbers come from. Blocks marked "
        f"**{PERSON}** need someone who knows why the model was made.\n",
        _details(c),
        _intended_use(c),
        _factors(c),
        _metrics(c),
        _evaluation_data(c),
        _training_data(c),
        _training_procedure(c),
        _quantitative(c),
        _ethics(c),
        _caveats(c),
    ]
    return "\n".join(p.rstrip() + "\n" for p in parts if p)


def _details(c: CardFacts) -> str:
    env = c.ckpt.manifest.get("environment") or {}
    packages = env.get("packages") or {}
    rows = {
        "checkpoint": f"`{c.ckpt.rel}` ({c.stage})",
        "written": c.ckpt.created_at,
        "developed by": PERSON,
        "model type": f"causal language model, {c.arch['config'].get('architectures') or c.arch.get('model_type') or 'see config.json'}",
        "parameters": c.arch["parameters"],
        "license": f"{c.license} ({PERSON}: choose one)" if c.license_todo else c.license,
        "llmforge": f"{c.ckpt.manifest.get('llmforge_version', __version__)} (git {str(env.get('git_commit') or '—')[:12]})",
        "libraries": ", ".join(
            f"{k} {v}" for k, v in packages.items() if k in ("torch", "transformers", "trl", "peft")
        ),
        "content hash": f"`{c.ckpt.content_hash}`" if c.ckpt.content_hash else None,
    }
    arch = kv(c.arch["config"])
    lineage = table(
        ("stage", "checkpoint", "written", "recorded"),
        [(c.run.stage_of(a), f"`{a.rel}`", a.created_at, _stats_line(a)) for a in reversed(c.chain)],
    )
    helpers = [(a, h) for a in c.chain for h in c.run.helpers(a)]
    if helpers:
        lineage += "".join(
            f"\n`{a.rel}` was trained against `{h.rel}` ({c.run.stage_of(h)}; {_stats_line(h) or 'no stats'}).\n"
            for a, h in helpers
        )
    adapter = ""
    if c.arch.get("adapter"):
        adapter = "LoRA adapter (peft):\n\n" + kv(
            {k: str(v) for k, v in c.arch["adapter"].items() if v is not None}
        )
    base = c.chain[1] if len(c.chain) > 1 else None
    base_note = (
        f"\n`base_model` in the metadata names this run's checkpoint `{c.run.relative(base.path)}`; give it the "
        "Hub id of that model when both are published.\n"
        if base is not None
        else ""
    )
    return (
        "## Model details\n\n"
        + kv(rows)
        + f"\nArchitecture (`{c.ckpt.rel}/config.json`; parameters counted from the safetensors headers):\n\n"
        + arch
        + adapter
        + "\nHow it was made (each checkpoint trained from the one above it):\n\n"
        + lineage
        + base_note
        + "\n"
        + person("citation, contact, and the people or organisation responsible for the model.")
    )


def _stats_line(a: Artifact) -> str:
    keep = (
        "step",
        "tokens_seen",
        "val_loss",
        "method",
        "steps",
        "best_val_loss",
        "val_reward_accuracy",
        "val_accuracy",
    )
    return ", ".join(
        f"{k} {num(a.stats[k])}" for k in keep if k in a.stats and not isinstance(a.stats[k], dict)
    )


def _intended_use(c: CardFacts) -> str:
    ctx = c.arch["config"].get("context length")
    known = (
        f"What the records do say: a {big(c.arch['parameters'])}-parameter model"
        + (f" with a {num(ctx)}-token context" if ctx else "")
        + (f", pretrained on {big(c.compute.tokens)} tokens" if c.compute and c.compute.tokens else "")
        + (f" of {', '.join(s['name'] for s in c.data['sources'])}" if c.data and c.data["sources"] else "")
        + ".\n"
    )
    return (
        "## Intended use\n\n"
        + person("the primary intended uses and users (research, teaching, a product?), and in what setting.")
        + "\n### Out-of-scope use\n\n"
        + person("uses the model must not be put to, and uses it was not evaluated for.")
        + "\n"
        + known
    )


def _factors(c: CardFacts) -> str:
    groups = sorted({g.get("group", "") for b in c.bias for p in b["probes"] for g in p["groups"]} - {""})
    if groups:
        where = ", ".join("`" + b["report"] + "`" for b in c.bias)
        measured = f"Groups the bias probes measured ({where}): " + ", ".join(groups) + ".\n"
    else:
        measured = (
            "No bias probe was run for this checkpoint, so no demographic or other group was measured.\n"
        )
    return (
        "## Factors\n\n"
        + measured
        + "\n"
        + person(
            "the factors (groups, languages, domains, instrumentation) across which performance may vary."
        )
    )


_METRIC_NOTES = {
    "acc": "accuracy: the fraction of items whose highest log-likelihood choice is the correct one (lm-eval)",
    "acc_norm": "accuracy with each choice's log-likelihood divided by its length in characters (lm-eval)",
    "perplexity": "exp(mean negative log-likelihood per token) on held-out tokens; lower is better",
    "bits_per_byte": "negative log-likelihood in bits per byte of text, comparable across tokenizers; lower is better",
    "nll_per_token": "mean negative log-likelihood per token (nats); lower is better",
}


def _metrics(c: CardFacts) -> str:
    names = sorted({r.metric for r in c.evals + c.perplexity})
    lines = [f"- `{m}`: {_METRIC_NOTES.get(m, 'as the task defines it (see the report)')}" for m in names]
    for b in c.bias:
        for p in b["probes"]:
            lines += [
                f"- `{p['name']}.{m}` (bias probe; unbiased value {num(p['ideal'].get(m))})"
                for m in p["metrics"]
            ]
    if not lines:
        return "## Metrics\n\nNo evaluation of this checkpoint was found in the run (`llmforge eval run`, `eval perplexity`).\n"
    return (
        "## Metrics\n\n"
        + "\n".join(lines)
        + "\n\nUncertainty: ± is the standard error lm-eval reports for a task metric; bias metrics carry the 95% "
        "interval their probe computed; the alignment tax's interval is a paired bootstrap (or ±1.96·se) of the "
        "change.\n"
    )


def _evaluation_data(c: CardFacts) -> str:
    out = ["## Evaluation data\n"]
    configs = f.task_configs(c.run, c.evals)
    tasks = {r.task: r for r in c.evals}
    if tasks:
        rows = []
        for task, r in tasks.items():
            results = f.read_json(c.run.root / r.report / "results.json") or {}
            samples = (results.get("n-samples") or {}).get(task) or {}
            data_dir = (results.get("llmforge") or {}).get("data_dir")
            rows.append(
                (
                    task,
                    _split(configs.get(task, {})) or "—",
                    samples.get("effective"),
                    samples.get("original"),
                    r.num_fewshot,
                    data_dir or "lm-eval default",
                    f"`{r.report}`",
                )
            )
        out.append(
            table(("task", "split", "items used", "items in split", "few-shot", "data", "report"), rows)
        )
    for r in {x.report: x for x in c.perplexity}.values():
        results = f.read_json(c.run.root / r.report / "results.json") or {}
        cfg = results.get("config") or {}
        out.append(
            f"Perplexity (`{r.report}`): {num(cfg.get('tokens'))} tokens ({num(cfg.get('bytes'))} bytes) of "
            f"`{r.task}`, window {num(cfg.get('window'))}, stride {num(cfg.get('stride'))}: the run's own held-out "
            "split, from the same sources as the training data (in-distribution).\n"
        )
    for b in c.bias:
        out.append(
            f"Bias probes (`{b['report']}`): "
            + ", ".join(f"{p['name']} ({num(p['n_items'])} items)" for p in b["probes"])
            + ".\n"
        )
    if len(out) == 1:
        out.append("No evaluation of this checkpoint was found in the run.\n")
    return "\n".join(out)


def _training_data(c: CardFacts) -> str:
    out = ["## Training data\n"]
    ids = hub_ids(c)
    out.append(
        f"Hub datasets (the metadata's `datasets`): {', '.join(ids)}.\n"
        if ids
        else "No source is a Hugging Face hub dataset, so the metadata has no `datasets`; the local sources follow.\n"
    )
    d = c.data
    if d is None:
        out.append("No `dataset` artifact in the run: the pretraining data is not recorded here.\n")
    else:
        out.append(f"Sources (`{d['source']}`):\n")
        out.append(
            table(
                ("source", "type", "path", "docs in", "docs kept", "bytes kept", "share of bytes"),
                [
                    (
                        s["name"],
                        s["type"],
                        str(s.get("path") or "—"),
                        s.get("docs_in"),
                        s.get("docs_out"),
                        s.get("bytes_out"),
                        (d["mixture_bytes_fraction"] or {}).get(s["name"]),
                    )
                    for s in d["sources"]
                ],
            )
        )
        out.append(
            f"\nFiltering funnel: {num(d['docs_in'])} documents ({num(d['bytes_in'])} bytes) in, {num(d['docs_out'])} ({num(d['bytes_out'])} bytes) kept.\n"
        )
        out.append(funnel_table(d))
    for q in c.classifiers:
        out.append(classifier_line(q))
    t = c.tokenizer
    if t is not None:
        out.append(
            f"Tokenizer (`{t['source']}`): {t.get('algorithm') or '—'}, vocabulary {num(t.get('vocab_size'))}; "
            f"{num(t.get('bytes_per_token'))} bytes per token on the training data; "
            f"{num(t.get('train_tokens'))} train and {num(t.get('val_tokens'))} validation tokens.\n"
        )
    for ft in c.finetune:
        out.append(
            f"Instruction tuning (`{ft['source']}`): {num(ft.get('train_examples'))} training examples "
            f"({num(ft.get('trained_tokens'))} trained tokens), {num(ft.get('val_examples'))} held out; from "
            + (", ".join(f"`{p}`" for p in ft["datasets"]) or "—")
            + ".\n"
        )
    for r in c.rlhf:
        data = (f.read_json(c.run.root / r["report"] / "results.json") or {}).get("data") or []
        files = [str(x.get("path")) for x in data if isinstance(x, dict)]
        pairs = r["numbers"]
        out.append(
            f"{r['trainer']} (`{r['source']}`): "
            + (
                f"{num(pairs.get('pairs.train_kept'))} training pairs, {num(pairs.get('pairs.val_kept'))} held out; "
                if "pairs.train_kept" in pairs
                else ""
            )
            + ("from " + ", ".join(f"`{p}`" for p in files) if files else "data as recorded in the report")
            + ".\n"
        )
    return "\n".join(out)


def funnel_table(d: dict[str, Any]) -> str:
    return table(
        ("step", "docs in", "docs out", "bytes out", "dropped (reason: docs)", "other counts"),
        [
            (
                s["step"],
                s["docs_in"],
                s["docs_out"],
                s["bytes_out"],
                ", ".join(f"{k}: {num(v)}" for k, v in s["dropped"].items()) or "—",
                ", ".join(f"{k}: {num(v)}" for k, v in s["other"].items()) or "—",
            )
            for s in d["steps"]
        ],
    )


def _training_procedure(c: CardFacts) -> str:
    out = ["## Training procedure and compute\n"]
    p, comp = c.pretrain, c.compute
    if p is not None and comp is not None:
        out.append(
            f"Pretraining (`{p['source']}`), up to step {num(comp.step)} of this checkpoint's lineage:\n"
        )
        out.append(
            kv(
                {
                    "objective": p.get("objective"),
                    "tokens trained": comp.tokens,
                    "training FLOPs": comp.flops,
                    "FLOPs per token (forward + backward)": p.get("train_flops_per_token"),
                    "precision": p.get("precision"),
                    "processes × device": f"{num(p.get('processes'))} × {p['device']}"
                    if p.get("device")
                    else None,
                    "strategy": p.get("strategy"),
                    "throughput (tokens/s)": p.get("tokens_per_s"),
                    "MFU": p.get("mfu"),
                    "training time (tokens / throughput, s)": comp.seconds,
                    "GPU-hours" if comp.gpu else "device-hours (CPU)": comp.device_hours,
                    "final validation loss (run)": p.get("final_val_loss"),
                    "unigram entropy of the data": p.get("unigram_entropy"),
                }
            )
        )
        if p.get("note"):
            out.append(f"\nNote: {p['note']}.\n")
        out.append(
            "\nFLOPs = FLOPs per token × tokens (PaLM, Chowdhery et al. 2022, App. B: 6N plus attention). "
            "Training time counts optimizer steps only (no validation or checkpoint writes).\n"
        )
    elif p is None:
        out.append("No pretraining record (reports/pretrain, checkpoints/step-*) in the run.\n")
    out.append("### Environmental impact\n")
    out.append(
        "Formula (Lacoste et al. 2019): g CO2eq = GPU-hours × board power (kW) × PUE × grid intensity "
        f"(g CO2eq/kWh); grid intensity assumed {num(c.emissions.grid_g_per_kwh) if c.emissions else num(co2.DEFAULT_GRID_G_PER_KWH)} "
        f"({c.emissions.grid_source if c.emissions else co2.GRID_SOURCE}) unless `--grid-intensity` is given. "
        f"This checkpoint: {c.emissions_note}. Fine-tuning and evaluation are not included.\n"
    )
    for ft in c.finetune:
        out.append(
            f"Instruction tuning (`{ft['source']}`): {ft.get('method')}, {num(ft.get('steps'))} steps, "
            f"{num(ft.get('trainable_params'))} of {num(ft.get('total_params'))} parameters trained, "
            f"{num(ft.get('train_runtime_s'))} s of training.\n"
        )
    for r in c.rlhf:
        n = r["numbers"]
        out.append(
            f"{r['trainer']} (`{r['source']}`): {num(n.get('steps'))} steps, {num(n.get('train_runtime_s') or n.get('seconds'))} s.\n"
        )
    return "\n".join(out)


def _quantitative(c: CardFacts) -> str:
    out = ["## Quantitative analyses\n"]
    if c.evals:
        out.append(f"Benchmarks of `{c.ckpt.rel}` (lm-eval):\n")
        out.append(eval_table(c.evals))
    if c.perplexity:
        out.append("\nHeld-out perplexity:\n")
        out.append(eval_table(c.perplexity))
    for b in c.bias:
        out.append(bias_section(b))
    for t in c.tax:
        out.append(tax_section(t))
    curve = [x for x in (c.pretrain or {}).get("checkpoints", []) if x.get("val_loss") is not None]
    if curve:
        out.append("\nPretraining validation loss by checkpoint (`checkpoints/*/manifest.json`):\n")
        out.append(
            table(
                ("checkpoint", "step", "tokens", "val loss"),
                [(f"`{x['path']}`", x["step"], x["tokens_seen"], x["val_loss"]) for x in curve],
            )
        )
    if len(out) == 1:
        out.append("No quantitative evaluation of this checkpoint was found in the run.\n")
    return "\n".join(out)


def eval_table(rows: list[f.EvalRow]) -> str:
    return table(
        ("task", "metric", "value", "± stderr", "items", "few-shot", "report"),
        [
            (
                r.task,
                r.metric if r.filter == "none" else f"{r.metric} ({r.filter})",
                r.value,
                r.stderr,
                r.n,
                r.num_fewshot,
                f"`{r.report}`",
            )
            for r in rows
        ],
    )


def bias_section(b: dict[str, Any]) -> str:
    out = [f"\nBias probes (`{b['source']}`):\n"]
    rows = []
    for p in b["probes"]:
        for m, v in p["metrics"].items():
            lo_hi = p["intervals"].get(m) or [None, None]
            rows.append((p["name"], m, v, ci(*lo_hi[:2]), p["ideal"].get(m), p["n_items"]))
    out.append(table(("probe", "metric", "value", "95% interval", "unbiased value", "items"), rows))
    for p in b["probes"]:
        if p["groups"]:
            out.append(f"\n{p['name']} by group:\n")
            out.append(
                table(
                    ("group", "metric", "value", "95% interval", "unbiased value", "items"),
                    [
                        (
                            g.get("group"),
                            g.get("metric"),
                            g.get("value"),
                            ci(g.get("ci_low"), g.get("ci_high")),
                            g.get("ideal"),
                            g.get("n"),
                        )
                        for g in p["groups"]
                    ],
                )
            )
    return "\n".join(out)


def tax_section(t: dict[str, Any]) -> str:
    return (
        f"\nAlignment tax, `{t['before']}` → `{t['after']}` (`{t['source']}`, {num(t.get('limit'))} items per task):\n\n"
        + table(
            ("task", "metric", "before", "after", "delta", "95% interval", "method", "verdict"),
            [
                (
                    r.get("task"),
                    r.get("metric"),
                    r.get("before"),
                    r.get("after"),
                    r.get("delta"),
                    ci(r.get("ci_low"), r.get("ci_high")),
                    r.get("ci_method"),
                    r.get("verdict"),
                )
                for r in t["rows"]
            ],
        )
    )


def _ethics(c: CardFacts) -> str:
    facts_ = []
    if c.data is not None:
        steps = c.data["steps"]
        pii = [s for s in steps if str(s["step"]).endswith(".pii")]
        redactions = {k: v for s in pii for k, v in s["other"].items() if k.startswith("redacted")}
        if pii:
            counts = (
                ", ".join(f"{k.removeprefix('redacted_')} ×{num(v)}" for k, v in redactions.items())
                or "nothing"
            )
            facts_.append(
                f"Personal data: the data pipeline's PII step replaced {counts} with placeholders (regular "
                "expressions for e-mails, IP addresses and the like: other personal data is not found)."
            )
        else:
            facts_.append("Personal data: no PII-redaction step ran on the training data.")
        decon = [s for s in steps if str(s["step"]).endswith(".decontaminate")]
        facts_.append(
            "Contamination: a decontamination step removed "
            + f"{num(sum(sum(s['dropped'].values()) for s in decon))} documents matching evaluation items."
            if decon
            else "Contamination: no decontamination step ran, so benchmark items may be in the training data."
        )
    if not c.bias:
        facts_.append("No bias or toxicity audit (`llmforge bias`) of this checkpoint is in the run.")
    return (
        "## Ethical considerations\n\n"
        + "".join(f"- {x}\n" for x in facts_)
        + "\n"
        + person(
            "risks and harms of the model's use, sensitive data in the sources, and the mitigations taken."
        )
    )


def _caveats(c: CardFacts) -> str:
    notes = []
    for r in {x.task: x for x in c.evals}.values():
        results = f.read_json(c.run.root / r.report / "results.json") or {}
        s = (results.get("n-samples") or {}).get(r.task) or {}
        if s.get("effective") and s.get("original") and s["effective"] < s["original"]:
            notes.append(
                f"`{r.task}` was scored on {num(s['effective'])} of its {num(s['original'])} items (`--limit`): its numbers are a sample."
            )
        trunc = ((results.get("llmforge") or {}).get("truncated") or {}).get(r.task) or {}
        if trunc.get("contexts") or trunc.get("answers"):
            notes.append(
                f"`{r.task}`: {num(trunc.get('contexts'))} contexts and {num(trunc.get('answers'))} answers were longer than the {num(trunc.get('max_length'))}-token context and cut."
            )
    for b in c.bias:
        notes += [f"bias audit: {x}" for x in b["caveats"]]
        notes += [f"bias probe {name} was skipped: {why}" for name, why in b["skipped"].items()]
        for p in b["probes"]:
            notes += [f"{p['name']}: {x}" for x in p["caveats"]]
    if not c.evals:
        notes.append("No benchmark (lm-eval) result for this checkpoint is in the run.")
    return (
        "## Caveats and recommendations\n\n"
        + "".join(f"- {x}\n" for x in notes)
        + "\n"
        + person("recommendations for whoever uses the model, and what further evaluation it needs.")
    )

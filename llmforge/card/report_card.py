"""The report card of a run: one page (report.md) with every stage's numbers — the data funnel, tokenizer
compression, pretraining loss, evaluation and bias tables, fine-tuning and alignment, cost — beside copies of the
stages' own plots, written as a `report` artifact (results.json holds the same numbers). A stage the run does not
have is listed as not run, with the command that runs it; no number is made up for it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, write_json, write_manifest
from llmforge.card import emissions as co2
from llmforge.card import facts as f
from llmforge.card.md import big, classifier_line, kv, num, table
from llmforge.card.model_card import bias_section, funnel_table, tax_section
from llmforge.card.run import Run

PLOTS_DIR = "plots"


@dataclass
class Stage:
    """One row of the stage table: present or not, where, its headline, how to run it when absent."""

    name: str
    artifacts: list[str]
    headline: str
    command: str

    @property
    def present(self) -> bool:
        return bool(self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "present": self.present,
            "artifacts": self.artifacts,
            "headline": self.headline,
        }


def stages(run: Run) -> list[Stage]:
    """Every stage of the pipeline in order, found or not (DESIGN.md §1)."""
    data, tok = f.data_facts(run), f.tokenizer_facts(run)
    pre = f.pretrain_facts(run)
    rel = lambda arts: [a.rel for a in arts]  # noqa: E731
    rlhf_reports = run.reports("rlhf")
    reward = [a for a in run.rlhf_checkpoints if run.is_reward_model(a)]
    policies = [a for a in run.rlhf_checkpoints if not run.is_reward_model(a)]
    evals, ppl = run.reports("eval"), run.reports("perplexity")
    out = [
        Stage("data", [data["artifact"]] if data else [], _data_headline(data), "llmforge data build RECIPE"),
        Stage("quality classifier", rel(run.of_kind("classifier")), "", "llmforge data train-classifier"),
        Stage(
            "tokenizer",
            [tok["tokenizer"]] if tok and tok.get("tokenizer") else [],
            _tok_headline(tok),
            "llmforge tokenize train RECIPE",
        ),
        Stage(
            "tokens",
            [tok["tokens"]] if tok and tok.get("tokens") else [],
            _tokens_headline(tok),
            "llmforge tokenize encode RECIPE",
        ),
        Stage("pretrain", rel(run.pretrain_checkpoints), _pre_headline(pre), "llmforge pretrain RECIPE"),
        Stage(
            "eval perplexity",
            rel(ppl),
            f"{len(ppl)} report(s)" if ppl else "",
            "llmforge eval perplexity CKPT --tokens RUN/tokens",
        ),
        Stage(
            "eval (lm-eval)",
            rel(evals),
            f"{len(evals)} report(s)" if evals else "",
            "llmforge eval run CKPT --tasks …",
        ),
        Stage(
            "finetune",
            rel(run.finetune_checkpoints),
            _ft_headline(f.finetune_facts(run)),
            "llmforge finetune sft RECIPE",
        ),
        Stage("rlhf reward model", rel(reward), "", "llmforge rlhf reward RECIPE"),
        Stage(
            "rlhf policy",
            rel(policies),
            ", ".join(r["trainer"] for r in f.rlhf_facts(run) if r["report"] in rel(rlhf_reports)),
            "llmforge rlhf dpo|ppo|rloo|grpo RECIPE",
        ),
        Stage(
            "alignment tax",
            rel(run.reports("tax")),
            _tax_headline(f.tax_facts(run, None)),
            "llmforge rlhf tax BEFORE AFTER --tasks … --out RUN/reports/tax",
        ),
        Stage("bias", rel(run.reports("bias")), _bias_headline(f.bias_facts(run, None)), "llmforge bias …"),
    ]
    return out


def _tax_headline(tax: list[dict[str, Any]]) -> str:
    if not tax:
        return ""
    s = tax[-1]["summary"]
    return f"{num(s.get('rows'))} metrics: {num(s.get('worse'))} worse, {num(s.get('better'))} better, {num(s.get('unchanged'))} unchanged"


def _bias_headline(bias: list[dict[str, Any]]) -> str:
    if not bias:
        return ""
    return "; ".join(f"{len(b['probes'])} probe(s) on {b['model']}" for b in bias)


def _data_headline(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return f"{num(d['docs_in'])} → {num(d['docs_out'])} documents, {big(d['bytes_out'])}B kept"


def _tok_headline(t: dict[str, Any] | None) -> str:
    if not t or t.get("vocab_size") is None:
        return ""
    return f"{t.get('algorithm')}, vocabulary {num(t.get('vocab_size'))}"


def _tokens_headline(t: dict[str, Any] | None) -> str:
    if not t or t.get("train_tokens") is None:
        return ""
    return f"{big(t['train_tokens'])} train tokens, {num(t.get('bytes_per_token'))} bytes/token"


def _pre_headline(p: dict[str, Any] | None) -> str:
    if not p or p.get("steps") is None:
        return ""
    return f"{num(p['steps'])} steps, {big(p.get('tokens_seen'))} tokens, val loss {num(p.get('final_val_loss'))}"


def _ft_headline(ft: list[dict[str, Any]]) -> str:
    if not ft:
        return ""
    x = ft[-1]
    return f"{x.get('method')}, {num(x.get('steps'))} steps, val loss {num(x.get('first_val_loss'))} → {num(x.get('val_loss'))}"


# ------------------------------------------------------------------------------------------ plots


def plot_name(run: Run, png: Path) -> str:
    """`reports/pretrain/loss.png` → `reports-pretrain-loss.png`: unique, and says where it came from."""
    return run.relative(png).replace("/", "-")


def plots_by_stage(run: Run) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for png in run.pngs():
        groups.setdefault(_plot_stage(run, png), []).append(png)
    return groups


def _plot_stage(run: Run, png: Path) -> str:
    rel = run.relative(png)
    owner = next(
        (a for a in sorted(run.artifacts, key=lambda a: -len(a.rel)) if rel.startswith(a.rel + "/")), None
    )
    if owner is None:
        return {"reports/compare.png": "eval", "reports/frontier.png": "pretrain"}.get(rel, "other")
    if owner.kind == "report":
        role = run.role(owner)
        return {"perplexity": "eval", "rounds": "rlhf", "bias-part": "bias"}.get(role, role)
    return {"dataset": "data", "classifier": "data"}.get(owner.kind, owner.kind)


def _images(run: Run, pngs: list[Path]) -> str:
    return "".join(f"![{run.relative(p)}]({PLOTS_DIR}/{plot_name(run, p)})\n" for p in pngs)


# ------------------------------------------------------------------------------------------- body


def gather(run: Run, opts: Any) -> dict[str, Any]:
    """Everything the report card prints, JSON-safe (its results.json)."""
    final = run.pretrain_checkpoints[-1] if run.pretrain_checkpoints else None
    default = run.default_checkpoint()
    compute = f.compute_facts(run, [final]) if final else None
    est, note = co2.estimate(
        compute.device_hours if compute and compute.gpu else None,
        compute.device if compute else None,
        gpu_watts=opts.gpu_watts,
        pue=opts.pue,
        grid_g_per_kwh=opts.grid_intensity,
    )
    return {
        "run": str(run.root),
        "name": run.name,
        "stages": [s.to_dict() for s in stages(run)],
        "data": f.data_facts(run),
        "classifiers": f.classifier_facts(run),
        "tokenizer": f.tokenizer_facts(run),
        "pretrain": f.pretrain_facts(run),
        "compute": compute.to_dict() if compute else None,
        "co2_eq_emissions": est.to_dict() if est else None,
        "co2_note": note,
        "eval": f.eval_table(run),
        "finetune": f.finetune_facts(run),
        "rlhf": f.rlhf_facts(run),
        "tax": f.tax_facts(run, None),
        "bias": f.bias_facts(run, None),
        "seconds": stage_seconds(run),
        "default_checkpoint": default.rel if default else None,
    }


def stage_seconds(run: Run) -> dict[str, float]:
    """Wall seconds each artifact's build recorded (timings.json, stats.seconds, results' seconds)."""
    out = {}
    for a in run.artifacts:
        timings = a.json("timings.json") or {}
        results = a.json("results.json") or {}
        seconds = timings.get("seconds", a.stats.get("seconds"))
        if seconds is None:
            seconds = results.get("seconds", (results.get("llmforge") or {}).get("seconds"))
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            out[a.rel] = float(seconds)
    return out


def render(run: Run, facts: dict[str, Any]) -> str:
    plots = plots_by_stage(run)
    present = [s for s in facts["stages"] if s["present"]]
    commands = {s.name: s.command for s in stages(run)}
    lines = [
        f"# Report card: {facts['name']}\n",
        f"Run `{run.root}`; written by `llmforge report` from the run's manifests and reports. "
        f"{len(present)} of {len(facts['stages'])} stages present.\n",
        "## Stages\n",
        table(
            ("stage", "status", "artifacts", "numbers"),
            [_stage_row(s, commands[s["stage"]]) for s in facts["stages"]],
        ),
    ]
    lines += _data(run, facts, plots)
    lines += _pretrain(run, facts, plots)
    lines += _eval(run, facts, plots)
    lines += _finetune_rlhf(run, facts, plots)
    lines += _bias(run, facts, plots)
    lines += _cost(facts)
    if plots.get("other"):
        lines += ["## Other plots\n", _images(run, plots["other"])]
    return "\n".join(x.rstrip() + "\n" for x in lines if x)


def _stage_row(s: dict[str, Any], command: str) -> tuple[str, ...]:
    if not s["present"]:
        return (s["stage"], "**not run**", "—", f"run `{command}`")
    shown = ", ".join(f"`{x}`" for x in s["artifacts"][-3:]) + (" …" if len(s["artifacts"]) > 3 else "")
    return (s["stage"], "done", shown, s["headline"] or "—")


def _data(run: Run, facts: dict[str, Any], plots: dict[str, list[Path]]) -> list[str]:
    d, t = facts["data"], facts["tokenizer"]
    out = ["## Data and tokenizer\n"]
    if d is None:
        out.append("Data: not run.\n")
    else:
        mix = ", ".join(f"{k} {num(v)}" for k, v in (d["mixture_bytes_fraction"] or {}).items())
        out.append(
            f"Funnel (`{d['source']}`): {num(d['docs_in'])} documents in, {num(d['docs_out'])} kept; mixture by bytes: {mix or '—'}.\n"
        )
        out.append(funnel_table(d))
    for q in facts["classifiers"]:
        out.append(classifier_line(q))
    if t is None:
        out.append("Tokenizer: not run.\n")
    else:
        out.append(
            kv(
                {
                    "tokenizer": f"{t.get('algorithm') or '—'}, vocabulary {num(t.get('vocab_size'))}",
                    "compression (bytes per token)": t.get("bytes_per_token"),
                    "train / val tokens": f"{num(t.get('train_tokens'))} / {num(t.get('val_tokens'))}",
                    "source": t["source"],
                }
            )
        )
    out.append(_images(run, plots.get("data", [])))
    return out


def _pretrain(run: Run, facts: dict[str, Any], plots: dict[str, list[Path]]) -> list[str]:
    p = facts["pretrain"]
    out = ["## Pretraining\n"]
    if p is None:
        return [*out, "Not run.\n"]
    out.append(
        kv(
            {
                "parameters": p.get("params"),
                "steps / tokens": f"{num(p.get('steps'))} / {num(p.get('tokens_seen'))}",
                "train loss (first → last logged)": f"{num(p.get('first_train_loss'))} → {num(p.get('last_train_loss'))}",
                "final val loss / unigram entropy": f"{num(p.get('final_val_loss'))} / {num(p.get('unigram_entropy'))}",
                "throughput (tokens/s) / MFU": f"{num(p.get('tokens_per_s'))} / {num(p.get('mfu'))}",
                "device": f"{num(p.get('processes'))} × {p['device']}" if p.get("device") else None,
                "loss spikes handled": p.get("spike_events"),
                "source": p["source"],
            }
        )
    )
    if p.get("note"):
        out.append(f"\nNote: {p['note']}.\n")
    if p["val_curve"]:
        out.append(
            "\nValidation loss (`metrics.jsonl`): "
            + ", ".join(f"step {num(v['step'])}: {num(v['val_loss'])}" for v in p["val_curve"])
            + ".\n"
        )
    out.append(_images(run, plots.get("pretrain", [])))
    return out


def _eval(run: Run, facts: dict[str, Any], plots: dict[str, list[Path]]) -> list[str]:
    rows = facts["eval"]
    out = ["## Evaluation\n"]
    if not rows:
        out.append("Not run (no `eval run` or `eval perplexity` report in the run).\n")
    else:
        out.append(
            table(
                ("model", "task", "metric", "value", "± stderr", "items", "report"),
                [
                    (
                        f"`{r['model']}`",
                        r["task"],
                        r["metric"],
                        r["value"],
                        r["stderr"],
                        r["n"],
                        f"`{r['report']}`",
                    )
                    for r in rows
                ],
            )
        )
    out.append(_images(run, plots.get("eval", [])))
    return out


def _finetune_rlhf(run: Run, facts: dict[str, Any], plots: dict[str, list[Path]]) -> list[str]:
    out = ["## Fine-tuning and alignment\n"]
    if not facts["finetune"] and not facts["rlhf"]:
        out.append("Not run (no `finetune sft` or `rlhf` output in the run).\n")
    for ft in facts["finetune"]:
        out.append(
            f"Instruction tuning `{ft['checkpoint']}` (`{ft['source']}`): {ft.get('method')}, {num(ft.get('steps'))} steps, "
            f"val loss {num(ft.get('first_val_loss'))} → {num(ft.get('val_loss'))}, "
            f"{num(ft.get('train_examples'))} examples, {num(ft.get('trained_tokens'))} trained tokens.\n"
        )
    for r in facts["rlhf"]:
        changes = ", ".join(f"{k} {num(b)} → {num(a)}" for k, (b, a) in r["before_after"].items())
        shown = {k: v for k, v in r["numbers"].items() if not k.endswith(("_s", "memory")) and k != "seconds"}
        out.append(
            f"{r['trainer']} `{r['checkpoint']}` (`{r['source']}`): "
            + ", ".join(f"{k} {num(v)}" for k, v in list(shown.items())[:10])
            + (f"; held-out before → after: {changes}" if changes else "")
            + ".\n"
        )
    for t in facts["tax"]:
        out.append(tax_section(t))
    out.append(_images(run, plots.get("finetune", []) + plots.get("rlhf", []) + plots.get("tax", [])))
    return out


def _bias(run: Run, facts: dict[str, Any], plots: dict[str, list[Path]]) -> list[str]:
    out = ["## Bias\n"]
    if not facts["bias"]:
        return [*out, "Not run (no `llmforge bias` report in the run).\n"]
    for b in facts["bias"]:
        out.append(f"Model `{b['model']}`:\n")
        out.append(bias_section(b))
        caveats = [*b["caveats"], *(f"{p['name']}: {c}" for p in b["probes"] for c in p["caveats"])]
        caveats += [f"{name} skipped: {why}" for name, why in b["skipped"].items()]
        if b.get("steer"):
            caveats.append("the audit also ran steered: the steered numbers are in its results.json")
        out += [f"- {c}\n" for c in caveats]
    out.append(_images(run, plots.get("bias", [])))
    return out


def _cost(facts: dict[str, Any]) -> list[str]:
    c, e = facts["compute"], facts["co2_eq_emissions"]
    out = ["## Cost\n"]
    if c is not None:
        out.append(
            kv(
                {
                    "pretraining FLOPs": c["flops"],
                    "pretraining time (tokens / throughput, s)": c["seconds"],
                    "GPU-hours" if c["gpu"] else "device-hours (CPU)": c["device_hours"],
                    "CO2eq (g)": e["grams"] if e else None,
                }
            )
        )
    out.append(f"\nCO2: {facts['co2_note']}.\n")
    seconds = facts["seconds"]
    if seconds:
        out.append(
            f"Wall time recorded by the stages: {num(sum(seconds.values()))} s in all ("
            + ", ".join(f"{k} {num(v)}" for k, v in seconds.items())
            + ").\n"
        )
    return out


# ------------------------------------------------------------------------------------------ write


def write(run: Run, out: Path, facts: dict[str, Any], options: dict[str, Any]) -> Path:
    """The report artifact at `out`: report.md, results.json, plots/*.png, manifest.json (atomic)."""
    text = render(run, facts)
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text(text)
        write_json(tmp / "results.json", facts)
        pngs = run.pngs()
        if pngs:
            (tmp / PLOTS_DIR).mkdir()
        for png in pngs:
            shutil.copyfile(png, tmp / PLOTS_DIR / plot_name(run, png))
        present = [s["stage"] for s in facts["stages"] if s["present"]]
        write_manifest(
            tmp,
            "report",
            recipe={"report": options},
            inputs=[a.path for a in run.artifacts],
            stats={
                "run": run.name,
                "stages_present": len(present),
                "stages": len(facts["stages"]),
                "plots": len(pngs),
            },
        )
    return out

"""The audit as people read it: report.md (every probe's numbers with intervals and ideal values, the per-group
tables, steered beside unsteered) and bias.png (per probe, its groups' headline metric with 95% intervals)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_metric(result: dict[str, Any], metric: str) -> str:
    text = _num(result["metrics"][metric])
    ci = result.get("intervals", {}).get(metric)
    if ci:
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    ideal = result.get("ideal", {}).get(metric)
    if ideal is not None:
        text += f" (ideal {_num(ideal)})"
    return text


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# Bias audit of {document['model']}", ""]
    if document.get("steer"):
        lines += [f"Steering: `{document['steer'].get('source')}` — probes that sample text ran unsteered and "
                  "steered on the same seeds.", ""]  # fmt: skip
    for caveat in document.get("caveats", []):
        lines.append(f"> {caveat}")
    lines.append("")
    for name, result in document["probes"].items():
        steered = document.get("steered", {}).get(name)
        lines += [f"## {name}", "", f"{result['n_items']} items.", ""]
        header = "| metric | value [95% CI] | ideal |" + (" steered [95% CI] |" if steered else "")
        lines += [header, "|---|---|---|" + ("---|" if steered else "")]
        for metric in result["metrics"]:
            ideal = _num(result.get("ideal", {}).get(metric))
            row = f"| {metric} | {_value_ci(result, metric)} | {ideal} |"
            if steered:
                row += f" {_value_ci(steered, metric) if metric in steered['metrics'] else '–'} |"
            lines.append(row)
        if result.get("groups"):
            lines += ["", "| group | metric | value | 95% CI | n | ideal |", "|---|---|---|---|---|---|"]
            for g in result["groups"]:
                ci = f"[{_num(g['ci_low'])}, {_num(g['ci_high'])}]" if g.get("ci_low") is not None else "–"
                lines.append(
                    f"| {g['group']} | {g['metric']} | {_num(g['value'])} | {ci} | {g['n']} | {_num(g.get('ideal'))} |"
                )
        for caveat in result.get("caveats", []) + (steered or {}).get("caveats", []):
            lines += ["", f"> {caveat}"]
        lines.append("")
    if document.get("skipped"):
        lines += ["## Not run", ""] + [f"- {p}: {why}" for p, why in document["skipped"].items()] + [""]
    return "\n".join(lines)


def _value_ci(result: dict[str, Any], metric: str) -> str:
    text = _num(result["metrics"][metric])
    ci = result.get("intervals", {}).get(metric)
    return text + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "")


def write_report(folder: Path, document: dict[str, Any]) -> None:
    (folder / "report.md").write_text(markdown(document), encoding="utf-8")
    plotted = {name: r for name, r in document["probes"].items() if r.get("groups")}
    if plotted:
        plot(folder / "bias.png", plotted, document.get("steered", {}))


def plot(path: Path, probes: dict[str, dict[str, Any]], steered: dict[str, dict[str, Any]]) -> None:
    """One panel per probe: the first metric of its groups as bars with 95% intervals, the ideal as a line;
    steered bars beside the unsteered ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(probes), 1, figsize=(8, 2.8 * len(probes)), squeeze=False)
    for ax, (name, result) in zip(axes[:, 0], probes.items(), strict=True):
        metric = result["groups"][0]["metric"]
        series = [("unsteered", result)] + ([("steered", steered[name])] if name in steered else [])
        width = 0.8 / len(series)
        for k, (label, r) in enumerate(series):
            groups = [g for g in r.get("groups", []) if g["metric"] == metric]
            xs = [i + k * width for i in range(len(groups))]
            values = [g["value"] for g in groups]
            errs = [
                [max(0.0, g["value"] - g["ci_low"]) if g.get("ci_low") is not None else 0 for g in groups],
                [max(0.0, g["ci_high"] - g["value"]) if g.get("ci_high") is not None else 0 for g in groups],
            ]
            ax.bar(xs, values, width=width, yerr=errs, capsize=2, label=label)
            if k == 0:
                ax.set_xticks([x + 0.4 - width / 2 for x in xs], [g["group"] for g in groups], rotation=30,
                              ha="right", fontsize=7)  # fmt: skip
                ideal = groups[0].get("ideal") if groups else None
                if ideal is not None:
                    ax.axhline(ideal, color="grey", linestyle="--", linewidth=1, label=f"ideal {ideal:g}")
        ax.set_title(f"{name}: {metric} per group (95% CI)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

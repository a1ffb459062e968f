"""report.md of a sweep and of an ablation, from their results.json."""

from __future__ import annotations

from typing import Any


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def sweep_markdown(r: dict[str, Any]) -> str:
    keys = list(r["space"])
    lines = [
        f"# Sweep `{r['study']}`",
        "",
        f"{r['stage']} on `{r['recipe']}`; {r['metric']} ({r['direction']}), {r['sampler']} sampler, "
        f"{r['pruner']} pruner; storage `{r['storage']}`.",
        "",
        f"Trials: {r['counts']['complete']} complete, {r['counts']['pruned']} pruned, {r['counts']['failed']} failed.",
        "",
    ]
    if r["best"]:
        b = r["best"]
        shown = ", ".join(f"{k} = {_num(v)}" for k, v in b["params"].items())
        lines += [
            f"**Best: trial {b['number']}**, {r['metric']} {_num(b['value'])} ({shown}); recipe `{b['recipe']}`.",
            "",
        ]
    lines += ["| trial | state | " + " | ".join(keys) + f" | {r['metric']} | steps | s |",
              "|---|---|" + "---|" * len(keys) + "---|---|---|"]  # fmt: skip
    for t in r["trials"]:
        cells = [_num(t["params"].get(k)) for k in keys]
        lines.append(f"| {t['number']} | {t['state']} | " + " | ".join(cells)
                     + f" | {_num(t['value'])} | {_num(t['steps'])} | {_num(t['seconds'])} |")  # fmt: skip
    lines += ["", "![history](history.png)", "", "![curves](curves.png)", ""]
    if r["importance"]:
        lines += ["Parameter importance (fANOVA):", ""]
        lines += [f"- {k}: {v:.2f}" for k, v in r["importance"].items()]
        lines += ["", "![importance](importance.png)", ""]
    if r["scaled"]:
        s = r["scaled"]
        lines += [
            "## Extrapolation (not a measurement)",
            "",
            f"To {s['target_params']:,} parameters by {s['rule']}: lr {_num(s['lr']['proxy'])} → "
            f"{_num(s['lr']['target'])}, batch {s['global_batch_tokens']['proxy']} → "
            f"{s['global_batch_tokens']['target']} tokens, {s['max_steps']} steps; recipe `{s['recipe']}`.",
            "",
        ]
    return "\n".join(lines)


def ablation_markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Ablation `{r['name']}`",
        "",
        f"{r['stage']} on `{r['recipe']}`, {r['seeds']} seeds per variant; {r['metric']} ({r['direction']}).",
        "",
        f"| variant | n | mean | std | {r['metric']} per seed |",
        "|---|---|---|---|---|",
    ]
    for v in r["variants"]:
        lines.append(f"| {v['name']} | {v['n']} | {_num(v['mean'])} | {_num(v['std'])} | "
                     + ", ".join(_num(x) for x in v["values"]) + " |")  # fmt: skip
    if r["tests"]:
        lines += ["", f"Welch's t-test against `{r['tests'][0]['baseline']}` (significant at p < {r['alpha']}):", "",
                  "| variant | Δ mean | t | dof | p | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
        for t in r["tests"]:
            lines.append(f"| {t['variant']} | {_num(t['delta'])} | {_num(t['t'])} | {_num(t['dof'])} | "
                         f"{_num(t['p'])} | {t['verdict']} |")  # fmt: skip
    lines += ["", "![ablation](ablation.png)", ""]
    return "\n".join(lines)

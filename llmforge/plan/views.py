"""Rich tables for the plan commands (human output on stderr; `--json` bypasses all of this)."""

from __future__ import annotations

from llmforge.console import human_bytes, info, summary_table


def _sci(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _count(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def print_size(report: dict) -> None:
    summary_table(
        f"plan: {report['method']}",
        {
            "parameters": f"{_count(report['params'])}  ({report['params']:.4g})",
            "training tokens": f"{_count(report['tokens'])}  ({report['tokens']:.4g})",
            "compute (FLOPs)": _sci(report["flops"]),
            "tokens per parameter": f"{report['tokens_per_param']:.1f}",
            "predicted loss": "-" if report["loss"] is None else f"{report['loss']:.3f}",
        },
    )
    rows = [
        (
            name + (" *" if name == report["method"] else ""),
            _count(m["params"]),
            _count(m["tokens"]),
            _sci(m["flops"]),
            f"{m['tokens_per_param']:.1f}",
            "-" if m["loss"] is None else f"{m['loss']:.3f}",
        )
        for name, m in report["methods"].items()
    ]
    summary_table(
        "all methods, same input", rows, ("method", "params", "tokens", "FLOPs", "tokens/param", "loss")
    )
    if "inference_aware" in report:
        ia = report["inference_aware"]
        summary_table(
            f"inference-aware (Sardana et al. 2023, {ia['loss_law']} loss law)",
            {
                "parameters": _count(ia["params"]),
                "training tokens": _count(ia["tokens"]),
                "tokens per parameter": f"{ia['tokens_per_param']:.1f}",
                "same loss": f"{ia['loss']:.3f}",
                "inference tokens": _count(ia["inference_tokens"]),
                "training FLOPs": _sci(ia["training_flops"]),
                "inference FLOPs": _sci(ia["inference_flops"]),
                "lifetime FLOPs": _sci(ia["total_flops"]),
                "vs training-optimal": f"{ia['saving']:.1%} less",
            },
        )
    if "cost" in report:
        c = report["cost"]
        summary_table(
            "time and cost",
            {
                "GPU": f"{c['gpu'] or 'custom'} × {c['gpus']} at {c['peak_tflops']:g} TFLOP/s peak, MFU {c['mfu']:g}",
                "wall-clock days": f"{c['days']:.3g}",
                "GPU-hours": f"{c['gpu_hours']:,.0f}",
                "petaflop/s-days": f"{c['pf_days']:.3g}",
                "cost (USD)": "- (give --price)" if c["cost_usd"] is None else f"{c['cost_usd']:,.0f}",
            },
        )


def print_memory(m: dict) -> None:
    shape = m["shape"]
    rows = {
        "parameters": _count(m["params"]),
        "precision / optimizer": f"{m['precision']} / {m['optimizer']} ({m['bytes_per_param']['total']:g} B/param)",
        "GPUs / ZeRO stage": f"{m['gpus']} / {m['zero']}",
        "weights": human_bytes(m["weights_bytes"]),
        "gradients": human_bytes(m["gradients_bytes"]),
        "optimizer states": human_bytes(m["optimizer_bytes"]),
        "model states": f"{human_bytes(m['model_states_bytes'])}  ({m['model_states_bytes'] / 1e9:.1f} GB)",
        "activations": f"{human_bytes(m['activation_bytes'])}  ({shape['layers']}×{shape['hidden']}, {shape['heads']} "
        f"heads, seq {shape['seq']}, micro-batch {shape['micro_batch']}, recompute {m['checkpointing']}; "
        f"shape {shape['source']})",
        "logits (fp32, ×3)": human_bytes(m["logits_bytes"])
        if m["logits_bytes"] is not None
        else "not counted (give --vocab)",
        "total per GPU": human_bytes(m["total_bytes"]),
        "rule of thumb (24 B/param, 1 GPU)": human_bytes(m["rule_of_thumb_bytes"]),
    }
    if m["fits"] is not None:
        rows[f"fits {m['gpu']} ({human_bytes(m['gpu_memory_bytes'])})"] = "yes" if m["fits"] else "NO"
    summary_table("memory per GPU", rows)


def print_shape(s: dict) -> None:
    counts = s["param_counts"]
    summary_table(
        f"{s['arch']} {s['n_layers']}×{s['d_model']}",
        {
            "parameters": f"{counts['total']:,}",
            "non-embedding": f"{counts['non_embedding']:,}",
            "embeddings (token + position)": f"{counts['token_embedding'] + counts['position_embedding']:,}",
            "output head": "tied" if s["tied"] else f"{counts['lm_head']:,}",
            "heads (kv) × head dim": f"{s['n_heads']} ({s['n_kv_heads']}) × {s['head_dim']}",
            "FFN width": s["ffn_dim"],
            "vocab / seq": f"{s['vocab_size']:,} / {s['seq_len']:,}",
            **(
                {
                    "decoder layers / targets": f"{s['n_decoder_layers']} / {s['target_len']:,} (span corruption)"
                }
                if "target_len" in s
                else {}
            ),
            "training FLOPs per token": f"{s['flops_per_token']:.4g}  (attention {s['flops']['attention'] / s['flops_per_token']:.1%})",
            "d_model / n_layers": f"{s['aspect_ratio']:.0f}",
        },
    )


def print_proposals(rows: list[dict]) -> None:
    table = [
        (
            r["n_layers"],
            r["d_model"],
            r["n_heads"],
            r["ffn_dim"],
            f"{r['params']:,}",
            f"{r['aspect_ratio']:.0f}",
            f"{r['flops_per_token']:.3g}",
        )
        for r in rows
    ]
    summary_table(
        "proposed shapes", table, ("layers", "d_model", "heads", "ffn", "params", "d/L", "FLOPs/token")
    )


def print_parallel(p: dict) -> None:
    shape = p["shape"]
    summary_table(
        f"parallelism: {p['gpus']} × {p['gpu']}",
        {
            "layout": p["strategy"],
            "data × tensor × pipeline": f"{p['data_parallel']} × {p['tensor_parallel']} × {p['pipeline_parallel']}",
            "shape": f"{shape['arch']} {shape['n_layers']}×{shape['d_model']}, {shape['n_heads']} heads",
            "micro-batch per GPU": f"{p['micro_batch']} ({p['tokens_per_micro_batch']:,} tokens)",
            "gradient accumulation": "-" if p["grad_accumulation"] is None else p["grad_accumulation"],
            "memory per GPU": f"{p['bytes_per_gpu'] / 1e9:.1f} GB of {p['gpu_memory_bytes'] / 1e9:g} GB",
            "launch with accelerate": "yes" if p["accelerate"] else "no (needs tensor/pipeline parallelism)",
            "accelerate config": p.get("accelerate_config", "-"),
        },
    )
    if p.get("recipe_set"):
        info("recipe keys to match (llmforge pretrain checks the launcher's config against them):")
        info("  " + " ".join(f"--set {s}" for s in p["recipe_set"]))
    info("why:")
    for reason in p["reasons"]:
        info(f"  - {reason}")


def print_ladder(report: dict) -> None:
    rows = [
        (
            r["recipe"],
            f"{r['budget']:.3g}",
            f"{r['params']:,}",
            f"{r['tokens']:,}",
            "?" if r["epochs"] is None else f"{r['epochs']:.2g}",
            r["steps"],
            f"{r['n_layers']}×{r['d_model']}",
        )
        for r in report["rungs"]
    ]
    summary_table(
        f"IsoFLOP ladder → {report['out']}",
        rows,
        ("recipe", "budget", "params", "tokens", "epochs", "steps", "shape"),
    )
    for note in report["skipped"]:
        info(f"[yellow]skipped:[/] {note}")
    info(f"run it: {report['run']}")
    info(f"then:   {report['fit']}")


def print_fit(report: dict) -> None:
    ci = report["intervals_95"]

    def cell(name: str) -> str:
        value = report[name]
        return f"{value:.4g}" + (f"  [{ci[name][0]:.4g}, {ci[name][1]:.4g}]" if name in ci else "")

    summary_table(
        f"L(N, D) = E + A/N^α + B/D^β from {report['runs']} runs ({report['isoflop_groups']} IsoFLOP groups)",
        {
            "E": cell("E"),
            "A": cell("A"),
            "B": cell("B"),
            "α": cell("alpha"),
            "β": cell("beta"),
            "N_opt ∝ C^a, D_opt ∝ C^b": f"a = {report['params_exponent']:.3f}, b = {report['tokens_exponent']:.3f}",
            "bootstrap": f"{report['bootstrap_resamples']} resamples, 95% intervals in brackets",
        },
    )
    rows = [
        (
            f"{a['flops']:.3g}",
            _count(a["params"]),
            _count(a["tokens"]),
            f"{a['tokens_per_param']:.1f}",
            f"{a['loss']:.3f}",
        )
        for a in report["allocation"]
    ]
    summary_table(
        "compute-optimal allocation implied", rows, ("FLOPs", "params", "tokens", "tokens/param", "loss")
    )
    if report["png"]:
        info(f"IsoFLOP plot: {report['png']}")


def print_frontier(rows: list[dict], png) -> None:
    table = [
        (
            ("★ " if r["ours"] else "") + r["name"],
            _count(r["params"]),
            _count(r["tokens"]),
            f"{r['tokens_per_param']:.0f}",
            f"{r['ratio_to_chinchilla']:.2f}",
            r["verdict"],
        )
        for r in rows
    ]
    summary_table(
        "tokens vs parameters (Chinchilla approach 1 as the yardstick)",
        table,
        ("model", "params", "tokens", "tokens/param", "× optimal", "verdict"),
    )
    if png:
        info(f"plot: {png}")

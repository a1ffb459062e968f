"""`llmforge plan`: size a model for a compute budget, and plan its memory, shape, parallelism and scaling laws.

Thin layer: parse options, call the library modules, print a table or `--json`. Imports stay light (no torch,
no numpy at import time) so `llmforge plan --compute 1e21` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from llmforge.console import UserError, emit_json
from llmforge.plan.quantities import choice, fraction, positive, positive_int

# No help= here: typer would show it instead of the callback's docstring (and its examples).
app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode="rich",
)

JSON_HELP = "Print one JSON object on stdout (no tables)."


def _output_file(option: str, path: Path | None) -> Path | None:
    """`path` checked writable as a file before any work starts (None stays None)."""
    if path is None:
        return None
    from llmforge.artifacts import ensure_writable

    try:
        return ensure_writable(path, directory=False)
    except UserError as e:
        raise UserError(f"{option} {e}") from None


def _write_text(path: Path, text: str) -> None:
    """Write under a temporary sibling name and rename, so a crash never leaves half a file."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@app.callback(invoke_without_command=True)
def size(
    ctx: typer.Context,
    compute: str | None = typer.Option(None, "--compute", "-c", help="Training compute in FLOPs, e.g. 1e21."),
    params: str | None = typer.Option(None, "--params", "-n", help="Parameters, e.g. 7e9 or 7B."),
    tokens: str | None = typer.Option(None, "--tokens", "-d", help="Training tokens, e.g. 1.4T."),
    method: str | None = typer.Option(
        None, "--method", "-m", help="chinchilla | approach2 | approach3 | epoch | kaplan | tokens-per-param."
    ),
    ratio: str = typer.Option("20", "--ratio", help="Tokens per parameter for --method tokens-per-param."),
    inference_tokens: str | None = typer.Option(
        None, "--inference-tokens", help="Tokens the model will serve: minimise training + inference compute."
    ),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU for time and cost, e.g. h100-sxm."),
    gpus: str | None = typer.Option(None, "--gpus", help="Number of GPUs (default 1)."),
    mfu: str | None = typer.Option(None, "--mfu", help="Model FLOPs utilisation (default 0.4)."),
    price: str | None = typer.Option(None, "--price", help="USD per GPU-hour, for the cost."),
    peak_tflops: str | None = typer.Option(
        None, "--peak-tflops", help="Peak TFLOP/s per GPU (overrides --gpu)."
    ),
    recipe: Path | None = typer.Option(
        None,
        "--recipe",
        help="Take method, gpu, gpus, mfu and price defaults from this recipe's \\[plan] table.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Size a model for a budget; plan memory, shapes, parallelism; fit your own scaling laws.

    Without a subcommand: compute-optimal model size and tokens for a budget (C ≈ 6·N·D), by every
    well-known method.

    Examples:
      llmforge plan --compute 1e21
      llmforge plan --params 7B --method approach3 --inference-tokens 2T --json
      llmforge plan --compute 1e23 --gpu h100-sxm --gpus 256 --mfu 0.4 --price 2.5
    """
    sizing_options = (
        compute,
        params,
        tokens,
        method,
        inference_tokens,
        gpu,
        gpus,
        mfu,
        price,
        peak_tflops,
        recipe,
    )
    if ctx.invoked_subcommand is not None:
        if any(option is not None for option in sizing_options):
            raise UserError(
                f"plan {ctx.invoked_subcommand}: put its options after the subcommand, not before it"
            )
        return
    if compute is params is tokens is None:
        typer.echo(ctx.get_help())
        return
    from llmforge.plan.config import PlanConfig
    from llmforge.plan.scaling_laws import METHODS
    from llmforge.plan.sizing import SizingInput, plan_size

    defaults = _plan_defaults(recipe) if recipe else PlanConfig()
    method = choice("--method", method or defaults.method, METHODS)
    gpu = gpu or defaults.gpu
    if gpu is not None:
        from llmforge.plan.hardware import gpu as lookup_gpu

        lookup_gpu(gpu)
    if gpu is None and peak_tflops is None and any(x is not None for x in (gpus, mfu, price)):
        raise UserError("--gpus, --mfu and --price need --gpu NAME or --peak-tflops for the time and cost")
    gpu_count = positive_int("--gpus", gpus) if gpus is not None else defaults.gpus
    report = plan_size(
        method,
        SizingInput(
            positive("--compute", compute), positive("--params", params), positive("--tokens", tokens)
        ),
        ratio=positive("--ratio", ratio),
        inference_tokens=positive("--inference-tokens", inference_tokens, allow_zero=True),
        gpu=gpu,
        gpus=gpu_count,
        mfu=fraction("--mfu", mfu) if mfu is not None else defaults.mfu,
        peak_tflops=positive("--peak-tflops", peak_tflops),
        price=positive("--price", price, allow_zero=True)
        if price is not None
        else defaults.price_per_gpu_hour,
    )
    if as_json:
        emit_json(report)
        return
    from llmforge.plan import views

    views.print_size(report)


def _given_shape(given: dict[str, int | None]) -> None:
    """A shape given on the command line is given whole, with positive sizes (Shape checks divisibility)."""
    missing = [option for option, value in given.items() if value is None]
    if missing:
        raise UserError(
            f"give {', '.join(missing)} too (or none of {', '.join(given)} to have a shape proposed)"
        )
    for option, value in given.items():
        if value < 1:
            raise UserError(f"{option} {value}: expected a positive integer")


def _ladder_out(out: Path) -> None:
    """--out is a new directory, or a ladder this command wrote before (replaced): never another file or
    folder, which the atomic rename would otherwise replace."""
    from llmforge.artifacts import ensure_writable

    try:
        ensure_writable(out)
    except UserError as e:
        raise UserError(f"--out {e}") from None
    if out.is_dir() and any(out.iterdir()):
        manifest = out / "manifest.json"
        import json

        try:
            kind = json.loads(manifest.read_text()).get("kind") if manifest.is_file() else None
        except (OSError, ValueError):
            kind = None
        if kind != "report" or not (out / "results.json").is_file() or not any(out.glob("*.toml")):
            raise UserError(
                f"--out {out}: the folder exists and is not a ladder written by `llmforge plan ladder`; "
                "give a new folder"
            )


def _plan_defaults(path: Path):
    from llmforge.plan.config import PlanConfig
    from llmforge.recipe import load_recipe

    return load_recipe(path).plan or PlanConfig()


@app.command("memory")
def memory(
    params: str = typer.Option(..., "--params", "-n", help="Parameters, e.g. 7.5e9."),
    precision: str = typer.Option("bf16-mixed", "--precision", help="fp32 | bf16-mixed | fp16-mixed | bf16."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | adamw-8bit | sgd (with momentum)."),
    gpus: int = typer.Option(1, "--gpus", help="Data-parallel GPUs the states are sharded over (ZeRO)."),
    zero: int = typer.Option(0, "--zero", help="ZeRO stage 0 | 1 | 2 | 3 (FSDP full shard = 3)."),
    layers: int | None = typer.Option(None, "--layers", help="Transformer layers (for activations)."),
    hidden: int | None = typer.Option(None, "--hidden", help="Hidden size d_model."),
    heads: int | None = typer.Option(None, "--heads", help="Attention heads."),
    seq: int = typer.Option(2048, "--seq", help="Sequence length."),
    micro_batch: int = typer.Option(1, "--micro-batch", help="Sequences per GPU per step."),
    checkpointing: str = typer.Option(
        "none", "--checkpointing", help="Activation recomputation: none | selective | full."
    ),
    vocab: int | None = typer.Option(
        None, "--vocab", help="Vocabulary size, for the fp32 logits (default: the proposed shape's)."
    ),
    gpu: str | None = typer.Option(None, "--gpu", help="Check the total against this GPU's memory."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Training memory per GPU: weights, gradients, optimizer states (ZeRO 0–3), activations and logits.

    Without --layers/--hidden/--heads the activations are those of a shape proposed for --params (and the
    logits of its vocabulary unless --vocab is given); with them, the logits are counted when --vocab is.

    Examples:
      llmforge plan memory --params 7.5e9 --gpus 64 --zero 3
      llmforge plan memory --params 7B --layers 32 --hidden 4096 --heads 32 --seq 4096 --vocab 32000 --checkpointing selective --gpu a100-80gb
    """
    from llmforge.plan.hardware import gpu as lookup_gpu
    from llmforge.plan.memory import CHECKPOINTING, OPTIMIZERS, PRECISIONS, ZERO_STAGES, plan_memory
    from llmforge.plan.shapes import propose_shapes

    n = positive("--params", params)
    choice("--precision", precision, PRECISIONS)
    choice("--optimizer", optimizer, OPTIMIZERS)
    choice("--checkpointing", checkpointing, CHECKPOINTING)
    choice("--zero", zero, ZERO_STAGES)
    for option, value in (
        ("--gpus", gpus),
        ("--seq", seq),
        ("--micro-batch", micro_batch),
        ("--vocab", vocab),
    ):
        if value is not None and value < 1:
            raise UserError(f"{option} {value}: expected a positive integer")
    shape_source = "given"
    given = {"--layers": layers, "--hidden": hidden, "--heads": heads}
    if all(v is None for v in given.values()):
        proposed = propose_shapes(n, seq_len=seq, count=1)[0]
        layers, hidden, heads = proposed.n_layers, proposed.d_model, proposed.n_heads
        vocab = vocab or proposed.vocab_size
        shape_source = "proposed for --params"
    else:
        _given_shape(given)
        if hidden % heads:
            raise UserError(f"--hidden {hidden}: not divisible by --heads {heads}")
    result = plan_memory(
        n,
        precision=precision,
        optimizer=optimizer,
        gpus=gpus,
        zero=zero,
        layers=layers,
        hidden=hidden,
        heads=heads,
        seq=seq,
        micro_batch=micro_batch,
        checkpointing=checkpointing,
        gpu_memory_bytes=lookup_gpu(gpu).memory_bytes if gpu else None,
        vocab=vocab,
    ).to_dict()
    result["shape"] = {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "seq": seq,
        "micro_batch": micro_batch,
        "vocab": vocab,
        "source": shape_source,
    }
    result["gpu"] = gpu
    if as_json:
        emit_json(result)
        return
    from llmforge.plan import views

    views.print_memory(result)


@app.command("shape")
def shape(
    arch: str = typer.Option("llama", "--arch", help="gpt2 | llama | gpt-neox | bert | t5."),
    layers: int | None = typer.Option(None, "--layers", help="Transformer layers (t5: encoder layers)."),
    decoder_layers: int | None = typer.Option(
        None, "--decoder-layers", help="t5: decoder layers (default = --layers)."
    ),
    d_model: int | None = typer.Option(None, "--d-model", help="Hidden size."),
    heads: int | None = typer.Option(None, "--heads", help="Attention heads."),
    kv_heads: int | None = typer.Option(None, "--kv-heads", help="Key/value heads (GQA); default = heads."),
    ffn: int | None = typer.Option(None, "--ffn", help="FFN width; default 4·d (llama: SwiGLU 8d/3 → ×256)."),
    vocab: int | None = typer.Option(None, "--vocab", help="Vocabulary size (default: the arch's usual)."),
    seq: int | None = typer.Option(
        None, "--seq", help="Sequence length (gpt2, bert: also the position table; t5: encoder input)."
    ),
    tied: bool | None = typer.Option(None, "--tied/--untied", help="Tie input and output embeddings."),
    params: str | None = typer.Option(None, "--params", "-n", help="Propose shapes near this size instead."),
    count: int = typer.Option(5, "--count", help="How many shapes --params proposes."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    as_toml: bool = typer.Option(
        False,
        "--toml",
        help="Print the shape (with --params: the best proposal) as a recipe's \\[model] table on stdout.",
    ),
) -> None:
    """Exact parameter count and training FLOPs per token of a shape, or shapes proposed for a size.

    Examples:
      llmforge plan shape --arch gpt2 --layers 12 --d-model 768 --heads 12 --json   # 124,439,808
      llmforge plan shape --arch llama --layers 32 --d-model 4096 --heads 32 --vocab 32000
      llmforge plan shape --params 1e9
      llmforge plan shape --params 1e8 --arch llama --vocab 4096 --toml >> my-recipe.toml
      llmforge plan shape --arch t5 --layers 12 --d-model 768 --heads 12 --seq 512   # T5 v1.1-base
    """
    from llmforge.plan.shapes import (
        ARCHS,
        DEFAULT_TIED,
        DEFAULT_VOCAB,
        Shape,
        describe,
        model_toml,
        propose_shapes,
    )

    choice("--arch", arch, ARCHS)
    if as_json and as_toml:
        raise UserError("plan shape: give --json or --toml, not both")
    seq = seq or {"gpt2": 1024, "bert": 512, "t5": 512}.get(arch, 2048)
    if params is not None:
        if count < 1:
            raise UserError(f"--count {count}: expected a positive integer")
        shapes = propose_shapes(
            positive("--params", params),
            arch=arch,
            vocab_size=vocab,
            seq_len=seq,
            tied=tied,
            decoder_layers=decoder_layers,
            count=count,
        )
        if as_toml:
            sys.stdout.write(model_toml(shapes[0]))
            return
        rows = [describe(s) for s in shapes]
        if as_json:
            emit_json({"target_params": positive("--params", params), "shapes": rows})
        else:
            from llmforge.plan import views

            views.print_proposals(rows)
        return
    missing = [
        name for name, v in (("--layers", layers), ("--d-model", d_model), ("--heads", heads)) if v is None
    ]
    if missing:
        raise UserError(f"plan shape: give {', '.join(missing)} (or --params N to have shapes proposed)")
    given = Shape(
        arch,
        layers,
        d_model,
        heads,
        DEFAULT_VOCAB[arch] if vocab is None else vocab,
        seq,
        DEFAULT_TIED[arch] if tied is None else tied,
        n_kv_heads=kv_heads,
        ffn_dim=ffn,
        n_decoder_layers=decoder_layers,
        target_len=_span_targets(arch, seq),
    )
    if as_toml:
        sys.stdout.write(model_toml(given))
        return
    result = describe(given)
    if as_json:
        emit_json(result)
        return
    from llmforge.plan import views

    views.print_shape(result)


def _span_targets(arch: str, seq: int) -> int | None:
    """Decoder tokens per example of an encoder–decoder trained with T5's default span corruption (15% noise,
    mean span 3: 29 targets for 128 inputs), which its FLOPs per token count."""
    from llmforge.archs import family

    if not family(arch).encoder_decoder:
        return None
    from llmforge.objectives.span_corruption import SpanCorruption

    try:
        return SpanCorruption().lengths(seq)[1]
    except ValueError as e:
        raise UserError(f"--seq {seq}: {e}") from None


@app.command("parallel")
def parallel(
    params: str = typer.Option(..., "--params", "-n", help="Parameters, e.g. 7B."),
    gpus: int = typer.Option(..., "--gpus", help="GPUs in all."),
    gpu: str = typer.Option(..., "--gpu", help="GPU type, e.g. a100-80gb."),
    seq: int = typer.Option(2048, "--seq", help="Sequence length."),
    arch: str = typer.Option(
        "llama", "--arch", help="gpt2 | llama | gpt-neox (FSDP wraps its decoder layer)."
    ),
    layers: int | None = typer.Option(
        None, "--layers", help="Layers (default: a shape proposed for --params)."
    ),
    d_model: int | None = typer.Option(None, "--d-model", help="Hidden size."),
    heads: int | None = typer.Option(None, "--heads", help="Attention heads."),
    gpus_per_node: int = typer.Option(
        8, "--gpus-per-node", help="GPUs per node (tensor parallelism stays inside one)."
    ),
    precision: str = typer.Option("bf16-mixed", "--precision", help="fp32 | bf16-mixed | fp16-mixed | bf16."),
    global_batch_tokens: str | None = typer.Option(
        None, "--global-batch-tokens", help="Tokens per optimizer step, for the gradient accumulation."
    ),
    write_accelerate_config: Path | None = typer.Option(
        None,
        "--write-accelerate-config",
        help="Write an Accelerate config YAML for `accelerate launch --config_file`.",
    ),
    main_process_ip: str | None = typer.Option(
        None, "--main-process-ip", help="Rank-0 node address (multi-node)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Data / sharded (FSDP, ZeRO) / tensor / pipeline parallel degrees that fit memory, and why.

    Examples:
      llmforge plan parallel --params 7B --gpus 8 --gpu a100-80gb --seq 4096
      llmforge plan parallel --params 1B --gpus 8 --gpu h100-sxm --write-accelerate-config accelerate.yaml
    """
    from llmforge.plan.hardware import gpu as lookup_gpu
    from llmforge.plan.memory import PRECISIONS
    from llmforge.plan.parallel import accelerate_config, plan_parallel, recipe_overrides
    from llmforge.plan.shapes import ARCHS, DEFAULT_TIED, DEFAULT_VOCAB, Shape, propose_shapes

    n = positive("--params", params)
    choice("--arch", arch, ARCHS)
    choice("--precision", precision, PRECISIONS)
    device = lookup_gpu(gpu)
    for option, value in (("--gpus", gpus), ("--seq", seq), ("--gpus-per-node", gpus_per_node)):
        if value < 1:
            raise UserError(f"{option} {value}: expected a positive integer")
    _output_file("--write-accelerate-config", write_accelerate_config)
    given = {"--layers": layers, "--d-model": d_model, "--heads": heads}
    if any(v is not None for v in given.values()):
        _given_shape(given)
        shape = Shape(arch, layers, d_model, heads, DEFAULT_VOCAB[arch], seq, DEFAULT_TIED[arch])
    else:
        shape = propose_shapes(n, arch=arch, seq_len=seq, count=1)[0]
    batch = positive("--global-batch-tokens", global_batch_tokens)
    plan = plan_parallel(
        n,
        shape,
        gpus=gpus,
        gpu=device,
        gpus_per_node=gpus_per_node,
        precision=precision,
        global_batch_tokens=int(batch) if batch else None,
    )
    result = plan.to_dict()
    result["shape"] = {
        "arch": arch,
        "n_layers": shape.n_layers,
        "d_model": shape.d_model,
        "n_heads": shape.n_heads,
    }
    if plan.strategy.zero and precision == "fp16-mixed":
        result["reasons"].append(
            "fp16-mixed with FSDP: llmforge pretrain has no sharded fp16 loss scaler; use --precision bf16-mixed"
        )
    elif plan.strategy.accelerate:
        result["recipe_set"] = recipe_overrides(plan, precision)
    if write_accelerate_config is not None:
        text = accelerate_config(
            plan, gpus_per_node=gpus_per_node, main_process_ip=main_process_ip, precision=precision
        )
        _write_text(write_accelerate_config, text)
        result["accelerate_config"] = str(write_accelerate_config)
    if as_json:
        emit_json(result)
        return
    from llmforge.plan import views

    views.print_parallel(result)


@app.command("ladder")
def ladder(
    base: Path = typer.Option(
        ..., "--base", help="Base pretrain recipe (its [model] arch/vocab, [train] batch)."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for the ladder's recipes (written atomically)."),
    budgets: str | None = typer.Option(
        None,
        "--budgets",
        help="Comma-separated FLOP budgets (default: the base recipe's plan.ladder_budgets).",
    ),
    sizes: int | None = typer.Option(
        None, "--sizes", help="Model sizes per budget (default plan.ladder_sizes or 5)."
    ),
    spread: str = typer.Option("4", "--spread", help="Sizes span N_opt/spread … N_opt·spread."),
    max_epochs: str | None = typer.Option(
        None,
        "--max-epochs",
        help="Leave out rungs that would repeat the base run's training tokens more often than this.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write an IsoFLOP ladder of pretrain recipes: model sizes around the optimum for each compute budget.

    Every rung trains on the base run's tokens; when they exist, each rung's epochs over them are shown.

    Example:
      llmforge plan ladder --base recipes/tiny.toml --out runs/ladder   # budgets from plan.ladder_budgets
      for r in runs/ladder/*.toml; do llmforge pretrain "$r"; done; llmforge plan fit runs/tiny-C*
    """
    from llmforge.plan.config import PlanConfig
    from llmforge.plan.ladder import write_ladder
    from llmforge.plan.quantities import number_list
    from llmforge.recipe import load_recipe

    recipe = load_recipe(base)
    defaults = recipe.plan or PlanConfig()
    budget_list = number_list("--budgets", budgets) if budgets else list(defaults.ladder_budgets)
    if not budget_list:
        raise UserError(
            f"{base}: give --budgets (e.g. 1e15,3e15,1e16) or set plan.ladder_budgets in the recipe"
        )
    sizes = sizes if sizes is not None else defaults.ladder_sizes
    if sizes < 1:
        raise UserError(f"--sizes {sizes}: expected a positive integer")
    spread_value = positive("--spread", spread)
    if spread_value <= 1:
        raise UserError(f"--spread {spread}: expected a number > 1")
    epochs_cap = positive("--max-epochs", max_epochs)
    _ladder_out(out)
    report = write_ladder(base, recipe, budget_list, sizes, out, spread=spread_value, max_epochs=epochs_cap)
    from llmforge.console import warn

    if as_json:
        emit_json(report)
    else:
        from llmforge.plan import views

        views.print_ladder(report)
    for message in report["warnings"]:
        warn(message)


@app.command("fit")
def fit(
    runs: list[Path] = typer.Argument(
        ..., help="Run directories (RUN/reports/pretrain/results.json) or .json/.csv tables."
    ),
    png: Path | None = typer.Option(None, "--png", help="Draw IsoFLOP curves with their minima to this PNG."),
    bootstrap: int = typer.Option(
        100, "--bootstrap", help="Bootstrap resamples for the 95% intervals (0: none)."
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Budgets for the implied allocation (default: 1×, 10×, 100×, 1000× your largest run).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Fit L(N, D) = E + A/N^α + B/D^β to finished runs (Huber in log space, L-BFGS from a grid, bootstrap).

    Examples:
      llmforge plan fit runs/tiny-C1e13-* runs/tiny-C3e13-* --png fit.png
      llmforge plan fit losses.csv --json          # columns params,tokens,loss
    """
    from llmforge.plan.fit_report import fit_report
    from llmforge.plan.quantities import number_list

    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: expected 0 or more")
    _output_file("--png", png)
    report = fit_report(
        runs, bootstrap=bootstrap, at=number_list("--at", at) if at else None, png=png, seed=seed
    )
    if as_json:
        emit_json(report)
        return
    from llmforge.plan import views

    views.print_fit(report)


@app.command("frontier")
def frontier(
    run: list[Path] = typer.Option(
        [], "--run", help="A finished run directory (or .json/.csv table) of ours; repeatable."
    ),
    png: Path | None = typer.Option(None, "--png", help="Plot tokens against parameters to this PNG."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Tokens vs parameters of well-known models against the Chinchilla line: who was under- or over-trained.

    Example:
      llmforge plan frontier --png frontier.png --run runs/tiny
    """
    from llmforge.plan.frontier import frontier as placed
    from llmforge.plan.observations import load_observations

    _output_file("--png", png)
    rows = placed(load_observations(run) if run else [])
    if png is not None:
        from llmforge.plan.plots import frontier_png

        frontier_png(rows, png)
    if as_json:
        emit_json({"models": rows, "png": str(png) if png else None})
        return
    from llmforge.plan import views

    views.print_frontier(rows, png)

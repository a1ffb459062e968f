"""`llmforge eval`: benchmarks (lm-eval), perplexity, review sheets and ratings, comparison of reports."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from llmforge.console import UserError, emit_json, info, state, summary_table, warn
from llmforge.eval import outputs

if TYPE_CHECKING:  # the recipe models are built on first use, not at every `llmforge --help`
    from llmforge.eval.config import EvalConfig

app = typer.Typer(
    help="Evaluate checkpoints: lm-eval benchmarks (offline with --data-dir), perplexity, human review, comparison.",
    no_args_is_help=True,
)

CKPT_HELP = "A checkpoint artifact (runs/<name>/checkpoints/step-NNNNNN) or any local Hugging Face model dir."
OUT_HELP = "Report directory (default: <run>/reports/<command>/<checkpoint> next to the checkpoint's run)."
JSON_HELP = "Print the results as JSON on stdout (nothing else goes to stdout)."
FORCE_HELP = "Replace an existing report at --out (without it an existing report is never overwritten)."


def _default_out(model_dir: Path, command: str) -> Path:
    resolved = model_dir.resolve()
    if resolved.parent.name == "checkpoints":
        return resolved.parent.parent / "reports" / command / resolved.name
    return Path("reports") / command / resolved.name


def _quiet_libraries() -> None:
    """lm-eval, datasets and transformers log on their own: warnings only (errors only and none of their
    progress bars under --quiet; the harness's per-request bars are switched off in `harness.evaluate`)."""
    import logging
    import os

    if state.quiet:  # tqdm reads TQDM_* settings when it is first imported, so before datasets/lm-eval are
        os.environ.setdefault("TQDM_DISABLE", "1")
    level = logging.ERROR if state.quiet else logging.WARNING
    for name in ("lm_eval", "datasets", "transformers"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("lm_eval.models.huggingface").addFilter(_drop_loaded_model_warnings)
    if state.quiet:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def _drop_loaded_model_warnings(record) -> bool:
    """lm-eval warns whenever it is handed a loaded model rather than a name; the harness does that on purpose
    (one process, no `parallelize`), so the two warnings say nothing to our users."""
    message = record.getMessage()
    return not message.startswith(
        ("`pretrained` model kwarg is not of type", "Passed an already-initialized model")
    )


def _eval_config(recipe: Path | None, set_: list[str]) -> EvalConfig:
    if recipe is None:
        if set_:
            raise UserError("--set: needs --recipe")
        from llmforge.eval.config import EvalConfig

        return EvalConfig()
    from llmforge.recipe import load_recipe

    return load_recipe(recipe, set_).table("eval")


def _metric_rows(results: dict) -> list[tuple]:
    from llmforge.eval.report import fmt, metrics

    return [(m.task, m.metric, m.filter, fmt(m)) for m in metrics(results)]


def _offline(data_dir: Path | None) -> bool:
    if data_dir is not None:
        if not data_dir.is_dir():
            raise UserError(f"--data-dir {data_dir}: no such directory")
        return True
    if any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise UserError(
            "--data-dir: Hugging Face is offline, so the harness's own tasks cannot download their data; pass "
            "--data-dir (e.g. ../shared/data) to use llmforge's offline tasks (see `llmforge eval tasks`)"
        )
    return False


@app.command("run")
def run(
    checkpoint: Path = typer.Argument(..., help=CKPT_HELP),
    tasks: str | None = typer.Option(None, "--tasks", "-t", help="Comma-separated tasks or presets."),
    num_fewshot: int | None = typer.Option(
        None, "--num-fewshot", min=0, help="Examples in the prompt (0 = zero-shot)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Evaluate only the first N documents per task."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Requests per forward pass."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda, cuda:1 … (default: cuda if available)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Folder of public benchmark files: run offline."
    ),
    max_gen_toks: int | None = typer.Option(
        None,
        "--max-gen-toks",
        min=1,
        help="Cap on generated tokens for generation tasks (lm-eval's default: 256).",
    ),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Recipe whose [eval] table gives the defaults."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set eval.limit=50."),
    out: Path | None = typer.Option(None, "--out", "-o", help=OUT_HELP),
    log_samples: bool = typer.Option(
        False,
        "--log-samples",
        help="Also write lm-eval's per-item records (samples_<task>.jsonl: what paired comparisons read).",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run lm-evaluation-harness tasks on a checkpoint and write a report artifact (results.json + report.md).

    With --data-dir the tasks run offline from local files in their public formats (`llmforge eval tasks` lists
    them and the files they read); without it the harness's own registry (which downloads data) is used.
    An existing report at --out is refused unless --force is given. A request longer than the model's context
    is truncated from the left (as lm-eval does); the report counts the documents cut, per task.

    Example: llmforge eval run runs/tiny/checkpoints/step-000200 --tasks piqa --limit 50 --data-dir ../shared/data
    """
    from llmforge.eval import checkpoint as ckpt
    from llmforge.eval import tasks as task_names

    cfg = _eval_config(recipe, set_)
    names = task_names.expand([t.strip() for t in (tasks or ",".join(cfg.tasks)).split(",") if t.strip()])
    if not names:
        raise UserError("--tasks: no tasks given (flag or [eval] tasks in the recipe)")
    data_dir = data_dir or (Path(cfg.data_dir) if cfg.data_dir else None)
    fewshot = cfg.num_fewshot if num_fewshot is None else num_fewshot
    settings = {
        "tasks": names,
        "num_fewshot": fewshot,
        "limit": limit or cfg.limit,
        "batch_size": batch_size or cfg.batch_size,
        "device": device or cfg.device,
        "max_gen_toks": max_gen_toks or cfg.max_gen_toks,
        "data_dir": str(data_dir.resolve()) if data_dir else None,
    }
    model_dir = ckpt.require_causal(checkpoint, "eval run")
    out = out or _default_out(model_dir, "eval")
    outputs.report_dir(out, force=force)
    offline = _offline(data_dir)
    _quiet_libraries()
    from llmforge.eval import harness, report

    with tempfile.TemporaryDirectory(prefix="llmforge-eval-tasks-") as include:
        if offline:
            task_names.check_known(names, list(task_names.OFFLINE_TASKS) + list(task_names.PRESETS))
            counts = task_names.write_include_dir(names, data_dir, Path(include), fewshot)
            info(f"offline tasks from {data_dir}: " + ", ".join(f"{t} ({n} docs)" for t, n in counts.items()))
        else:
            task_names.check_known(names, harness.known_online_tasks() + list(task_names.PRESETS))
        start = time.perf_counter()
        results = harness.evaluate(
            model_dir,
            names,
            include_dir=Path(include) if offline else None,
            num_fewshot=fewshot,
            limit=settings["limit"],
            batch_size=settings["batch_size"],
            device=settings["device"],
            max_gen_toks=settings["max_gen_toks"],
            log_samples=log_samples,
        )
    samples = results.pop("samples", {})
    truncated = results.pop("truncated", {})
    results["llmforge"] = {"seconds": time.perf_counter() - start, **settings, "truncated": truncated}
    if line := harness.truncation_line(truncated):
        warn(line)
    report.write(
        out,
        results,
        title=f"Evaluation of {model_dir}",
        model_dir=model_dir,
        recipe=settings,
        inputs=[data_dir] if data_dir else [],
        extra_files={
            f"samples_{task}.jsonl": "".join(json.dumps(r) + "\n" for r in records).encode()
            for task, records in samples.items()
        },
    )
    if as_json:
        emit_json({"report": str(out), "results": results["results"]})
        return
    summary_table(
        f"eval {report.model_label(model_dir)}",
        _metric_rows(results),
        ("task", "metric", "filter", "value ± stderr"),
    )
    info(f"report: {out}")


@app.command("tasks")
def list_tasks(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Check which tasks' files are present here."
    ),
    export: Path | None = typer.Option(
        None,
        "--export",
        help="Write the YAMLs + prepared data of the tasks found in --data-dir here (for `lm_eval --include_path`).",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List llmforge's offline tasks (the files each reads under --data-dir) and the task presets.

    Example: llmforge eval tasks --data-dir ../shared/data --export /tmp/tasks && lm_eval --include_path /tmp/tasks …
    """
    from llmforge.eval.tasks import OFFLINE_TASKS, PRESETS, task_rows, write_include_dir

    if export is not None:
        outputs.directory(export, flag="--export")
    available = {}
    for name in OFFLINE_TASKS:
        if data_dir is None:
            available[name] = None
            continue
        try:
            available[name] = len(task_rows(name, data_dir))
        except UserError:
            available[name] = 0
    if export is not None:
        if data_dir is None:
            raise UserError("--export: needs --data-dir")
        write_include_dir([t for t, n in available.items() if n], data_dir, export)
        info(f"wrote task YAMLs and data to {export}")
    if as_json:
        emit_json(
            {
                "tasks": {t: {"files": OFFLINE_TASKS[t].files, "documents": n} for t, n in available.items()},
                "presets": {p: list(ts) for p, ts in PRESETS.items()},
            }
        )
        return
    rows = [(t, OFFLINE_TASKS[t].files, "-" if n is None else (n or "missing")) for t, n in available.items()]
    summary_table("offline tasks", rows, ("task", "files under --data-dir", "documents"))
    summary_table("presets", [(p, ", ".join(ts)) for p, ts in PRESETS.items()], ("preset", "tasks"))


# --batch-size default per model kind: windows (causal), one-mask copies of a window (masked), examples (seq2seq)
PERPLEXITY_BATCH = {"causal": 8, "masked": 32, "seq2seq": 8}
# T5's pretraining inputs length (Raffel et al. 2020): the window of an encoder-decoder whose config.json
# gives no context length (T5's relative positions set none)
SEQ2SEQ_WINDOW = 512


def _perplexity_window(kind: str, model_dir: Path, context: int | None) -> int:
    if context is not None:
        return context
    if kind == "seq2seq":
        return SEQ2SEQ_WINDOW
    raise UserError(f"--window: {model_dir}/config.json gives no context length; pass --window")


def _measure_perplexity(kind, model, tokenizer, model_dir, ids, n_bytes, window, stride, batch_size):
    """The measure that fits the model kind: perplexity, pseudo-perplexity or target perplexity."""
    if kind == "masked":
        from llmforge.eval import masked_perplexity as mlm

        mask_id = mlm.mask_token_id(tokenizer, model_dir)
        return mlm.measure(
            model, tokenizer, ids, n_bytes, window=window, batch_size=batch_size, mask_id=mask_id
        )
    if kind == "seq2seq":
        from llmforge.eval import target_perplexity as t5

        sentinels = t5.sentinel_ids(tokenizer, model_dir)
        if tokenizer.eos_token_id is None:
            raise UserError(
                f"{model_dir}: the tokenizer has no eos_token; span-corruption examples end with it"
            )
        return t5.measure(
            model,
            ids,
            window=window,
            batch_size=batch_size,
            sentinels=sentinels,
            eos_id=tokenizer.eos_token_id,
        )
    from llmforge.eval import perplexity as ppl

    return ppl.measure(model, tokenizer, ids, n_bytes, window=window, stride=stride, batch_size=batch_size)


@app.command("perplexity")
def perplexity(
    checkpoint: Path = typer.Argument(..., help=CKPT_HELP),
    tokens: Path | None = typer.Option(None, "--tokens", help="A tokens artifact: its val split is scored."),
    text: Path | None = typer.Option(None, "--text", help="A UTF-8 text file to score."),
    window: int | None = typer.Option(
        None,
        "--window",
        min=2,
        help="Tokens per window (default: the model's context; 512 for an encoder-decoder that gives none).",
    ),
    stride: int | None = typer.Option(
        None, "--stride", min=1, help="Tokens between window starts (default: window/2; causal LMs only)."
    ),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=2, help="Score only the first N tokens."),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Sequences per forward pass: windows (causal, default 8), one-mask copies (masked LM, default 32), "
        "examples (encoder-decoder, default 8).",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, … (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", "-o", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Perplexity and bits-per-byte on held-out text or a tokens artifact's val split (sliding window).

    Both are computed over the same tokens: those a window scores (token 0 and, at stride = window, each
    window's first token are context only), EOS targets excluded as in lm-eval's rolling log-likelihood.
    --window may not exceed the model's context. An existing report at --out is refused unless --force.

    The measure follows the checkpoint's config.json: a masked LM (BERT-style) gets pseudo-perplexity and
    pseudo bits-per-byte (each token masked in turn, non-overlapping windows; Salazar et al. 2020), an
    encoder-decoder (T5-style) the perplexity of its span-corruption targets (bits per byte: null). The
    report's `metric` says which.

    Example: llmforge eval perplexity runs/tiny/checkpoints/step-000200 --tokens runs/tiny/tokens --stride 128
    """
    if (tokens is None) == (text is None):
        raise UserError("--tokens/--text: give exactly one of them")
    from llmforge.artifacts import require
    from llmforge.eval import checkpoint as ckpt
    from llmforge.eval import perplexity as ppl
    from llmforge.eval import report

    model_dir = ckpt.resolve(checkpoint)
    kind = ckpt.model_kind(model_dir)
    if tokens is not None:
        require(tokens, "tokens")
    elif not text.is_file():
        raise UserError(f"{text}: no such text file")
    context = ckpt.context_length(model_dir)
    if window is not None and context is not None and window > context:
        raise UserError(
            f"--window {window}: larger than the model's context ({context} tokens in {model_dir})"
        )
    if stride is not None and kind != "causal":
        raise UserError(
            f"--stride: applies to causal LMs only; {model_dir} is {ckpt.KIND_NAMES[kind]}, scored in "
            "non-overlapping windows"
        )
    if window is not None and stride is not None and stride > window:
        raise UserError(f"--stride {stride}: must be between 1 and the window ({window})")
    window = window or _perplexity_window(kind, model_dir, context)
    stride = stride or max(1, window // 2)
    out = out or _default_out(model_dir, "perplexity")
    outputs.report_dir(out, force=force)
    _quiet_libraries()
    model, tokenizer = ckpt.load(model_dir, device, kind)
    source = tokens if tokens is not None else text
    if tokens is not None:
        ids, n_bytes = ppl.tokens_stream(tokenizer, tokens, max_tokens)
        name = f"perplexity:{tokens.resolve().name}/val"
    else:
        ids, n_bytes = ppl.text_stream(tokenizer, text, max_tokens)
        name = f"perplexity:{text.name}"
    batch_size = batch_size or PERPLEXITY_BATCH[kind]
    result = _measure_perplexity(kind, model, tokenizer, model_dir, ids, n_bytes, window, stride, batch_size)
    results = ppl.as_results(name, result, model_dir)
    report.write(
        out,
        results,
        title=f"{result.metric.capitalize()} of {model_dir}",
        model_dir=model_dir,
        recipe={
            "source": str(source),
            "metric": result.metric,
            "window": window,
            "stride": result.stride,
            "max_tokens": max_tokens,
        },
        inputs=[source],
    )
    if as_json:
        emit_json({"report": str(out), **results["results"][name]})
        return
    measure = result.metric.replace("-", " ")
    bits = "n/a (targets are a sample of the text)" if result.bits_per_byte is None else result.bits_per_byte
    summary_table(
        f"{measure} {report.model_label(model_dir)}",
        {
            "source": str(source),
            measure: result.perplexity,
            "bits per byte": bits,
            "tokens scored": result.tokens,
            "bytes": "-" if result.bytes is None else result.bytes,
            "bytes/token": "-" if result.bytes is None else result.bytes / result.tokens,
            "window / stride": f"{window} / {result.stride}",
            "report": str(out),
        },
    )


@app.command("samples")
def samples(
    checkpoint: Path = typer.Argument(..., help=CKPT_HELP),
    prompts: Path = typer.Option(
        ..., "--prompts", help="Text file (one prompt per line) or .jsonl with 'prompt'."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The review sheet to write (CSV)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Tokens generated per prompt."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy decoding."),
    seed: int = typer.Option(1234, "--seed", help="Sampling seed (temperature > 0)."),
    batch_size: int = typer.Option(
        8, "--batch-size", min=1, help="Prompts generated together (left-padded)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, … (default: cuda if available)."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing sheet at --out (it may hold ratings)."
    ),
) -> None:
    """Generate completions into a review sheet (prompt, output, empty rating and comment columns).

    --out must be a file path, checked before anything is generated; an existing sheet (perhaps already
    rated) is refused unless --force is given.

    Example: llmforge eval samples runs/tiny/checkpoints/step-000200 --prompts prompts.txt --out sheet.csv
    """
    from llmforge.eval import checkpoint as ckpt
    from llmforge.eval import samples as sheets

    ckpt.require_causal(checkpoint, "eval samples")
    texts = sheets.read_prompts(prompts)
    outputs.file(out, example="sheet.csv", force=force)
    _quiet_libraries()
    model, tokenizer = ckpt.load(ckpt.resolve(checkpoint), device)
    completions = sheets.generate(
        model,
        tokenizer,
        texts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
    )
    sheets.write_sheet(out, texts, completions)
    info(
        f"wrote {len(texts)} samples to {out}; fill in the 'rating' (and 'comment') column, then: llmforge eval ratings {out}"
    )


@app.command("ratings")
def ratings(
    sheets: list[Path] = typer.Argument(
        ..., help="Filled-in review sheets (one per rater, or rating_<rater> columns)."
    ),
    level: str = typer.Option(
        "interval", "--level", help="Krippendorff's alpha metric: interval or nominal."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Aggregate review ratings: mean, distribution, per-rater means, Krippendorff's alpha between raters.

    Example: llmforge eval ratings alice.csv bob.csv
    """
    from llmforge.eval.ratings import read_sheets, summarize

    summary = summarize(read_sheets(sheets), level)
    if as_json:
        emit_json(summary)
        return
    rows = {
        "items": summary["items"],
        "ratings": summary["ratings"],
        "raters": ", ".join(summary["raters"]),
        "mean rating": summary["mean"],
    }
    rows.update({f"rating {k}": v for k, v in summary["distribution"].items()})
    rows.update({f"mean of {r}": v for r, v in summary["per_rater_mean"].items()})
    if "krippendorff_alpha" in summary:
        rows[f"Krippendorff's alpha ({level})"] = summary["krippendorff_alpha"]
    summary_table("ratings", rows)


@app.command("compare")
def compare(
    reports: list[Path] = typer.Argument(
        ..., help="Report artifacts, in the order to show (e.g. early → final)."
    ),
    png: Path | None = typer.Option(
        None, "--png", help="Also plot every metric across the reports' models here."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Compare reports across checkpoints: one column per model (named run/step), delta = last − first, optional plot.

    Example: llmforge eval compare runs/tiny/reports/*/step-000050 runs/tiny/reports/*/step-000200 --png cmp.png
    """
    from llmforge.eval.compare import load, plot
    from llmforge.eval.report import fmt

    if png is not None:
        outputs.file(png, flag="--png", example="compare.png")
    comparison = load(reports)
    if png is not None:
        plot(comparison, png)
    if as_json:
        emit_json(comparison.to_json())
        return
    rows = []
    for key, per_model in comparison.rows.items():
        delta = comparison.delta(key)
        cells = [fmt(per_model[m]) if m in per_model else "-" for m in comparison.models]
        rows.append(
            (
                f"{key[0]} {key[1]}" + ("" if key[2] == "none" else f" ({key[2]})"),
                *cells,
                "-" if delta is None else f"{delta:+.4g}",
            )
        )
    summary_table("comparison", rows, ("task metric", *comparison.models, "delta"))
    if png is not None:
        info(f"plot: {png}")

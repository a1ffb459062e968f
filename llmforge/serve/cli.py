"""`llmforge serve` and `llmforge review`. Light to import: FastAPI, uvicorn and torch load inside the commands,
after every flag, file and the port have been checked (a mistake exits 2 before minutes of model loading)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from llmforge.console import UserError, info, quiet_hf_libraries, state, summary_table
from llmforge.serve.limits import ServerLimits

CKPTS_HELP = (
    "Checkpoints to serve: PATH (its id in the API is the path as typed) or NAME=PATH. Any causal-LM dir "
    "llmforge generate takes: a pretrain step, a fine-tune's or rlhf's checkpoint, a LoRA adapter."
)
HOST = typer.Option(
    "127.0.0.1", "--host", help="Address to listen on; anything but 127.0.0.1/::1/localhost needs --api-key."
)
PORT = typer.Option(8000, "--port", help="TCP port.")
API_KEY = typer.Option(
    None,
    "--api-key",
    help="Require 'Authorization: Bearer KEY' on every route (default: $LLMFORGE_API_KEY, if set).",
)
STEER = typer.Option(
    None, "--steer", help="Steer every reply with a TOML config (as llmforge generate --steer)."
)
DEVICE = typer.Option("auto", "--device", help="auto (cuda if available), cpu, cuda, cuda:1 …")
MAX_TOKENS = typer.Option(512, "--max-tokens", min=1, help="Most tokens one request may ask for (more: 400).")
MAX_BODY = typer.Option(1_000_000, "--max-body", min=1024, help="Largest request body in bytes (more: 413).")
PARALLEL = typer.Option(2, "--parallel", min=1, max=64, help="Generations that run at once.")
MAX_WAITING = typer.Option(32, "--max-waiting", min=0, help="Requests that may wait for a slot (more: 503).")


def _limits(max_tokens: int, max_body: int, parallel: int, max_waiting: int) -> ServerLimits:
    return ServerLimits(max_tokens=max_tokens, max_body_bytes=max_body, parallel=parallel, max_waiting=max_waiting,
                        default_max_tokens=min(128, max_tokens))  # fmt: skip


def _prepare(host: str, port: int, api_key: str | None, steer: Path | None):
    from llmforge.serve.netcheck import api_key as key_of
    from llmforge.serve.netcheck import check_host, check_port

    key = key_of(api_key)
    check_host(host, key)
    check_port(host, port)
    steering = None
    if steer is not None:
        from llmforge.generation.steering import load_steering

        steering = load_steering(steer)
    return key, steering


def _load_models(specs: list[str], device: str, steering) -> list:
    from llmforge.generation.loading import check_model_dir, load_for_generation
    from llmforge.generation.steering import steering_kwargs
    from llmforge.serve.models import ServedModel, model_ids

    named = model_ids(specs)
    for _, path in named:  # every path checked before the first (slow) load
        check_model_dir(path)
    quiet_hf_libraries()
    served = []
    for name, path in named:
        loaded = load_for_generation(path, device)
        steering_kwargs(steering, loaded.tokenizer)  # a word this tokenizer cannot encode exits 2 now
        served.append(ServedModel(name, loaded))
        template = "chat template" if loaded.has_chat_template else "no chat template: /v1/completions only"
        info(f"[dim]loaded {escape(name)} ({escape(str(path))}) on {loaded.device}, {template}[/]")
    return served


def _run(app, host: str, port: int, what: str) -> None:
    import uvicorn

    _log_requests(not state.quiet)
    shown = f"[{host}]" if ":" in host else host
    info(f"[bold]{what}[/] on http://{shown}:{port}  (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning" if state.quiet else "info",
                access_log=not state.quiet, timeout_graceful_shutdown=5)  # fmt: skip


def _log_requests(verbose: bool) -> None:
    """The server's own log (one line per answered request, errors with their ids) on stderr beside
    uvicorn's."""
    import logging

    log = logging.getLogger("llmforge.serve")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


def serve(
    checkpoints: list[str] = typer.Argument(..., help=CKPTS_HELP),
    host: str = HOST,
    port: int = PORT,
    api_key: str | None = API_KEY,
    steer: Path | None = STEER,
    device: str = DEVICE,
    max_tokens: int = MAX_TOKENS,
    max_body: int = MAX_BODY,
    parallel: int = PARALLEL,
    max_waiting: int = MAX_WAITING,
) -> None:
    """Serve checkpoints over an OpenAI-compatible API — POST /v1/chat/completions and /v1/completions (with
    "stream": true for server-sent events), GET /v1/models, GET /health — and a chat playground at / (two
    checkpoints side by side). Replies use the checkpoint's chat template and stop ids, as llmforge chat does.

    Example: llmforge serve runs/tiny/finetune/checkpoint --port 8000

    Example (two checkpoints, named, behind a key on every address): llmforge serve
    sft=runs/tiny/finetune/checkpoint dpo=runs/tiny/rlhf/dpo/checkpoint --host 0.0.0.0 --api-key "$KEY"
    """
    from llmforge.serve.app import build_app
    from llmforge.serve.models import ModelPool

    key, steering = _prepare(host, port, api_key, steer)
    limits = _limits(max_tokens, max_body, parallel, max_waiting)
    pool = ModelPool(_load_models(checkpoints, device, steering), limits, steering)
    _run(build_app(pool, api_key=key), host, port, f"serving {len(pool.models)} model(s)")


def review(
    inputs: list[Path] = typer.Argument(
        ...,
        help="What to review: rlhf round candidates.jsonl or a jsonl of completion_a/completion_b pairs; prompts "
        "(.txt, or .jsonl with 'prompt') to pair with --model; eval samples sheets (.csv); or run directories "
        "(their candidates.jsonl files and review sheets).",
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="A checkpoint for the playground and for pairing prompts (repeatable, NAME=PATH).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Where the store and the exported files go (default: review/ beside the first input).",
    ),
    rubric: Path | None = typer.Option(
        None, "--rubric", help="A text/markdown file shown to expert reviewers."
    ),
    scale: int = typer.Option(5, "--scale", min=2, max=10, help="Expert ratings go from 1 to this."),
    max_new_tokens: int = typer.Option(
        64, "--max-new-tokens", "-n", min=1, help="Reply length when pairing prompts."
    ),
    temperature: float = typer.Option(
        0.8, "--temperature", "-t", min=0.0, help="Sampling temperature when pairing."
    ),
    seed: int = typer.Option(1234, "--seed", min=0, help="Seed of the paired replies."),
    host: str = HOST,
    port: int = PORT,
    api_key: str | None = API_KEY,
    steer: Path | None = STEER,
    device: str = DEVICE,
    max_tokens: int = MAX_TOKENS,
) -> None:
    """Open review pages in the browser for people: /review/pairs labels preference pairs (A / B / tie / skip,
    keys a, b, t, s; a reason optional), /review/expert rates samples on the rubric with a correction and the
    reasoning, / is the chat playground of the --model checkpoints. Several people label at once, each under
    their own name; everything submitted is in OUT/review.sqlite at once and exported to OUT/preferences.jsonl
    (the rows rlhf's [[rlhf.preferences]] reads, with labeller and models) and OUT/ratings/NAME.csv (the
    sheets llmforge eval ratings reads). Reopening the same inputs resumes.

    Example: llmforge review runs/tiny/rlhf/dpo/rounds/round-2/candidates.jsonl --out runs/tiny/review

    Example (pairs from two checkpoints, and an expert sheet): llmforge review prompts.txt sheet.csv
    --model sft=runs/tiny/finetune/checkpoint --model dpo=runs/tiny/rlhf/dpo/checkpoint --out runs/tiny/review
    """
    from llmforge.generation.settings import SamplingSettings
    from llmforge.serve.review.items import read_inputs

    key, steering = _prepare(host, port, api_key, steer)
    found = read_inputs(inputs)
    if found.prompts and not model:
        raise UserError(f"{found.prompts[0][0]}: holds prompts; pair them with --model CKPT (one or two)")
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed).checked()
    if found.prompts:
        from llmforge.serve.review.pairs import plan_models

        plan_models(list(model), temperature)  # one or two checkpoints, and sampling with one
    rubric_text = _rubric(rubric, scale)
    if out is None:
        out = (inputs[0].parent if inputs[0].is_file() else inputs[0]) / "review"
    _check_out(out)

    from llmforge.serve.app import build_app
    from llmforge.serve.models import ModelPool
    from llmforge.serve.review.pairs import generate_pairs
    from llmforge.serve.review.routes import Review
    from llmforge.serve.review.store import ReviewStore

    store = ReviewStore(out, rating_scale=(1, scale))
    served = _load_models(list(model), device, steering) if model else []
    added = store.add_items(found.pairs + found.samples)
    if found.prompts:
        added += store.add_items(generate_pairs(served, found.prompts, settings, steering, store.has))
    summary = store.summary()
    summary_table("review", {
        "inputs": len(found.files), "pairs": summary["pairs"]["items"], "samples": summary["samples"]["items"],
        "new items": added, "labels so far": summary["pairs"]["labels"], "ratings so far": summary["samples"]["ratings"],
        "store": str(out / "review.sqlite"),
    })  # fmt: skip
    pool = ModelPool(served, _limits(max_tokens, 1_000_000, 2, 32), steering)
    app = build_app(pool, api_key=key, review=Review(store, rubric_text))
    _run(app, host, port, "review pages at /review")


def _rubric(path: Path | None, scale: int) -> str:
    if path is None:
        return (
            f"Rate how well the output answers the prompt, 1 (wrong or harmful) to {scale} (correct, complete, "
            "well put). Correct the output where it is wrong, and say why: what you looked at, what is wrong, "
            "what a good answer needs."
        )
    if not path.is_file():
        raise UserError(f"--rubric {path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--rubric {path}: not UTF-8 text ({e})") from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    import os

    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: {parent} is not writable")

"""`llmforge generate` and `llmforge chat`: continue prompts, or talk, with any causal-LM checkpoint or LoRA
adapter. Light to import: torch and transformers load inside the commands.

Output: generated text on stdout (streamed as it is produced); prompts, labels and per-reply statistics on
stderr; with `generate --json`, stdout holds one JSON list and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from llmforge.console import UserError, console, emit_json, info, quiet_hf_libraries, state, warn
from llmforge.generation.prompts import read_prompts
from llmforge.generation.settings import SamplingSettings, unescape_stop

CKPT_HELP = (
    "A causal-LM checkpoint (runs/<name>/checkpoints/step-NNNNNN, a fine-tune's checkpoint, any local Hugging Face "
    "model dir) or a LoRA adapter dir."
)


def _settings(
    max_new_tokens: int, temperature: float, top_p: float, top_k: int, repetition_penalty: float,
    seed: int | None, stop: list[str],
) -> SamplingSettings:  # fmt: skip
    return SamplingSettings(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
        stop=tuple(unescape_stop(s) for s in stop),
    ).checked()


# Shared sampling options (typer reads them from each command's signature).
MAX_NEW = typer.Option(128, "--max-new-tokens", "-n", help="Most tokens to generate per reply.")
TEMPERATURE = typer.Option(
    0.7, "--temperature", "-t", help="Sampling temperature; 0 = greedy (deterministic)."
)
TOP_P = typer.Option(
    1.0,
    "--top-p",
    help="Nucleus sampling: keep the smallest set of tokens with this much probability (1 = off).",
)
TOP_K = typer.Option(0, "--top-k", help="Keep only the k most likely tokens (0 = off).")
REP = typer.Option(
    1.0, "--repetition-penalty", help="Penalise tokens already in the text (1 = off; CTRL's θ, e.g. 1.2)."
)
SEED = typer.Option(None, "--seed", help="Seed the sampler before each prompt (same seed, same text).")
STOP = typer.Option(
    [],
    "--stop",
    help=r"End a reply when its text contains this string, cut before it (repeatable; \n = newline).",
)
DEVICE = typer.Option("auto", "--device", help="auto (cuda if available), cpu, cuda, cuda:1 …")
SYSTEM = typer.Option(None, "--system", help="A system message before the user's (chat template only).")
STEER = typer.Option(
    None,
    "--steer",
    help='Steer the output with a TOML config: banned_words = [...] and/or banned_words_file = "words.txt" '
    '(never generated: lower, capitalised or upper case, with or without a leading space), prefix = "..." '
    "(put before every prompt, or the system text in a chat), a \\[token_bias] table of word = logit bias "
    "(e.g. love = 2.0, hate = -5.0). Example: --steer recipes/steer.toml",
)


def _steering(path: Path | None):
    """The --steer config, read and checked before the model loads (a bad one exits 2 at once)."""
    if path is None:
        return None
    from llmforge.generation.steering import load_steering

    return load_steering(path)


def _say_steering(steering) -> None:
    if steering is not None:
        parts = [f"{len(steering.banned_words)} banned words"] * bool(steering.banned_words)
        parts += [f"{len(steering.token_bias)} biased words"] * bool(steering.token_bias)
        parts += [f"a prefix of {len(steering.prefix)} characters"] * bool(steering.prefix)
        info(f"[dim]steering from {escape(steering.where)}: {', '.join(parts)}[/]")


def _load(checkpoint: Path, device: str):
    from llmforge.generation.loading import load_for_generation

    quiet_hf_libraries()
    return load_for_generation(checkpoint, device)


def _stats(gen) -> str:
    return (
        f"[dim]{gen.prompt_tokens} prompt + {gen.new_tokens} new tokens, {gen.tokens_per_second:.1f} tok/s, "
        f"{gen.finish_reason}[/]"
    )


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def generate(
    checkpoint: Path = typer.Argument(..., help=CKPT_HELP),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="A prompt to continue (repeatable)."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help='Prompts: a .txt file (one per line) or .jsonl ({"prompt": …} per line).'
    ),
    max_new_tokens: int = MAX_NEW,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    top_k: int = TOP_K,
    repetition_penalty: float = REP,
    seed: int | None = SEED,
    stop: list[str] = STOP,
    chat: bool = typer.Option(
        False, "--chat", help="Treat each prompt as a user message in the chat template."
    ),
    system: str | None = SYSTEM,
    steer: Path | None = STEER,
    no_stream: bool = typer.Option(False, "--no-stream", help="Print each text when it is complete."),
    device: str = DEVICE,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON list of {prompt, text, new_tokens, prompt_tokens, finish_reason} only.",
    ),
) -> None:
    """Continue prompts with a checkpoint: the text streams to stdout, a line of statistics per prompt (tokens,
    tokens/s, why it ended: stop, eos, length) goes to stderr. With --chat each prompt is a user turn in the
    model's chat template (a fine-tuned checkpoint). --steer bans words, biases others and puts a steering
    prompt before each prompt.

    Example: llmforge generate runs/tiny/checkpoints/step-000200 --prompt "def add(a, b):" --max-new-tokens 32 --temperature 0

    Example (recipes/steer.toml bans the LDNOOBW list and adds a steering prefix): llmforge generate
    runs/tiny/checkpoints/step-000200 --prompt "def add(a, b):" --steer recipes/steer.toml
    """
    from llmforge.generation.sampling import encode_prompts, generate_ids

    settings = _settings(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed, stop)
    prompts = list(prompt) + (read_prompts(file) if file is not None else [])
    if not prompts:
        raise UserError("no prompt: give --prompt TEXT (repeatable) or --file FILE")
    if system is not None and not chat:
        raise UserError("--system: needs --chat (a system message goes into the chat template)")
    steering = _steering(steer)
    loaded = _load(checkpoint, device)
    # every prompt is checked (template, context, steering words) before anything is printed: a refusal stays
    # one line
    encoded = encode_prompts(loaded, prompts, settings, chat=chat, system=system, steering=steering)
    info(f"[dim]loaded {escape(str(checkpoint))} on {loaded.device}[/]")
    _say_steering(steering)
    if as_json or no_stream:
        gens = []
        for i, (p, ids) in enumerate(zip(prompts, encoded, strict=True)):
            gens.append(generate_ids(loaded, p, ids, settings, steering=steering))
            info(f"[dim]{i + 1}/{len(prompts)}:[/] " + _stats(gens[-1]))
        if as_json:
            emit_json([g.to_dict() for g in gens])
        else:
            _write("\n\n".join(g.text for g in gens) + "\n")
        return
    for i, (p, ids) in enumerate(zip(prompts, encoded, strict=True)):
        if i:
            _write("\n")  # a blank line between two prompts' texts
        if not state.quiet and sys.stderr.isatty() and sys.stdout.isatty():
            # in a terminal the prompt (on stderr) runs on into its continuation (on stdout)
            console.print(p if not chat else f"user: {p}\nassistant: ", end="", style="dim", markup=False,
                          highlight=False, soft_wrap=True)  # fmt: skip
        gen = generate_ids(loaded, p, ids, settings, on_text=_write, steering=steering)
        _write("\n")
        info(_stats(gen))


def chat(
    checkpoint: Path = typer.Argument(..., help=CKPT_HELP),
    system: str | None = SYSTEM,
    max_new_tokens: int = MAX_NEW,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    top_k: int = TOP_K,
    repetition_penalty: float = REP,
    seed: int | None = SEED,
    stop: list[str] = STOP,
    steer: Path | None = STEER,
    device: str = DEVICE,
) -> None:
    """Talk with a fine-tuned checkpoint in the terminal: each line you type is a user turn, the reply streams to
    stdout, the conversation so far goes into the chat template. /reset starts over, /exit (or end of input)
    ends. Reads stdin, so `printf 'hi\\n/exit\\n' | llmforge chat CKPT` works too; labels go to stderr.

    Example: llmforge chat runs/tiny/finetune/checkpoint --temperature 0 --max-new-tokens 64

    Example: llmforge chat runs/tiny/finetune/checkpoint --steer recipes/steer.toml
    """
    from llmforge.generation.sampling import chat_reply, require_chat_template
    from llmforge.generation.steering import steering_kwargs

    settings = _settings(max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed, stop)
    steering = _steering(steer)
    loaded = _load(checkpoint, device)
    require_chat_template(loaded)
    # a steering word this tokenizer cannot encode is refused before the conversation starts
    steering_kwargs(steering, loaded.tokenizer)
    if loaded.context is not None and settings.max_new_tokens >= loaded.context:
        raise UserError(
            f"--max-new-tokens {settings.max_new_tokens}: leaves no room for the conversation in the model's "
            f"context of {loaded.context} tokens"
        )
    info(f"[dim]loaded {escape(str(checkpoint))} on {loaded.device}[/]")
    _say_steering(steering)
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    if sys.stdin.isatty():
        import readline  # noqa: F401 - line editing and history for input()

        info("[dim]/reset clears the conversation, /exit (or Ctrl-D) ends[/]")
    while True:
        console.print("you> ", end="", style="bold", markup=False, highlight=False)
        try:
            line = input()
        except EOFError:
            console.print()
            break
        if not sys.stdin.isatty():  # piped input is not echoed by a terminal: show it beside its label
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        command = line.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            history = list(start)
            info("[dim](conversation cleared)[/]")
            continue
        history.append({"role": "user", "content": line})
        console.print("assistant> ", end="", style="bold", markup=False, highlight=False)
        try:
            gen = chat_reply(loaded, history, settings, on_text=_write, steering=steering)
        except UserError as e:  # e.g. one message longer than the context: say so, keep the conversation
            history.pop()
            _write("\n")
            warn(str(e))
            continue
        _write("\n")
        history.append({"role": "assistant", "content": gen.text})
        info(_stats(gen))

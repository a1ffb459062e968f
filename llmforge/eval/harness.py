"""Benchmarks through lm-evaluation-harness (`lm_eval.simple_evaluate`); llmforge re-implements no scoring."""

from __future__ import annotations

import functools
import json
import subprocess
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

from llmforge.console import UserError, state
from llmforge.eval import checkpoint


def evaluate(
    model_dir: Path,
    tasks: list[str],
    *,
    include_dir: Path | None,
    num_fewshot: int | None,
    limit: int | None,
    batch_size: int,
    device: str | None,
    max_gen_toks: int | None,
    log_samples: bool = False,
) -> dict[str, Any]:
    """lm-eval's results dict (results, groups, configs, versions, n-shot, n-samples, …), JSON-safe; with
    `log_samples`, its per-item records under "samples" ({task: [record, …]}).

    The model is loaded once here (a load failure is a user error) and handed to lm-eval's `HFLM`, which scores
    it exactly as `lm_eval --model hf --model_args pretrained=DIR` would.
    """
    import lm_eval
    import lm_eval.evaluator
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    model, tokenizer = checkpoint.load(model_dir, device)
    lm = make_lm(model, tokenizer, batch_size)
    fit = ContextFit(lm)
    if state.quiet:
        _silence_request_bars(lm)
    # offline, every task is one of our YAMLs: indexing lm-eval's ~13k built-in ones would take most of the
    # run's start-up (~30 s of a 50 s CrowS-Pairs eval on 2 cores)
    manager = (
        TaskManager(include_path=str(include_dir), include_defaults=False) if include_dir else TaskManager()
    )
    try:
        # lm-eval runs `git describe` for its results with git's stderr left on ours ("fatal: not a git
        # repository" outside a checkout): the same question, asked quietly.
        with mock.patch.object(lm_eval.evaluator, "get_git_commit_hash", _quiet_git_hash):
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                num_fewshot=num_fewshot,
                limit=limit,
                task_manager=manager,
                log_samples=log_samples,
                gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
            )
    except AssertionError as e:
        # lm-eval checks requests against the model with bare asserts (e.g. a generation budget or an answer
        # longer than the model's context): name the check that failed instead of an empty AssertionError.
        check = str(e) or traceback.extract_tb(e.__traceback__)[-1].line
        raise UserError(
            f"{model_dir}: lm-eval rejected a request for this model (context {lm.max_length} tokens): {check}"
            " (for generation tasks, lower --max-gen-toks)"
        ) from None
    results = dict(results)
    results["config"] = {**results.get("config", {}), "model_args": f"pretrained={model_dir.resolve()}"}
    results["truncated"] = fit.summary()
    return json.loads(json.dumps(results, default=handle_non_serializable))


def make_lm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's HFLM around a loaded model, conditioning on the token training put before every document.

    Documents are separated by EOS in training (DESIGN §2, tokens), so EOS is what the model saw before a
    document's first token. lm-eval prefixes rolling log-likelihood and empty-context requests with the
    tokenizer's BOS when it has one; a tokenizer declaring a BOS other than EOS would make the first token
    score after a token the model never saw, so the prefix is set to EOS (lm-eval's `prefix_token_id`).
    """
    from lm_eval.models.huggingface import HFLM

    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    prefix = eos if eos is not None and bos != eos else None
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, prefix_token_id=prefix)


class ContextFit:
    """Fits every log-likelihood request into the model's context before lm-eval scores it, counting per task
    the documents that were cut.

    A context too long for the window loses its oldest tokens, exactly as lm-eval itself truncates it (the same
    input, without its warning per request). An answer longer than the whole context (lm-eval stops the run on
    it with an assert) is scored on its last `max_length` tokens, each with the most context that fits: left
    truncation carried into the answer, so one long item no longer loses every other result.
    """

    def __init__(self, lm: Any):
        self.max_length = lm.max_length
        self.where: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
        self.cut: dict[str, dict[str, set[int]]] = defaultdict(lambda: {"contexts": set(), "answers": set()})
        original_loglikelihood, original_tokens = lm.loglikelihood, lm._loglikelihood_tokens

        @functools.wraps(original_loglikelihood)
        def loglikelihood(requests: list, *args: Any, **kwargs: Any) -> Any:
            for r in requests:
                self.where[tuple(r.args)].add((r.task_name, r.doc_id))
            return original_loglikelihood(requests, *args, **kwargs)

        @functools.wraps(original_tokens)
        def loglikelihood_tokens(requests: list, *args: Any, **kwargs: Any) -> Any:
            return original_tokens([self.fit(r) for r in requests], *args, **kwargs)

        lm.loglikelihood, lm._loglikelihood_tokens = loglikelihood, loglikelihood_tokens

    def fit(self, request: tuple) -> tuple:
        key, context, answer = request
        limit = self.max_length
        if len(context) + len(answer) <= limit + 1:
            return request
        kind = "answers" if len(answer) > limit else "contexts"
        for task, doc in self.where.get(tuple(key), ()) if isinstance(key, tuple) else ():
            self.cut[task][kind].add(doc)
        if kind == "contexts":
            return key, context[-(limit + 1 - len(answer)) :], answer
        whole = context + answer
        return key, whole[-(limit + 1) : -limit], whole[-limit:]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per task: documents whose context was cut, and documents with an answer longer than the context."""
        return {
            task: {"max_length": self.max_length, **{kind: len(docs) for kind, docs in cut.items()}}
            for task, cut in sorted(self.cut.items())
        }


def truncation_line(summary: dict[str, dict[str, int]]) -> str | None:
    """One line for the user, or None when nothing was cut."""
    parts = []
    for task, n in summary.items():
        said = [f"{n['contexts']} with the context cut"] if n["contexts"] else []
        if n["answers"]:
            said.append(f"{n['answers']} with an answer scored on its last {n['max_length']} tokens")
        parts.append(f"{task} " + ", ".join(said))
    if not parts:
        return None
    context = next(iter(summary.values()))["max_length"]
    return f"documents longer than the {context}-token context, truncated from the left: " + "; ".join(parts)


def _quiet_git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _silence_request_bars(lm: Any) -> None:
    """The harness passes `disable_tqdm` to its per-request bars itself (rolling log-likelihood even hard-codes
    False), so neither TQDM_DISABLE nor its own argument reaches them: force it on the model's methods."""

    def forced(method: Any) -> Any:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **{**kwargs, "disable_tqdm": True})

        return call

    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until", "_loglikelihood_tokens"):
        setattr(lm, name, forced(getattr(lm, name)))


def known_online_tasks() -> list[str]:
    """Every task, group and tag name in the harness's registry."""
    from lm_eval.tasks import TaskManager

    return TaskManager().all_tasks

"""Benchmarks through lm-evaluation-harness (`lm_eval.simple_evaluate`); llmforge re-implements no scoring."""

from __future__ import annotations

import functools
import json
import traceback
from pathlib import Path
from typing import Any

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
) -> dict[str, Any]:
    """lm-eval's results dict (results, groups, configs, versions, n-shot, n-samples, …), JSON-safe.

    The model is loaded once here (a load failure is a user error) and handed to lm-eval's `HFLM`, which scores
    it exactly as `lm_eval --model hf --model_args pretrained=DIR` would.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    model, tokenizer = checkpoint.load(model_dir, device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    if state.quiet:
        _silence_request_bars(lm)
    manager = TaskManager(include_path=str(include_dir) if include_dir else None)
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=False,
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
    return json.loads(json.dumps(results, default=handle_non_serializable))


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

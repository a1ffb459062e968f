"""Chain of thought and exemplars: FLAN's four fine-tuning settings (Chung et al. 2022, "Scaling
Instruction-Finetuned Language Models", §2.3): zero-shot or few-shot (`exemplars = 0 | k`) × with or without
chain-of-thought (`cot = true | false`). Pure Python, no torch.

The exact text, for a dataset with `answer_marker = M`, `answer_prefix = P` (default "The answer is ") and
`exemplar_format = F` (default "Q: {prompt}\\nA: {completion}"):

1. A solved completion is split at the LAST occurrence of M into reasoning (stripped) and answer (stripped).
   A completion without M is an error (the caller names its file and row).
2. Its training text is
   - cot = true:  f"{reasoning}\\n{P}{answer}"   (just f"{P}{answer}" when the reasoning is empty)
   - cot = false: f"{P}{answer}"
   Without a marker the completion is kept unchanged (cot = false needs a marker; the config refuses it).
3. With k exemplars, the user content is the k exemplars, each `F.format(prompt=…, completion=…)` with the
   exemplar's own prompt and its completion transformed as in 2., joined by "\\n\\n", then "\\n\\n" and the
   row's own prompt:
       F(p1, c1) + "\\n\\n" + … + F(pk, ck) + "\\n\\n" + prompt
   The exemplars are k distinct train rows of the same dataset (never a held-out row, never the row itself),
   drawn by a generator seeded with (seed, dataset index, split, row), so a row always gets the same ones.

GSM8K (M = "####"): the answer "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\\n…market.\\n#### 18"
trains as "Janet sells … market.\\nThe answer is 18" with cot and as "The answer is 18" without; a 1-shot
prompt reads "Q: <exemplar question>\\nA: <exemplar answer as above>\\n\\n<question>".
"""

from __future__ import annotations

import random

from llmforge.console import UserError

EXEMPLAR_SEPARATOR = "\n\n"


def split_answer(completion: str, marker: str) -> tuple[str, str] | None:
    """(reasoning, answer) around the last `marker`, both stripped; None when the marker does not occur."""
    at = completion.rfind(marker)
    if at < 0:
        return None
    return completion[:at].strip(), completion[at + len(marker) :].strip()


def solved_text(reasoning: str, answer: str, *, cot: bool, answer_prefix: str) -> str:
    """The completion a split answer trains as (step 2 of the module docstring)."""
    final = f"{answer_prefix}{answer}"
    return f"{reasoning}\n{final}" if cot and reasoning else final


def check_exemplar_format(exemplar_format: str, key: str) -> None:
    """UserError when `exemplar_format` uses a placeholder other than {prompt} and {completion} (or stray
    braces), before any row is rendered."""
    try:
        exemplar_format.format(prompt="", completion="")
    except (KeyError, IndexError, ValueError) as e:
        raise UserError(
            f"{key}.exemplar_format = {exemplar_format!r}: cannot be filled with only {{prompt}} and "
            f"{{completion}} ({type(e).__name__}: {e}); write a literal brace as {{{{ or }}}}"
        ) from None


def exemplar_seed(seed: int, dataset_index: int, split: str, row: int) -> str:
    """The generator seed of one row's exemplars (a string: `random` hashes it with SHA-512, so it is the same
    in every process)."""
    return f"exemplars:{seed}:{dataset_index}:{split}:{row}"


def pick_exemplars(pool_size: int, k: int, seed: str, exclude: int | None = None) -> list[int]:
    """k distinct indices into a pool of `pool_size` train rows, never `exclude` (the row itself)."""
    size = pool_size - (exclude is not None)
    if k > size:
        raise ValueError(f"{k} exemplars from {size} rows")
    picks = random.Random(seed).sample(range(size), k)
    return [j + 1 if exclude is not None and j >= exclude else j for j in picks]


def few_shot_prompt(prompt: str, shots: list[tuple[str, str]], exemplar_format: str) -> str:
    """The user content with exemplars (step 3 of the module docstring); `prompt` alone without any."""
    parts = [exemplar_format.format(prompt=p, completion=c) for p, c in shots]
    return EXEMPLAR_SEPARATOR.join([*parts, prompt])

"""Pairs to label made from prompts: one reply from each of two checkpoints, or two seeded samples of one.

A prompt goes into a checkpoint's chat template as a user turn when it has one, else it is continued as
plain text. Both replies use the same settings and seed (two samples of one model: seeds S and S+1), and a
generated pair's id is fixed before it is generated (prompt, models, settings), so a restart skips the pairs
already made instead of sampling new replies that earlier labels would not refer to.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from llmforge.console import UserError, track
from llmforge.serve.review.items import Item, item_id


def plan_models(models: list[Any], temperature: float) -> list[tuple[Any, int]]:
    """(served model, seed offset) of reply A and reply B."""
    if len(models) == 2:
        return [(models[0], 0), (models[1], 0)]
    if len(models) == 1:
        if temperature == 0:
            raise UserError(
                "--temperature 0 with one --model: its two greedy replies would be the same; sample (e.g. 0.8)"
            )
        return [(models[0], 0), (models[0], 1)]
    raise UserError(
        f"prompts to pair need one --model (two samples) or two (one reply each); got {len(models)}"
    )


def generate_pairs(models: list[Any], prompts: list[tuple[str, str]], settings: Any, steering: Any,
                   known: Any) -> list[Item]:  # fmt: skip
    """An item per prompt; `known(id)` says a pair is already stored (it is not generated again)."""
    from llmforge.generation.sampling import encode_prompts, generate_ids

    plan = plan_models(models, settings.temperature)
    names = [f"{m.id}" + (f":sample-{k + 1}" if len(models) == 1 else "") for k, (m, _) in enumerate(plan)]
    items, todo = [], []
    for source, prompt in prompts:
        key = item_id("pair", source, [prompt, names, asdict(settings)])
        items.append(key)
        if not known(key):
            todo.append((key, source, prompt))
    made: dict[str, Item] = {}
    seed = settings.seed if settings.seed is not None else 0
    for key, source, prompt in track(todo, description="generating pairs", unit="pairs"):
        replies = []
        for served, offset in plan:
            loaded = served.loaded
            chat = loaded.has_chat_template
            s = replace(settings, seed=seed + offset)
            [ids] = encode_prompts(loaded, [prompt], s, chat=chat, steering=steering)
            replies.append(generate_ids(loaded, prompt, ids, s, steering=steering).text)
        data = {"prompt": prompt, "messages": None, "a": {"text": replies[0], "model": names[0]},
                "b": {"text": replies[1], "model": names[1]}, "origin": source}  # fmt: skip
        made[key] = Item(key, "pair", source, data)
    return [made[k] for k in items if k in made]

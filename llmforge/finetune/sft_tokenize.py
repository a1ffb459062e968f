"""Instruction examples → token ids and labels, through the chat template, with the length policy applied.

Tokenizing here rather than inside trl's SFTTrainer lets the stage apply `on_too_long` ("truncate" keeps the
first `max_len` tokens, "drop" leaves the example out, "error" stops) and count what each did, check that
every example trains at least one token, and report the number of trained tokens. The rows handed to trl
already hold `input_ids` and `labels`, so trl skips its own tokenization and only pads or packs them.

Labels are the token ids where the loss applies and -100 elsewhere: with `loss_on = "completion"` the tokens
inside the template's `{% generation %}` blocks (the assistant's replies with their end-of-turn token, so the
model learns to stop even when pad = eos), with `"all"` every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmforge.console import UserError, track
from llmforge.objectives.base import IGNORE


@dataclass
class TokenizedSplit:
    rows: list[dict[str, list[int]]]
    examples: int = 0
    truncated: int = 0  # cut to max_len and kept (on_too_long = "truncate")
    dropped_too_long: int = 0  # left out (on_too_long = "drop")
    dropped_untrained: int = 0  # cut to max_len with no trained token left, so left out
    tokens: int = 0
    trained_tokens: int = 0
    longest: int = 0  # before any cut
    per_source: dict[str, int] = field(default_factory=dict)  # kept rows per dataset

    def summary(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "kept": len(self.rows),
            "truncated": self.truncated,
            "dropped_too_long": self.dropped_too_long,
            "dropped_untrained": self.dropped_untrained,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "longest_tokens": self.longest,
            "per_source": dict(self.per_source),
        }


def tokenize_split(
    examples: Sequence[Any],
    tokenizer: Any,
    *,
    template_name: str,
    loss_on: str,
    max_len: int,
    on_too_long: str,
    split: str,
) -> TokenizedSplit:
    """Render and tokenize every example (`.messages`, `.source`, `.row`); UserError on an example that trains
    no token or, with on_too_long = "error", one longer than max_len."""
    out = TokenizedSplit(rows=[], examples=len(examples))
    for ex in track(examples, total=len(examples), description=f"tokenizing {split}", unit="examples"):
        ids, labels = encode(tokenizer, ex.messages, loss_on=loss_on)
        where = f"{ex.source} row {ex.row} ({split})"
        if loss_on == "completion" and all(label == IGNORE for label in labels):
            raise UserError(
                f"{where}: the {template_name} chat template marks no assistant token to train "
                "(its {% generation %} block rendered nothing for this example)"
            )
        out.longest = max(out.longest, len(ids))
        if len(ids) > max_len:
            if on_too_long == "error":
                raise UserError(
                    f"{where}: {len(ids)} tokens after the chat template, above finetune.max_len = {max_len} "
                    "(finetune.on_too_long = 'error'); raise max_len or set on_too_long to 'truncate' or 'drop'"
                )
            if on_too_long == "drop":
                out.dropped_too_long += 1
                continue
            ids, labels = ids[:max_len], labels[:max_len]
            if all(label == IGNORE for label in labels):
                out.dropped_untrained += 1
                continue
            out.truncated += 1
        out.rows.append({"input_ids": ids, "labels": labels})
        out.tokens += len(ids)
        out.trained_tokens += sum(label != IGNORE for label in labels)
        out.per_source[ex.source] = out.per_source.get(ex.source, 0) + 1
    return out


def encode(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, loss_on: str
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation rendered with the tokenizer's chat template.

    The labels come from the template's `{% generation %}` marks when tokenizing the whole conversation puts
    a token boundary where every reply starts. When it does not (byte-level BPE merges the "\n" after
    `<|assistant|>` with a reply that starts with spaces, as code does), the prompt would be tokenized one way
    in training and another at generation, so the conversation is tokenized turn by turn instead
    (`encode_by_turns`): the tokens before each reply are exactly those generation is given."""
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=loss_on == "completion"
    )
    ids = list(rendered["input_ids"])
    by_turns, turn_labels = encode_by_turns(tokenizer, messages, loss_on=loss_on)
    if by_turns != ids:
        return by_turns, turn_labels
    if loss_on == "completion":
        mask = rendered["assistant_masks"]
        return ids, [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    return ids, list(ids)


def encode_by_turns(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, loss_on: str
) -> tuple[list[int], list[int]]:
    """Tokenize the text before each reply (what rendering the conversation up to it with the generation
    prompt gives) and each reply (what rendering the reply adds) separately. A reply's trailing whitespace
    (a newline the template puts after its end-of-turn token) is context, not trained."""
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, trained: bool) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        ids.extend(piece)
        labels.extend(piece if trained or loss_on == "all" else [IGNORE] * len(piece))

    def render(upto: int, prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            list(messages[:upto]), tokenize=False, add_generation_prompt=prompt
        )

    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, after = render(i, True), render(i + 1, False)
        if not before.startswith(done) or not after.startswith(before):
            raise UserError(
                "the chat template renders a conversation's prompt differently from the same prompt inside the "
                "whole conversation, so the tokens a reply follows in training would not be those it follows in "
                "generation; use a template whose earlier turns do not change when a reply is added"
            )
        reply = after[len(before) :]
        core = reply.rstrip()
        add(before[len(done) :], trained=False)
        add(core, trained=True)
        add(reply[len(core) :], trained=False)
        done = after
    add(render(len(messages), False)[len(done) :], trained=False)
    return ids, labels

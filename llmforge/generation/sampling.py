"""Continuing prompts: plain completion or a chat turn, with stop strings, end-of-sequence ids and streaming.

One prompt at a time through `model.generate` (the KV cache keeps each step O(context)): the streamed text, the
stop-string check and the seeded draw then belong to that prompt alone, so a prompt's output does not depend on
the others beside it, nor on whether it was streamed.

How a generation ends (`finish_reason`):
- "stop": the new text contains a stop string; the text is cut before its first occurrence.
- "eos": the model produced one of `Loaded.stop_ids` (EOS, the template's end-of-turn); that token is not in
  the text.
- "length": `max_new_tokens` tokens were produced.

Steering (`generation.steering`, optional everywhere): its prefix goes in front of each plain prompt or of the
system text when the prompt is encoded, and its banned words and biases reach `model.generate` as transformers'
`bad_words_ids` / `sequence_bias`. `Generation.prompt` stays the prompt as given; `prompt_tokens` counts the
prefix. Without steering nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmforge.console import UserError, warn
from llmforge.generation.loading import Loaded
from llmforge.generation.settings import SamplingSettings
from llmforge.generation.steering import Steering, steer_messages, steer_prompt, steer_system, steering_kwargs

FinishReason = Literal["stop", "eos", "length"]
OnText = Callable[[int, str], None]
REPLACEMENT = "\ufffd"  # what a decoder gives for the first bytes of a character split over tokens


@dataclass(frozen=True)
class Generation:
    """One prompt's continuation. `new_tokens` counts every token the model produced (an end-of-sequence token
    and the tokens of a stop string included), `prompt_tokens` the tokens it was given."""

    prompt: str
    text: str
    new_tokens: int
    prompt_tokens: int
    finish_reason: FinishReason
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seconds")
        return d

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def generate(
    loaded: Loaded,
    prompts: list[str],
    settings: SamplingSettings,
    *,
    chat: bool = False,
    system: str | None = None,
    on_text: OnText | None = None,
    steering: Steering | None = None,
) -> list[Generation]:
    """Continue each prompt; with `chat`, each prompt is a user message (after `system`, if given) rendered with
    the tokenizer's chat template. `on_text(index, delta)` receives the text as it becomes final. Every prompt
    is encoded and checked against the context before the first one is generated. `steering` applies its
    prefix, banned words and biases to every prompt."""
    encoded = encode_prompts(loaded, prompts, settings, chat=chat, system=system, steering=steering)
    return [
        generate_ids(
            loaded,
            prompt,
            ids,
            settings,
            (lambda d, i=i: on_text(i, d)) if on_text else None,
            steering=steering,
        )
        for i, (prompt, ids) in enumerate(zip(prompts, encoded, strict=True))
    ]


def encode_prompts(
    loaded: Loaded,
    prompts: list[str],
    settings: SamplingSettings,
    *,
    chat: bool = False,
    system: str | None = None,
    steering: Steering | None = None,
) -> list[list[int]]:
    """The token ids of each prompt (plain, or a user turn in the chat template), the steering prefix in front
    of the prompt or system text; UserError naming the first prompt that does not fit the context with
    `max_new_tokens` after it, or a steering word this tokenizer cannot encode."""
    settings.checked()
    if chat:
        require_chat_template(loaded)
    steering_kwargs(steering, loaded.tokenizer)  # refuse an unencodable word before anything is generated
    system = steer_system(steering, system) if chat else system
    prompts = prompts if chat else [steer_prompt(steering, p) for p in prompts]
    encoded = []
    for i, prompt in enumerate(prompts):
        system_turn = [{"role": "system", "content": system}] if system else []
        ids = (
            render_chat(loaded, [*system_turn, {"role": "user", "content": prompt}])
            if chat
            else encode_plain(loaded, prompt)
        )
        check_fits(loaded, ids, settings, f"prompt {i + 1}")
        encoded.append(ids)
    return encoded


def chat_reply(
    loaded: Loaded,
    history: list[dict[str, str]],
    settings: SamplingSettings,
    on_text: Callable[[str], None] | None = None,
    *,
    steering: Steering | None = None,
) -> Generation:
    """The assistant's next turn after `history` (messages with `role` and `content`; a system message first, if
    any). When the conversation no longer fits the context, its oldest exchanges are left out of the prompt
    (the system message is kept); `Generation.prompt` is the last user message. `steering`'s prefix goes in
    front of the system message (or is one), its banned words and biases apply to the reply."""
    settings.checked()
    require_chat_template(loaded)
    messages = list(steer_messages(steering, history))
    ids = render_chat(loaded, messages)
    while not _fits(loaded, ids, settings) and _drop_oldest_exchange(messages):
        ids = render_chat(loaded, messages)
    check_fits(loaded, ids, settings, "the conversation")
    last_user = next((m["content"] for m in reversed(history) if m.get("role") == "user"), "")
    return generate_ids(loaded, last_user, ids, settings, on_text, steering=steering)


def require_chat_template(loaded: Loaded) -> None:
    if not loaded.has_chat_template:
        raise UserError(
            f"{loaded.path}: the tokenizer has no chat template; fine-tune with finetune.chat_template or drop --chat"
        )


def render_chat(loaded: Loaded, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` in the chat template, ending with the assistant's generation prompt."""
    try:
        text = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - jinja raises its own errors (TemplateError, UndefinedError, ...)
        raise UserError(f"{loaded.path}: the chat template does not render these messages ({e})") from None
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_plain(loaded: Loaded, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts from BOS (EOS in llmforge checkpoints: a document's start)."""
    ids = loaded.tokenizer(prompt)["input_ids"]
    if ids:
        return ids
    start = loaded.tokenizer.bos_token_id
    if start is None and loaded.stop_ids:
        start = loaded.stop_ids[0]
    if start is None:
        raise UserError("an empty prompt, and the tokenizer has neither BOS nor EOS to start from")
    return [start]


def _fits(loaded: Loaded, ids: list[int], settings: SamplingSettings) -> bool:
    return loaded.context is None or len(ids) + settings.max_new_tokens <= loaded.context


def check_fits(loaded: Loaded, ids: list[int], settings: SamplingSettings, what: str) -> None:
    if not _fits(loaded, ids, settings):
        raise UserError(
            f"{what}: {len(ids)} tokens + --max-new-tokens {settings.max_new_tokens} exceed the model's context "
            f"of {loaded.context} tokens; shorten it or lower --max-new-tokens"
        )


def _drop_oldest_exchange(messages: list[dict[str, str]]) -> bool:
    """Remove the oldest user message and the replies up to the next user message; False when only the last
    user message is left."""
    start = 1 if messages and messages[0].get("role") == "system" else 0
    users = [i for i in range(start, len(messages)) if messages[i].get("role") == "user"]
    if len(users) < 2:
        return False
    del messages[users[0] : users[1]]
    return True


def generate_ids(
    loaded: Loaded,
    prompt: str,
    ids: list[int],
    settings: SamplingSettings,
    on_text: Callable[[str], None] | None = None,
    *,
    steering: Steering | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Generation:
    """Continue the prompt `ids` (the text `prompt`, recorded in the result); `on_text(delta)` streams.
    `steering`'s banned words and biases apply (its prefix belongs in `ids` already: `encode_prompts`).
    `cancelled()` is asked after every token: once true, generation ends there (a server's client has gone)."""
    import torch
    from transformers import StoppingCriteriaList

    tokenizer = loaded.tokenizer
    input_ids = torch.tensor([ids], device=loaded.device)
    streamer = TextDeltaStreamer(tokenizer, settings.stop, loaded.stop_ids, on_text)
    criteria = StoppingCriteriaList([StopOnText(tokenizer, settings.stop, len(ids))] if settings.stop else [])
    if cancelled is not None:
        criteria.append(StopWhen(cancelled))
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            stopping_criteria=criteria,
            streamer=streamer,
            **settings.to_generation_kwargs(loaded.stop_ids, tokenizer.pad_token_id),
            **steering_kwargs(steering, tokenizer),
        )
    seconds = time.perf_counter() - start
    new = out[0, len(ids) :].tolist()
    text, reason = finish(tokenizer, new, loaded.stop_ids, settings)
    if (
        on_text is not None and streamer.text != text
    ):  # a decoder that rewrites earlier text (not seen so far)
        warn(f"the streamed text differs from the decoded text: {text!r}")
    return Generation(prompt, text, len(new), len(ids), reason, seconds)


def decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` before the first occurrence of any stop string, and whether one occurred."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def finish(
    tokenizer: Any, new: list[int], stop_ids: list[int], settings: SamplingSettings
) -> tuple[str, FinishReason]:
    """The reply text of the new tokens `new` and why generation ended."""
    ended_on_id = bool(new) and new[-1] in stop_ids
    text, stopped = cut_at_stop(decode(tokenizer, new[:-1] if ended_on_id else new), settings.stop)
    if stopped:
        return text, "stop"
    if ended_on_id:
        return text, "eos"
    return text, "length"


class StopOnText:
    """A transformers stopping criterion: true once the new text (decoded from `prompt_len` on) contains one of
    the stop strings. Decoding the whole continuation each step (not the last token) finds a stop string that
    spans tokens or sits inside one."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = [
            any(s in decode(self.tokenizer, row[self.prompt_len :].tolist()) for s in self.stop)
            for row in input_ids
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopWhen:
    """A transformers stopping criterion that ends every row once `flag()` is true."""

    def __init__(self, flag: Callable[[], bool]):
        self.flag = flag

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.flag(), dtype=torch.bool, device=input_ids.device)


class TextDeltaStreamer:
    """A `transformers` streamer (BaseStreamer's put/end) that hands out the continuation's text in pieces that
    never change afterwards: text ending in a half-decoded character (U+FFFD) waits for the next token, the last
    `longest stop − 1` characters wait until it is clear they do not begin a stop string, and nothing from a stop
    string on is ever handed out. End-of-sequence ids are not text. `text` is everything handed out."""

    def __init__(
        self,
        tokenizer: Any,
        stop: tuple[str, ...],
        stop_ids: list[int],
        on_text: Callable[[str], None] | None,
    ):
        self.tokenizer, self.stop, self.stop_ids = tokenizer, stop, set(stop_ids)
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.on_text = on_text
        self.ids: list[int] = []
        self.text = ""
        self.prompt_seen = False
        self.stopped = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        if self.stopped:
            return
        for i in value.reshape(-1).tolist():
            if i in self.stop_ids:
                self.stopped = True
                break
            self.ids.append(i)
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        full, hit = cut_at_stop(decode(self.tokenizer, self.ids), self.stop)
        ready = full
        if not (final or hit or self.stopped):
            ready = full.rstrip(REPLACEMENT)
            ready = ready[: max(len(ready) - self.hold, 0)]
        if hit:
            self.stopped = True
        if len(ready) > len(self.text) and ready.startswith(self.text):
            delta, self.text = ready[len(self.text) :], ready
            if self.on_text:
                self.on_text(delta)

"""Chat templates: the tokenizer's own, a built-in one (ChatML, Llama-2 style) or a Jinja file.

Every built-in template wraps the assistant's reply, and the token that ends it, in
`{% generation %}…{% endgeneration %}`: transformers' `return_assistant_tokens_mask` (what trl's
`assistant_only_loss` uses) then marks exactly the tokens to train, the end-of-turn token included, so a tuned
model learns to stop. A template without the markers cannot say which tokens are the assistant's, which is an
error when the loss is on the completion only (`require_generation_markers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.console import UserError

_CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Llama-2-chat's layout (Touvron et al. 2023): [INST] user [/INST] answer</s>, the system prompt inside the first
# [INST] between <<SYS>> markers. No BOS per turn: llmforge checkpoints use one token for BOS and EOS.
_LLAMA = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '[INST] ' }}"
    "{%- if loop.first and system -%}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{%- endif -%}"
    "{{ message['content'] + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and what it needs from the tokenizer."""

    name: str  # "chatml", "llama", "tokenizer" or the file's path
    source: str
    role_tokens: tuple[str, ...] = ()  # added as special tokens when the vocabulary lacks them
    end_of_turn: str | None = None  # the token that ends an assistant turn (None: the tokenizer's EOS)

    @property
    def has_generation_markers(self) -> bool:
        return bool(_GENERATION.search(self.source))


BUILTIN: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", _CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama": ChatTemplate("llama", _LLAMA, ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>")),
}
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def resolve(spec: str, tokenizer_template: str | None, key: str = "finetune.chat_template") -> ChatTemplate:
    """The template `spec` names: "tokenizer" (the tokenizer's own), a built-in name, or a .jinja file."""
    if spec == "tokenizer":
        if not tokenizer_template:
            raise UserError(
                f"{key} = 'tokenizer': the base model's tokenizer has no chat template; set {key} to "
                f"{' or '.join(repr(n) for n in BUILTIN)}, or to a .jinja file"
            )
        return ChatTemplate("tokenizer", tokenizer_template)
    if spec in BUILTIN:
        return BUILTIN[spec]
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"{key} = {spec!r}: neither 'tokenizer', a built-in template "
            f"({', '.join(BUILTIN)}) nor an existing .jinja file"
        )
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{key}: {path}: cannot read the template ({e})") from None
    if not source.strip():
        raise UserError(f"{key}: {path}: empty template")
    return ChatTemplate(str(path), source)


def require_generation_markers(template: ChatTemplate, key: str = "finetune.chat_template") -> None:
    """A completion-only loss needs `{% generation %}` around the assistant part, or nothing is trained."""
    if not template.has_generation_markers:
        raise UserError(
            f"{key}: the {template.name} chat template has no {{% generation %}}…{{% endgeneration %}} around "
            "the assistant's reply, so no token would be trained with loss_on = 'completion'; use 'chatml' or "
            "'llama', add the markers to the template, or set finetune.loss_on = 'all'"
        )


def missing_role_tokens(tokenizer: Any, template: ChatTemplate) -> list[str]:
    """The template's role tokens the tokenizer does not have as single tokens."""
    vocab = tokenizer.get_vocab()
    return [t for t in template.role_tokens if t not in vocab]


def install(tokenizer: Any, model: Any | None, template: ChatTemplate) -> list[str]:
    """Set the template on the tokenizer; add missing role tokens as special tokens and set their embedding
    rows (input and untied output) to the mean of the existing tokens' rows. Returns the tokens added."""
    added = missing_role_tokens(tokenizer, template)
    if added:
        known = len(tokenizer)
        tokenizer.add_special_tokens({"additional_special_tokens": added}, replace_extra_special_tokens=False)
        if model is not None:
            init_rows_to_mean(model, tokenizer.convert_tokens_to_ids(added), known)
    tokenizer.chat_template = template.source
    return added


def init_rows_to_mean(model: Any, ids: list[int], known: int) -> None:
    """Rows `ids` of the input (and untied output) embeddings ← the mean of rows [0, known), the tokens the
    model was trained with (Hewitt 2021: keeps new tokens' initial logits from dominating the softmax). The
    matrix grows only when an id falls outside it: a vocabulary padded to a multiple (gpt-neox, Qwen) already
    has rows to spare, which were never trained and so are left out of the mean."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if max(ids) >= rows:
        model.resize_token_embeddings(max(ids) + 1, mean_resizing=False)
    with torch.no_grad():
        for emb in {
            id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings()) if e
        }.values():
            emb.weight[ids] = emb.weight[:known].mean(dim=0, keepdim=True)
            bias = getattr(emb, "bias", None)
            if bias is not None:
                bias[ids] = bias[:known].mean()


def stop_token_ids(tokenizer: Any, template: ChatTemplate | None) -> list[int]:
    """The ids generation stops on: EOS and the template's end-of-turn token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if template is not None and template.end_of_turn:
        tid = tokenizer.convert_tokens_to_ids(template.end_of_turn)
        if tid is not None and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids

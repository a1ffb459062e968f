"""`[finetune]` table: what to fine-tune and how. Pydantic only (no torch at import).

`task` picks the kind of fine-tuning, as `type` picks a data source: `"classification"` (an encoder checkpoint
with a sequence-classification head, `llmforge finetune classify`) or `"instruction"` (supervised instruction
tuning of a causal LM through trl's SFTTrainer, full or LoRA/QLoRA, `llmforge finetune sft`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator

from llmforge.recipe_base import RecipePath, RecipePathOrName, Table


class ClassifyConfig(Table):
    """Fine-tune an encoder (our `mlm` pretrain output or any local HF encoder dir) for sequence classification."""

    task: Literal["classification"]
    base: RecipePath  # a checkpoint dir: config.json, weights and tokenizer files
    train_file: RecipePath  # jsonl, one {text_field: str, label_field: str | int} object per line
    val_file: RecipePath | None = None  # without it, val_fraction of the train rows are held out
    val_fraction: float = Field(0.1, gt=0, lt=1)
    text_field: str = Field("text", min_length=1)
    label_field: str = Field("label", min_length=1)
    max_len: int = Field(128, ge=2)  # tokens per example, longer texts are truncated (and counted)
    epochs: int = Field(3, ge=1)
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)  # of all optimizer steps, then linear decay to 0
    seed: int | None = Field(None, ge=0)  # default: run.seed
    out: RecipePath | None = None  # default: <run dir>/finetune

    @model_validator(mode="after")
    def _val_fraction_without_val_file(self) -> ClassifyConfig:
        if self.val_file is not None and "val_fraction" in self.model_fields_set:
            raise ValueError(
                "finetune.val_fraction applies only without finetune.val_file (the validation rows are the "
                "val_file's); give one of the two"
            )
        return self


# ------------------------------------------------------------------------------------------ instruction

FORMATS = ("auto", "prompt_completion", "alpaca", "messages")
# The columns a format reads, by role; `fields` renames them (e.g. GPTeacher's `response` → output).
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "input", "output"),
    "messages": ("messages",),
}
FIELD_ROLES = ("prompt", "completion", "instruction", "input", "output", "messages", "system")


class InstructDataset(Table):
    """One instruction set of the mixture: a local jsonl/parquet file or a `datasets` hub name (online).

    Chain of thought and exemplars follow FLAN's four settings (Chung et al. 2022): `exemplars = 0 | k`
    (zero- or few-shot) × `cot = true | false` (train with or without the reasoning). `answer_marker` splits a
    solved answer into reasoning and final answer (GSM8K: `"####"`); see finetune/exemplars.py for the exact
    text."""

    path: RecipePathOrName = Field(min_length=1)
    name: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")  # default: the file's stem
    subset: str | None = Field(None, min_length=1)  # hub datasets: the configuration, e.g. "main" for GSM8K
    split: str = Field("train", min_length=1)  # hub datasets: the split to read
    val_path: RecipePathOrName | None = None  # its held-out rows; without it, val_fraction are held out
    format: Literal["auto", "prompt_completion", "alpaca", "messages"] = "auto"
    fields: dict[str, str] = Field(default_factory=dict)  # role → column, e.g. {prompt = "question"}
    weight: float | None = Field(None, gt=0)  # share of the mixture (normalised); unset everywhere: by size
    max_rows: int | None = Field(None, ge=1)  # read at most this many rows (the file's first ones)
    exemplars: int = Field(0, ge=0)  # k solved train rows prepended to each prompt (few-shot)
    cot: bool = True  # keep the reasoning in completions and exemplars; false needs answer_marker
    answer_marker: str | None = Field(None, min_length=1)  # reasoning <marker> answer, e.g. "####"
    answer_prefix: str = "The answer is "  # put before the final answer when answer_marker splits it
    exemplar_format: str = "Q: {prompt}\nA: {completion}"  # one exemplar; joined by blank lines

    @model_validator(mode="after")
    def _consistent(self) -> InstructDataset:
        unknown = sorted(set(self.fields) - set(FIELD_ROLES))
        if unknown:
            raise ValueError(
                f"fields: unknown role(s) {', '.join(unknown)} (expected some of {', '.join(FIELD_ROLES)})"
            )
        hub_only = [k for k in ("subset", "split") if k in self.model_fields_set]
        if hub_only and os.path.exists(self.path):
            raise ValueError(
                f"{', '.join(hub_only)}: applies to a hub dataset only; {self.path} is a local file"
            )
        if not self.cot and self.answer_marker is None:
            raise ValueError(
                "cot = false needs answer_marker (the text that separates the reasoning from the final "
                'answer, e.g. "####" for GSM8K)'
            )
        for placeholder in ("{prompt}", "{completion}"):
            if placeholder not in self.exemplar_format:
                raise ValueError(f"exemplar_format must contain {placeholder}")
        return self


class LoraConfig(Table):
    """`[finetune.lora]`: the adapter of `method = "lora"` / `"qlora"` (peft; Hu et al. 2021)."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    use_dora: bool = False  # weight-decomposed LoRA (Liu et al. 2024)
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r) (Kalajdzievski 2023)
    bits: Literal[4, 8] = 4  # qlora only: bitsandbytes NF4 (Dettmers et al. 2023) or int8 base weights

    @model_validator(mode="after")
    def _targets(self) -> LoraConfig:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError('target_modules: empty list (name modules, or "all-linear")')
        return self


CHAT_TEMPLATES = ("tokenizer", "chatml", "llama")


class InstructConfig(Table):
    """Supervised instruction tuning of a causal LM (our pretrain checkpoint or any local HF causal-LM dir)."""

    task: Literal["instruction"]
    base: RecipePath
    datasets: list[InstructDataset] = Field(min_length=1)
    val_fraction: float = Field(0.05, gt=0, lt=1)  # held out of each dataset without val_path
    mixture_rows: int | None = Field(None, ge=1)  # training rows per epoch; default: all train rows
    chat_template: RecipePathOrName = Field(
        "tokenizer", min_length=1
    )  # "tokenizer" | "chatml" | "llama" | a .jinja file
    system_prompt: str | None = None
    loss_on: Literal["completion", "all"] = "completion"  # completion: assistant tokens only
    packing: bool = False  # several short examples per row, no attention across their boundaries
    max_len: int = Field(512, ge=8)
    on_too_long: Literal["truncate", "drop", "error"] = "truncate"
    method: Literal["full", "lora", "qlora"] = "full"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs
    lr: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)  # of all optimizer steps
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool = False
    eval_every: int = Field(50, ge=1)  # optimizer steps between validation losses
    save_every: int | None = Field(None, ge=1)  # default: eval_every
    keep_last: int = Field(2, ge=1)  # trainer checkpoints kept for resume
    early_stopping: int | None = Field(None, ge=1)  # stop after this many evals without a better val loss
    seed: int | None = Field(None, ge=0)  # default: run.seed
    out: RecipePath | None = None  # default: <run dir>/finetune

    @model_validator(mode="after")
    def _consistent(self) -> InstructConfig:
        if "lora" in self.model_fields_set and self.method == "full":
            raise ValueError('[finetune.lora] applies only with method = "lora" or "qlora"')
        if self.early_stopping is not None and self.save_every not in (None, self.eval_every):
            raise ValueError("early_stopping needs save_every = eval_every (the best eval must be saved)")
        weighted = [d.weight is not None for d in self.datasets]
        if any(weighted) and not all(weighted):
            raise ValueError(
                "datasets: give every dataset a weight, or none (then each counts in proportion to its rows)"
            )
        if "bits" in self.lora.model_fields_set and self.method != "qlora":
            raise ValueError('finetune.lora.bits applies only with method = "qlora" (the quantised base)')
        names = [d.name for d in self.datasets if d.name]
        if len(names) != len(set(names)):
            raise ValueError("datasets: two datasets share a name; give each a different `name`")
        return self

    @property
    def save_steps(self) -> int:
        return self.save_every or self.eval_every


TASKS: dict[str, type[Table]] = {"classification": ClassifyConfig, "instruction": InstructConfig}


def _task_tag(value: Any) -> str | None:
    # bracketed, so recipe error messages leave the union branch out of the dotted key
    task = value.get("task") if isinstance(value, dict) else getattr(value, "task", None)
    return f"[{task}]" if task in TASKS else None


def _check_task(value: Any) -> Any:
    if isinstance(value, dict) and value.get("task") not in TASKS:
        task = value.get("task")
        shown = "missing" if task is None else f"{task!r} is not a fine-tuning task"
        raise ValueError(f"finetune.task: {shown}; expected one of {', '.join(map(repr, TASKS))}")
    return value


FinetuneConfig = Annotated[
    Union[tuple(Annotated[model, Tag(f"[{task}]")] for task, model in TASKS.items())],  # noqa: UP007
    Discriminator(_task_tag),
    BeforeValidator(_check_task),
]

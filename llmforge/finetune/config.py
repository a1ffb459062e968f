"""`[finetune]` table: what to fine-tune and how. Pydantic only (no torch at import).

`task` picks the kind of fine-tuning, as `type` picks a data source: today `"classification"` (an encoder
checkpoint with a sequence-classification head). Instruction tuning (#15) adds its own table model here and
`FinetuneConfig` becomes `Annotated[ClassifyConfig | InstructConfig, Field(discriminator="task")]`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmforge.recipe_base import RecipePath, Table


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


FinetuneConfig = ClassifyConfig

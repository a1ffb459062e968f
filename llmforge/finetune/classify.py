"""Fine-tune an encoder checkpoint for sequence classification: a plain, seeded PyTorch loop.

A hand-written loop rather than transformers' `Trainer`: the whole procedure reads top to bottom (AdamW
without decay on biases and LayerNorm weights, linear warm-up then linear decay, as BERT's fine-tuning in
Devlin et al. 2019), its determinism depends on one seeded generator, and Trainer's accelerate set-up,
logging integrations and output folders would add nothing here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, write_manifest
from llmforge.console import UserError, info, progress, rate_text
from llmforge.finetune.base import check_base
from llmforge.finetune.config import ClassifyConfig
from llmforge.finetune.examples import (
    Example,
    check_val_labels,
    label_names,
    read_examples,
    split_off_validation,
)
from llmforge.finetune.metrics import classification_metrics

CHECKPOINT_DIR = "checkpoint"
REPORT_DIR = "report"


@dataclass
class Prepared:
    """Everything checked before torch is loaded."""

    cfg: ClassifyConfig
    seed: int
    out: Path
    train: list[Example]
    val: list[Example]
    labels: list[str | int]

    @property
    def names(self) -> list[str]:
        """The labels as the model config names them (id2label)."""
        return [str(label) for label in self.labels]

    @property
    def inputs(self) -> list[str]:
        """What the checkpoint's manifest records as its inputs (with their content hashes)."""
        return [self.cfg.base, self.cfg.train_file, *([self.cfg.val_file] if self.cfg.val_file else [])]


def prepare(recipe: Any) -> Prepared:
    """Read and check the data, the base checkpoint and the output folder (UserError → exit 2)."""
    cfg: ClassifyConfig = recipe.table("finetune")
    seed = recipe.run.seed if cfg.seed is None else cfg.seed
    train = read_examples(cfg.train_file, cfg.text_field, cfg.label_field, "finetune.train_file")
    if cfg.val_file is None:
        train, val = split_off_validation(train, cfg.val_fraction, seed)
    else:
        val = read_examples(cfg.val_file, cfg.text_field, cfg.label_field, "finetune.val_file")
    labels = label_names(train, cfg.train_file)
    check_val_labels(val, labels, cfg.val_file or cfg.train_file)
    check_base(cfg.base, cfg.max_len)
    out = Path(cfg.out) if cfg.out else recipe.run_dir / "finetune"
    ensure_writable(out)
    return Prepared(cfg, seed, out, train, val, labels)


@dataclass
class Encoded:
    """One split as the model sees it."""

    ids: list[list[int]]
    labels: list[int]
    truncated: int  # rows cut to max_len


def run_classification(recipe: Any) -> dict[str, Any]:
    """Fine-tune, keep the epoch with the best validation macro-F1, write the checkpoint and report artifacts."""
    job = prepare(recipe)
    from llmforge.finetune.report import write_report

    model, tokenizer = load_base(job.cfg.base, job.labels, job.seed)
    train, val = (encode_split(tokenizer, rows, job) for rows in (job.train, job.val))
    best, history = fit(model, tokenizer.pad_token_id, train, val, job)
    stats = {
        "task": "classification",
        "labels": job.names,
        "best_epoch": best["epoch"],
        "val_accuracy": best["accuracy"],
        "val_macro_f1": best["macro_f1"],
        "train_rows": len(train.ids),
        "val_rows": len(val.ids),
        "truncated_rows": train.truncated + val.truncated,
    }
    checkpoint = write_checkpoint(
        job.out / CHECKPOINT_DIR, model, tokenizer, recipe.to_dict(), job.inputs, stats
    )
    results = {
        **{k: v for k, v in best.items() if k != "epoch"},
        "best_epoch": best["epoch"],
        "labels": job.names,
        "untrained": {k: history[0][k] for k in ("accuracy", "macro_f1")},
        "train_rows": len(train.ids),
        "truncated_rows": {"train": train.truncated, "val": val.truncated},
        "seed": job.seed,
        "checkpoint": str(checkpoint),
    }
    results["report"] = str(
        write_report(job.out / REPORT_DIR, results, history, checkpoint, recipe.to_dict())
    )
    return results


def fit(model: Any, pad_id: int, train: Encoded, val: Encoded, job: Prepared) -> tuple[dict, list[dict]]:
    """Train for cfg.epochs, scoring the validation split before training and after each epoch; the model is
    left with the weights of the best epoch. (best scores with their epoch, one history row per epoch)."""
    import torch

    cfg = job.cfg

    def score() -> dict[str, Any]:
        return classification_metrics(val.labels, predict(model, val.ids, pad_id, cfg.batch_size), job.names)

    untrained = score()
    history = [{"epoch": 0, "accuracy": untrained["accuracy"], "macro_f1": untrained["macro_f1"]}]
    info(f"untrained head: val accuracy {untrained['accuracy']:.3f}, macro-F1 {untrained['macro_f1']:.3f}")
    optimizer, scheduler = make_optimizer(model, cfg, steps=cfg.epochs * -(-len(train.ids) // cfg.batch_size))
    generator = torch.Generator().manual_seed(job.seed)  # the order of the rows in every epoch
    best, best_state = None, None
    for epoch in range(1, cfg.epochs + 1):
        loss = train_epoch(model, optimizer, scheduler, train, pad_id, cfg.batch_size, generator, epoch)
        scores = score()
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "accuracy": scores["accuracy"],
                "macro_f1": scores["macro_f1"],
            }
        )
        info(
            f"epoch {epoch}: train loss {loss:.4f}, val accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}"
        )
        if best is None or scores["macro_f1"] > best["macro_f1"]:
            best, best_state = {**scores, "epoch": epoch}, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best, history


def encode_split(tokenizer: Any, rows: list[Example], job: Prepared) -> Encoded:
    ids, truncated = encode(tokenizer, [ex.text for ex in rows], job.cfg.max_len)
    index = {label: i for i, label in enumerate(job.labels)}
    return Encoded(ids, [index[ex.label] for ex in rows], truncated)


def load_base(base: str, labels: list, seed: int) -> tuple[Any, Any]:
    """(model with a freshly initialised head, seeded; tokenizer). UserError when either does not load."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()  # the new head's "newly initialized" notice is expected
    transformers.utils.logging.disable_progress_bar()  # loading/saving bars of a few-MB model say nothing
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"finetune.base: {base}: tokenizer does not load ({e})") from None
    if tokenizer.pad_token_id is None:
        raise UserError(f"finetune.base: {base}: the tokenizer has no pad token, which batching needs")
    names = [str(label) for label in labels]
    torch.manual_seed(seed)  # the head's initial weights
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
        )
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"finetune.base: {base}: model does not load ({e})") from None
    return model, tokenizer


def encode(tokenizer: Any, texts: list[str], max_len: int) -> tuple[list[list[int]], int]:
    """(token ids per text, how many were cut to max_len). The tokenizer's own special tokens are added (a
    BERT tokenizer's [CLS] … [SEP]); a tokenizer without a [CLS] gets its BOS in front, as our pretraining
    put an EOS (= BOS) before every document, so position 0, which the pooler reads, holds a fixed token."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    lead = tokenizer.bos_token_id if tokenizer.cls_token_id is None else None
    if lead is not None:
        ids = [x if x[:1] == [lead] else [lead, *x] for x in ids]
    truncated = sum(len(x) > max_len for x in ids)
    return [x[:max_len] for x in ids], truncated


def batch_tensors(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return input_ids, mask


def make_optimizer(model: Any, cfg: ClassifyConfig, steps: int) -> tuple[Any, Any]:
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * steps), steps)
    return optimizer, scheduler


def train_epoch(
    model: Any, optimizer: Any, scheduler: Any, train: Encoded, pad_id: int, batch_size: int, generator: Any,
    epoch: int,
) -> float:  # fmt: skip
    """One pass over the train rows in a seeded order; the mean loss."""
    import time

    import torch

    model.train()
    order = torch.randperm(len(train.ids), generator=generator).tolist()
    total, batches, start = 0.0, 0, time.perf_counter()
    with progress(transient=True) as bar:
        task = bar.add_task(f"epoch {epoch}", total=len(train.ids), rate="")
        for first in range(0, len(order), batch_size):
            chosen = order[first : first + batch_size]
            input_ids, mask = batch_tensors([train.ids[i] for i in chosen], pad_id)
            target = torch.tensor([train.labels[i] for i in chosen], dtype=torch.long)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total, batches = total + loss.item(), batches + 1
            done = first + len(chosen)
            bar.update(task, completed=done, rate=rate_text(done, time.perf_counter() - start, "rows"))
    return total / batches


def predict(model: Any, ids: list, pad_id: int, batch_size: int) -> list[int]:
    import torch

    model.eval()
    out: list[int] = []
    with torch.no_grad():
        for first in range(0, len(ids), batch_size):
            input_ids, mask = batch_tensors(ids[first : first + batch_size], pad_id)
            out += model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1).tolist()
    return out


def write_checkpoint(path: Path, model: Any, tokenizer: Any, recipe: dict, inputs: list, stats: dict) -> Path:
    """The fine-tuned model as a `checkpoint` artifact: HF dir (config with id2label) + tokenizer + manifest,
    whose inputs record the base and the data files with their hashes."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, "checkpoint", recipe=recipe, inputs=inputs, stats=stats)
    return path

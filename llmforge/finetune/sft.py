"""Supervised instruction tuning of a causal LM with trl's SFTTrainer: full-parameter, LoRA or QLoRA.

The stage prepares what trl does not decide: which examples (finetune/instruct_data.py: formats, mixtures,
held-out split, exemplars and chain of thought), how they are rendered (the chat template, role tokens added
with mean-initialised embeddings), which tokens train and what happens to examples longer than `max_len`
(finetune/sft_tokenize.py). trl then pads or packs (best-fit decreasing, padding-free: each packed example
keeps its own positions and attends only to itself), trains, evaluates and checkpoints.

Layout under `finetune.out` (default `<run dir>/finetune`):
  trainer/checkpoint-N/   trl/transformers checkpoints for resume (optimizer, scheduler, RNG, data position)
  trainer/run.json        what the run trains on; a re-run resumes only when it is unchanged
  trainer/metrics.jsonl   one line per logged step, rewound to the checkpoint on resume
  checkpoint/             the result: a `checkpoint` artifact (a full HF model, or a LoRA adapter + tokenizer)
  report/                 results.json, metrics.jsonl, loss.png
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.artifacts.model_dir import NotCausalLM, context_length, require_causal_lm_dir
from llmforge.console import UserError, info, quiet_hf_libraries
from llmforge.finetune.config import InstructConfig
from llmforge.finetune.instruct_data import InstructionData, load_instruction_data
from llmforge.generation import chat_template as templates
from llmforge.hf_trainer import RUN_FILE, checkpointing_key, last_logged, resume_point

TRAINER_DIR = "trainer"
CHECKPOINT_DIR = "checkpoint"
REPORT_DIR = "report"
METRICS = "metrics.jsonl"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@dataclass
class Job:
    """Everything checked before the model's weights are loaded."""

    recipe: Any
    cfg: InstructConfig
    seed: int
    out: Path
    base_config: dict[str, Any]
    template: templates.ChatTemplate
    data: InstructionData
    resume_key: dict[str, Any]
    resume_from: Path | None = None

    @property
    def trainer_dir(self) -> Path:
        return self.out / TRAINER_DIR

    @property
    def inputs(self) -> list[str]:
        return [self.cfg.base, *self.data.inputs]


# ------------------------------------------------------------------------------------------- checks


def prepare(recipe: Any, *, fresh: bool = False) -> Job:
    """Check the base, the template, the data and the output folder (UserError → exit 2) before any weights
    load; decide whether the run resumes."""
    cfg = recipe.table("finetune")
    if not isinstance(cfg, InstructConfig):
        raise UserError(f"finetune.task = {cfg.task!r}; `finetune sft` needs task = 'instruction'")
    seed = recipe.run.seed if cfg.seed is None else cfg.seed
    base_config = check_causal_base(cfg.base, cfg.max_len)
    if cfg.method == "qlora":
        from llmforge.finetune.adapters import check_qlora_available

        check_qlora_available()
    if cfg.precision in ("fp16", "bf16"):
        check_precision(cfg.precision)
    template = templates.resolve(cfg.chat_template, _tokenizer_template(Path(cfg.base)))
    if cfg.loss_on == "completion":
        templates.require_generation_markers(template)
    out = Path(cfg.out) if cfg.out else recipe.run_dir / "finetune"
    ensure_writable(out)
    data = load_instruction_data(cfg, seed)
    job = Job(recipe, cfg, seed, out, base_config, template, data, _resume_key(cfg, template, data))
    job.resume_from = _resume_point(job, fresh)
    return job


def check_causal_base(path: str | Path, max_len: int) -> dict[str, Any]:
    """config.json of a causal-LM dir with weights and a tokenizer (the rule every stage applies:
    artifacts/model_dir.py); UserError naming what is not, each message starting `finetune.base: `."""
    try:
        config = require_causal_lm_dir(path, key="finetune.base", needs="instruction tuning")
    except NotCausalLM as e:
        raise UserError(
            f"finetune.base: {path}: model_type {e.model_type!r} is not a causal LM ({e.described}); instruction "
            "tuning needs a decoder (e.g. our llama/gpt2/gpt-neox pretrain output); encoders are fine-tuned by "
            "`finetune classify`"
        ) from None
    positions = context_length(config)
    if positions is not None and max_len > positions:
        raise UserError(
            f"finetune.max_len = {max_len}: above the base model's context ({positions} positions)"
        )
    return config


def check_precision(precision: str) -> None:
    """fp16 mixed precision needs a CUDA GPU (its loss scaler); bf16 needs a GPU that has it or a CPU."""
    import torch

    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("finetune.precision = 'fp16' needs a CUDA GPU; use 'fp32' or 'bf16' on a CPU")
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise UserError("finetune.precision = 'bf16': this GPU has no bf16; use 'fp16' or 'fp32'")


def _tokenizer_template(base: Path) -> str | None:
    """The chat template the base's tokenizer files carry (tokenizer_config.json or chat_template.jinja)."""
    jinja = base / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    f = base / "tokenizer_config.json"
    if f.is_file():
        try:
            template = json.loads(f.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError):
            return None
        return template if isinstance(template, str) else None
    return None


def _resume_key(cfg: InstructConfig, template: Any, data: InstructionData) -> dict[str, Any]:
    """What a resumed run must share with the one that wrote the checkpoint: the finetune table (output and
    stopping keys aside), the chat template's text, the base's weights and the examples."""
    digest = hashlib.sha256()
    for ex in (*data.train, *data.val):
        digest.update(json.dumps(ex.messages, sort_keys=True).encode())
    return {
        **cfg.model_dump(mode="json", exclude={"out", "early_stopping", "keep_last"}),
        "chat_template_source": hashlib.sha256(template.source.encode()).hexdigest()[:16],
        "base_weights": _weights_signature(Path(cfg.base)),
        "examples": digest.hexdigest()[:16],
    }


def _weights_signature(base: Path) -> str:
    """The base's content hash from its manifest, else the names, sizes and times of its weight files."""
    manifest = base / "manifest.json"
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text()).get("content_hash")
            if found:
                return str(found)
        except (OSError, ValueError):
            pass
    files = sorted(f for pattern in WEIGHT_PATTERNS for f in base.glob(pattern))
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def _resume_point(job: Job, fresh: bool) -> Path | None:
    return resume_point(
        job.trainer_dir,
        job.out / CHECKPOINT_DIR,
        job.resume_key,
        fresh=fresh,
        out_key="finetune.out",
        what="fine-tune",
    )


# ---------------------------------------------------------------------------------------------- run


@dataclass
class Outcome:
    results: dict[str, Any]
    interrupted: int = 0  # the signal that stopped the run (it checkpointed first), else 0


def run_sft(recipe: Any, *, fresh: bool = False) -> Outcome:
    job = prepare(recipe, fresh=fresh)
    if fresh:  # only what this stage writes: finetune.out may hold other files
        for name in (TRAINER_DIR, CHECKPOINT_DIR, REPORT_DIR):
            shutil.rmtree(job.out / name, ignore_errors=True)
    quiet_hf_libraries()
    model, tokenizer, added = load_model(job)
    from llmforge.finetune.sft_tokenize import tokenize_split

    splits = {
        name: tokenize_split(
            examples,
            tokenizer,
            template_name=job.template.name,
            loss_on=job.cfg.loss_on,
            max_len=job.cfg.max_len,
            on_too_long=job.cfg.on_too_long,
            split=name,
        )
        for name, examples in (("train", job.data.train), ("val", job.data.val))
    }
    check_kept(job, splits)
    model = wrap_adapter(job, model, tokenizer, added)
    plan = describe_plan(job, model)
    trainer = build_trainer(job, model, tokenizer, splits)
    from llmforge.hf_trainer import Progress
    from llmforge.stop_signal import StopSignal

    started = time.perf_counter()
    with StopSignal() as stop:
        recorder = Progress(job.trainer_dir / METRICS, stop, job.resume_from)
        trainer.add_callback(recorder)
        trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)
    seconds = time.perf_counter() - started
    if stop.signum:
        step = trainer.state.global_step
        info(f"[yellow]stopped[/] at step {step} (checkpoint saved); run the same command to resume")
        return Outcome({"stopped_at_step": step}, interrupted=stop.signum)
    plan["peak_memory"] = recorder.peak_memory
    return Outcome(finish(job, trainer, tokenizer, splits, plan, added, seconds))


def check_kept(job: Job, splits: dict) -> None:
    """Every dataset keeps examples after on_too_long (else UserError naming it); a warning when one loses more
    than a tenth of its rows, since the mixture then differs from the one the recipe asks for."""
    from llmforge.console import warn

    for name, split in splits.items():
        for stats in job.data.stats:
            wanted = stats["mixture_rows"] if name == "train" else stats["val_rows"]
            kept = split.per_source.get(stats["name"], 0)
            if wanted and not kept:
                raise UserError(
                    f"finetune.datasets ({stats['name']}): none of its {wanted} {name} examples fits "
                    f"finetune.max_len = {job.cfg.max_len} with on_too_long = '{job.cfg.on_too_long}' (the longest "
                    f"of the split is {split.longest} tokens); raise max_len or use fewer exemplars"
                )
            if wanted and kept < 0.9 * wanted:
                warn(
                    f"{stats['name']}: {wanted - kept} of {wanted} {name} examples are longer than "
                    f"finetune.max_len = {job.cfg.max_len} and were left out"
                )


def load_model(job: Job) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer with the chat template installed, role tokens added)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = job.cfg.base
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"finetune.base: {base}: tokenizer does not load ({e})") from None
    kwargs: dict[str, Any] = {}
    if job.cfg.method == "qlora":
        from llmforge.finetune.adapters import quantization_config

        kwargs["quantization_config"] = quantization_config(job.cfg.lora)
        kwargs["device_map"] = {"": 0}
    torch.manual_seed(job.seed)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=base_dtype(job), **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"finetune.base: {base}: model does not load ({e})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # labels come from the template masks, so EOS still trains
    added = templates.install(tokenizer, model, job.template)
    if added:
        info(f"added role tokens {', '.join(added)} (embedding rows initialised to the mean)")
    model.generation_config.eos_token_id = templates.stop_token_ids(tokenizer, job.template)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, added


def base_dtype(job: Job) -> Any:
    """fp32 weights for full fine-tuning (mixed precision autocasts and keeps fp32 master weights); under LoRA
    the frozen base is stored in bf16 when training in bf16, half the memory (QLoRA's is quantised)."""
    import torch

    return torch.bfloat16 if job.cfg.method == "lora" and use_bf16(job) else torch.float32


def wrap_adapter(job: Job, model: Any, tokenizer: Any, added: list[str]) -> Any:
    if job.cfg.method == "full":
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    from llmforge.finetune.adapters import check_targets, peft_config

    check_targets(model, job.cfg.lora)
    if job.cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, job.cfg.gradient_checkpointing)
    return get_peft_model(model, peft_config(job.cfg.lora, model, tokens_added=bool(added)))


def use_bf16(job: Job) -> bool:
    import torch

    if job.cfg.precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return job.cfg.precision == "bf16"


def describe_plan(job: Job, model: Any) -> dict[str, Any]:
    from llmforge.console import human_bytes, summary_table
    from llmforge.finetune.adapters import parameter_counts, planned_memory

    trainable, total = parameter_counts(model)
    memory = planned_memory(
        job.cfg, model.config, trainable, total, model, use_bf16(job) or job.cfg.precision == "fp16"
    )
    plan = {"trainable_params": trainable, "total_params": total, "planned_memory": memory}
    summary_table(
        f"finetune plan ({job.cfg.method})",
        {
            "trainable / total params": f"{trainable:,} / {total:,} ({100 * trainable / total:.2f}%)",
            **{f"planned {k.replace('_', ' ')}": human_bytes(v) for k, v in memory.items()},
        },
    )
    return plan


def build_trainer(job: Job, model: Any, tokenizer: Any, splits: dict) -> Any:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    cfg = job.cfg
    bf16 = use_bf16(job)
    args = SFTConfig(
        output_dir=str(job.trainer_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        logging_steps=1,
        eval_strategy="steps",
        eval_on_start=job.resume_from is None,  # the base model's val loss: the baseline of the curve
        eval_steps=cfg.eval_every,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.keep_last,
        load_best_model_at_end=cfg.early_stopping is not None,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        seed=job.seed,
        data_seed=job.seed,
        bf16=bf16,
        fp16=cfg.precision == "fp16",
        use_cpu=not _cuda(),
        **{checkpointing_key(): cfg.gradient_checkpointing},
        max_length=cfg.max_len,
        packing=cfg.packing,
        packing_strategy="bfd",
        report_to="none",
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    callbacks = [EarlyStoppingCallback(cfg.early_stopping)] if cfg.early_stopping else []
    job.trainer_dir.mkdir(parents=True, exist_ok=True)
    write_json(job.trainer_dir / RUN_FILE, {"resume_key": job.resume_key})
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(splits["train"].rows),
        eval_dataset=Dataset.from_list(splits["val"].rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # without tqdm transformers prints every log dict to stdout; our callback logs (stdout is for results)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------------------------------------- output


def finish(
    job: Job, trainer: Any, tokenizer: Any, splits: dict, plan: dict, added: list[str], seconds: float
) -> dict:
    from llmforge.finetune.sft_report import write_report
    from llmforge.hf_trainer import read_history as history
    from llmforge.metrics_log import peak_memory_bytes

    rows = history(job.trainer_dir / METRICS)
    evals = [r for r in rows if "eval_loss" in r]
    ends_unscored = not evals or evals[-1]["step"] != trainer.state.global_step
    if not evals or (job.cfg.early_stopping is None and ends_unscored):
        rows.append({"step": trainer.state.global_step, **trainer.evaluate()})  # the model as it ends
        evals.append(rows[-1])
    best = min(evals, key=lambda r: r["eval_loss"])
    # with early stopping the result is the best evaluation's model (transformers reloads it at the end)
    result = best if job.cfg.early_stopping is not None else evals[-1]
    train_losses = [r["loss"] for r in rows if "loss" in r]
    stats = {
        "task": "instruction",
        "method": job.cfg.method,
        "base": str(Path(job.cfg.base).resolve()),
        "chat_template": {"name": job.template.name, "source": job.template.source, "added_tokens": added},
        "steps": trainer.state.global_step,
        "result_step": result["step"],
        "val_loss": result["eval_loss"],
        "best_val_loss": best["eval_loss"],
        "early_stopped": job.cfg.early_stopping is not None
        and trainer.state.global_step < trainer.state.max_steps,
        "trainable_params": plan["trainable_params"],
        "total_params": plan["total_params"],
        "train": splits["train"].summary(),
        "val": splits["val"].summary(),
        "data": job.data.stats,
    }
    checkpoint = write_checkpoint(job, trainer, tokenizer, stats)
    results = {
        **{k: v for k, v in stats.items() if k not in ("chat_template",)},
        "chat_template": job.template.name,
        "added_tokens": added,
        "first_val_loss": evals[0]["eval_loss"],
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "planned_memory": plan["planned_memory"],
        "peak_memory": plan["peak_memory"],
        "peak_memory_process": peak_memory_bytes(),
        "seconds": seconds,
        "samples_per_s": last_logged(rows, "train_samples_per_second"),
        "train_runtime_s": last_logged(rows, "train_runtime"),
        "tokens_per_s": _tokens_per_s(rows),
        "checkpoint": str(checkpoint),
    }
    results["report"] = str(
        write_report(job.out / REPORT_DIR, results, rows, checkpoint, job.recipe.to_dict())
    )
    shutil.rmtree(
        job.trainer_dir, ignore_errors=True
    )  # the result is whole; resume state is no longer needed
    return results


def _tokens_per_s(rows: list[dict]) -> float | None:
    """Input tokens trained on (trl's num_tokens, padding out) per second of the training loop."""
    tokens, runtime = last_logged(rows, "num_tokens"), last_logged(rows, "train_runtime")
    return tokens / runtime if tokens and runtime else None


def write_checkpoint(job: Job, trainer: Any, tokenizer: Any, stats: dict) -> Path:
    """The tuned model as a `checkpoint` artifact: a full HF model dir, or (LoRA) peft's adapter files with the
    base recorded; both with the tokenizer (chat template, role tokens) and a manifest whose inputs are the
    base and the data files with their hashes."""
    path = job.out / CHECKPOINT_DIR
    model = trainer.model
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        generation = getattr(model, "generation_config", None) or model.get_base_model().generation_config
        generation.save_pretrained(tmp)
        variant = "full" if job.cfg.method == "full" else "lora-adapter"
        write_manifest(
            tmp,
            "checkpoint",
            recipe=job.recipe.to_dict(),
            inputs=job.inputs,
            stats={**stats, "variant": variant},
        )
    return path

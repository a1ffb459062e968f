"""The pretraining loop: Accelerate for devices, precision and DDP; our own data cursor, LR schedule,
checkpoints and spike guard so that a resumed run continues bit for bit."""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.artifacts import CHECKPOINTS_DIR, stale_temporaries
from llmforge.console import info, progress, rate_text, warn
from llmforge.pretrain.checkpoint import (
    TrainState,
    load_trainer_state,
    load_weights,
    prune_checkpoints,
    read_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_dir,
)
from llmforge.pretrain.config import TrainConfig
from llmforge.pretrain.launch import StopSignal
from llmforge.pretrain.metrics import MetricsLog, Peak, device_peak, peak_memory_bytes, tracker_config
from llmforge.pretrain.model import (
    ModelSize,
    build_model,
    enable_activation_checkpointing,
    load_model,
    model_size,
)
from llmforge.pretrain.optim import make_optimizer
from llmforge.pretrain.parallel import (
    full_state,
    load_full_model_state,
    load_full_optimizer_state,
    local_numel,
    shard_model,
)
from llmforge.pretrain.preflight import Inputs
from llmforge.pretrain.schedule import batch_rows_at, lr_at
from llmforge.pretrain.spike import SpikeGuard
from llmforge.recipe import Recipe

METRICS_FILE = "metrics.jsonl"


@dataclass
class Outcome:
    state: TrainState
    size: ModelSize
    checkpoint: Path
    interrupted: int | None  # the signal that stopped the run early
    events: list[dict[str, Any]] = field(default_factory=list)
    tokens_per_s: float = 0.0
    mfu: float | None = None
    peak: Peak | None = None  # the per-device peak FLOP/s behind `mfu`
    local_params: int = 0  # parameter elements on rank 0 (a shard under FSDP)


@dataclass
class _Meter:
    """Tokens and compute seconds of this process's run, and of the window since the last log line."""

    run_tokens: int = 0
    run_time: float = 0.0
    window_tokens: int = 0
    window_time: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.run_tokens += tokens
        self.run_time += seconds
        self.window_tokens += tokens
        self.window_time += seconds

    def take_window(self) -> tuple[int, float]:
        window = self.window_tokens, self.window_time
        self.window_tokens, self.window_time = 0, 0.0
        return window


def pretrain(recipe: Recipe, inputs: Inputs, accelerator: Any) -> Outcome:
    return _Loop(recipe, inputs, accelerator).run()


class _Loop:
    def __init__(self, recipe: Recipe, inputs: Inputs, accelerator: Any):
        import torch

        from llmforge.artifacts.tokens import TokenShards, TokenWindows

        self.recipe, self.inputs, self.acc = recipe, inputs, accelerator
        self.train: TrainConfig = recipe.table("train")
        self.model_cfg = recipe.table("model")
        self.run_dir = recipe.run_dir
        self.checkpoints = self.run_dir / CHECKPOINTS_DIR
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        seed = recipe.run.seed
        self.train_windows = TokenWindows(TokenShards(inputs.tokens, "train"), self.train.seq_len, seed=seed)
        self.val_windows = TokenWindows(
            TokenShards(inputs.tokens, "val"), self.train.seq_len, seed=seed, shuffle=False
        )
        model = self._initial_model(seed)
        self.size = model_size(model, self.train.seq_len)
        self.state = TrainState(world_size=self.world)
        optimizer_state = None
        if inputs.resume_from is not None:
            load_weights(model, inputs.resume_from)
            self.state, optimizer_state, rng_states = load_trainer_state(inputs.resume_from)
            if accelerator.is_main_process:
                info(f"resuming from step {self.state.step} ({inputs.resume_from})")
            set_rng_state(rng_states[self.rank % len(rng_states)])
            self.state.world_size = self.world
            self._load_grad_scaler()
        self.fsdp = self.train.distributed.strategy == "fsdp"
        self.model, self.optimizer = self._prepare(model)
        if optimizer_state is not None:
            self._load_optimizer(optimizer_state)
        self.local_params = local_numel(self.model)
        self.forward = torch.compile(self.model) if self.train.compile else self.model
        self.guard = SpikeGuard(self.train.spike, self.state.spike_history)
        self.events: list[dict[str, Any]] = []
        self.peak: Peak = device_peak(self.train.precision, self.train.peak_flops)
        self.metrics = None
        if accelerator.is_main_process:
            flops = f"{self.peak.flops:.3g} FLOP/s" if self.peak.flops else "none"
            info(f"MFU peak per device: {flops} for {self.peak.device} ({self.peak.source})")
            for leftover in stale_temporaries(self.checkpoints):  # from a run killed mid-save
                shutil.rmtree(leftover, ignore_errors=True)
            resume_step = self.state.step if inputs.resume_from else None
            self.metrics = MetricsLog(self.run_dir / METRICS_FILE, resume_step)
        self.last_checkpoint = inputs.resume_from
        self.last_save_time = time.monotonic()

    def _initial_model(self, seed: int) -> Any:
        """A fresh model from `[model]`, or the `init_from` checkpoint (continued pretraining)."""
        import torch

        if self.model_cfg.init_from:
            torch.manual_seed(seed)
            model = load_model(self.model_cfg.init_from)
        else:
            model = build_model(self.model_cfg, self.inputs.vocab_size, self.inputs.eos_id, seed)
        if self.train.activation_checkpointing:
            enable_activation_checkpointing(model)
        return model

    def _prepare(self, model: Any) -> tuple[Any, Any]:
        """Shard (FSDP) or wrap (DDP through Accelerate) the model, and build its optimizer."""
        if not self.fsdp:
            return self.acc.prepare(model, make_optimizer(model, self.train))
        distributed = self.train.distributed
        model = shard_model(
            model,
            full_shard=distributed.fsdp_sharding == "full-shard",
            precision=self.train.precision,
            device=self.acc.device,
        )
        # Already sharded: only the optimizer goes through Accelerate, which would wrap the model in DDP.
        return model, self.acc.prepare(make_optimizer(model, self.train))

    # ------------------------------------------------------------------------------------ one step

    def _micro_batch(self, position: int) -> Any:
        import torch

        rows = self.train_windows.batch(position, self.train.micro_batch, self.rank, self.world)
        return torch.from_numpy(rows).to(self.acc.device)

    def _loss(self, batch: Any) -> Any:
        return self._token_losses(batch).mean()

    def _token_losses(self, batch: Any) -> Any:
        """Cross-entropy of every next-token prediction in `batch`, shape (rows, seq_len)."""
        import torch.nn.functional as F

        with contextlib.nullcontext() if self.fsdp else self.acc.autocast():
            logits = self.forward(input_ids=batch[:, :-1], use_cache=False).logits
        targets = batch[:, 1:]
        losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        return losses.view_as(targets)

    def _step(self, rows: int) -> tuple[float, float | None, bool]:
        """Forward/backward over the global batch at the cursor; apply the update unless it spikes.
        Returns (loss, grad_norm or None when the update was dropped, whether the run rolled back)."""
        import torch

        per_micro = self.train.micro_batch * self.world
        accum = rows // per_micro
        total = torch.zeros((), device=self.acc.device)
        for j in range(accum):
            batch = self._micro_batch(self.state.cursor + j * per_micro)
            with self._gradient_sync(j == accum - 1):
                loss = self._loss(batch)
                self.acc.backward(loss / accum)
            total += loss.detach()
        loss = self.acc.reduce(total / accum, reduction="mean").item()
        verdict = self.guard.check(loss)
        grad_norm = None
        if not verdict.spike:
            clip = self.train.grad_clip if self.train.grad_clip > 0 else math.inf
            norm = self.acc.clip_grad_norm_(self.model.parameters(), clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            if self.acc.scaler is None:  # fp16's loss scaler skips overflowing steps itself
                verdict = self.guard.check_grad_norm(grad_norm)
            if not verdict.spike:
                self.optimizer.step()
                self.guard.accept(loss)
            else:
                grad_norm = None
        self.optimizer.zero_grad(set_to_none=True)
        if verdict.spike and not self.train.spike.enabled:
            raise RuntimeError(
                f"step {self.state.step + 1}: {verdict.reason} with train.spike.enabled = false; the run stops "
                f"before its weights are spoiled (last checkpoint: {self.last_checkpoint}); lower train.lr, "
                f"raise train.warmup_steps or turn the spike guard on"
            )
        rolled_back = self._on_spike(loss, verdict.reason, rows) if verdict.spike else False
        return loss, grad_norm, rolled_back

    def _gradient_sync(self, sync: bool) -> Any:
        """Gradients are reduced across processes only on the last micro-batch of a step."""
        if self.fsdp:
            self.model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if sync else self.acc.no_sync(self.model)

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        if self.fsdp:
            load_full_optimizer_state(self.model, self.optimizer.optimizer, state)
        else:
            self.optimizer.load_state_dict(state)

    def _on_spike(self, loss: float, reason: str, rows: int) -> bool:
        spike = self.train.spike
        self.state.spike_events += 1
        event: dict[str, Any] = {"event": "spike", "step": self.state.step, "loss": loss, "reason": reason}
        rollback = spike.policy == "rollback" and self.last_checkpoint is not None
        if rollback:
            resume_cursor = self.state.cursor + rows * (1 + spike.skip_batches)
            self._restore(self.last_checkpoint)
            if self.metrics:
                self.metrics.truncate(self.state.step)
            self.state.cursor = resume_cursor
            self.state.lr_factor *= spike.lr_factor
            event.update(
                action="rollback",
                restored_step=self.state.step,
                skipped_batches=spike.skip_batches,
                lr_factor=self.state.lr_factor,
            )
        else:
            event["action"] = "skip" if spike.policy == "skip" else "skip (no checkpoint to roll back to yet)"
        self._log_event(event)
        if self.state.spike_events > spike.max_events:
            raise RuntimeError(
                f"training diverged: {self.state.spike_events} loss spikes (train.spike.max_events = "
                f"{spike.max_events}); lower train.lr or raise train.warmup_steps"
            )
        return rollback

    def _restore(self, path: Path) -> None:
        events = self.state.spike_events
        if self.fsdp:
            load_full_model_state(self.model, read_weights(path))
        else:
            load_weights(self.acc.unwrap_model(self.model), path)
        self.state, optimizer_state, _ = load_trainer_state(path)
        self._load_optimizer(optimizer_state)
        self.state.spike_events = events
        self.state.world_size = self.world
        self._load_grad_scaler()
        self.guard = SpikeGuard(self.train.spike, self.state.spike_history)

    def _load_grad_scaler(self) -> None:
        """fp16: continue with the saved loss scale rather than Accelerate's initial 2^16 (which would skip
        the first few updates after a resume while the scale backs off again)."""
        if self.acc.scaler is not None and self.state.grad_scaler:
            self.acc.scaler.load_state_dict(self.state.grad_scaler)

    # --------------------------------------------------------------------------------- eval, save

    def evaluate(self) -> float:
        """Mean loss per token over the first `eval_tokens` of the val split, shared across ranks.

        Every rank makes the same number of forward passes of the same shape (under FSDP each pass
        all-gathers with the others): a rank with fewer windows pads with masked copies of window 0."""
        import numpy as np
        import torch

        n = min(max(self.train.eval_tokens // self.train.seq_len, 1), self.val_windows.num_windows)
        per_rank = math.ceil(n / self.world)
        mine = list(range(self.rank, n, self.world))
        weights = [1.0] * len(mine) + [0.0] * (per_rank - len(mine))
        mine += [0] * (per_rank - len(mine))
        total = torch.zeros(2, device=self.acc.device, dtype=torch.float64)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, per_rank, self.train.micro_batch):
                rows = [self.val_windows.window(p) for p in mine[i : i + self.train.micro_batch]]
                batch = torch.from_numpy(np.stack(rows)).to(self.acc.device)
                mask = torch.tensor(weights[i : i + len(rows)], dtype=torch.float64, device=total.device)
                row_sums = self._token_losses(batch).double().sum(dim=1)
                total += torch.stack([(row_sums * mask).sum(), mask.sum() * self.train.seq_len])
        self.model.train()
        total = self.acc.reduce(total, reduction="sum")
        return float(total[0] / total[1])

    def _weights_finite(self) -> bool:
        """Whether every weight (every shard, on every rank) is finite."""
        import torch

        bad = any(
            not torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()
            for p in self.model.parameters()
        )
        return not self._agree(bad)[0]

    def save(self) -> Path:
        from accelerate.utils import gather_object

        if not self._weights_finite():
            raise RuntimeError(
                f"step {self.state.step}: the weights hold NaN or inf, so no checkpoint is written (the last "
                f"good one: {self.last_checkpoint}); lower train.lr or raise train.warmup_steps and resume"
            )
        self.state.spike_history = list(self.guard.history)
        if self.acc.scaler is not None:
            self.state.grad_scaler = self.acc.scaler.state_dict()
        rngs = gather_object([rng_state()])
        if self.fsdp:
            weights, optimizer_state = full_state(self.model, self.optimizer.optimizer)
        else:
            weights, optimizer_state = None, self.optimizer.state_dict()
        path = step_dir(self.checkpoints, self.state.step)
        if self.acc.is_main_process:
            save_checkpoint(
                path,
                model=self.acc.unwrap_model(self.model),
                weights=weights,
                optimizer_state=optimizer_state,
                state=self.state,
                rng_states=rngs,
                tokenizer_dir=self.inputs.tokenizer_dir,
                specials=self.inputs.specials,
                recipe=self.recipe.to_dict(),
                inputs=[self.inputs.tokens],
            )
            prune_checkpoints(self.checkpoints, self.train.keep_last, self.train.keep_every)
        self.acc.wait_for_everyone()
        self.last_checkpoint = path
        self.last_save_time = time.monotonic()
        return path

    def _log_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        warn(f"step {event['step']}: {event['reason']} → {event['action']}")
        if self.metrics:
            self.metrics.write(event)

    def _agree(self, *flags: bool) -> list[bool]:
        """The OR of each flag over all ranks (signals and wall clocks differ between processes)."""
        if self.world == 1:
            return list(flags)
        import torch

        t = torch.tensor([float(f) for f in flags], device=self.acc.device)
        return [bool(v) for v in self.acc.reduce(t, reduction="sum").tolist()]

    # ------------------------------------------------------------------------------------- the loop

    def run(self) -> Outcome:
        train = self.train
        meter = _Meter()
        self._start_trackers()
        interrupted = None
        with StopSignal() as stop, progress() as bar:
            task = bar.add_task("pretrain", total=train.max_steps, completed=self.state.step, rate="")
            while self.state.step < train.max_steps:
                loss = self._advance(meter)
                if loss is None:  # rolled back to the last checkpoint
                    continue
                rate = f"loss {loss:.3f} · {rate_text(meter.run_tokens, meter.run_time, 'tok')}"
                bar.update(task, completed=self.state.step, rate=rate)
                if self._checkpoint_if_due(stop.signum is not None):
                    # A rank that did not see the signal itself stops because another one did.
                    interrupted = stop.signum or signal.SIGTERM
                    info(
                        f"[yellow]stopped by signal {interrupted} after step {self.state.step}; "
                        "checkpoint saved[/]"
                    )
                    break
        if train.report_to != "none":
            self.acc.end_training()
        tokens_per_s = meter.run_tokens / meter.run_time if meter.run_time else 0.0
        return Outcome(
            state=self.state,
            size=self.size,
            checkpoint=self.last_checkpoint,
            interrupted=interrupted,
            events=self.events,
            tokens_per_s=tokens_per_s,
            mfu=self._mfu(tokens_per_s),
            peak=self.peak,
            local_params=self.local_params,
        )

    def _advance(self, meter: _Meter) -> float | None:
        """One optimizer step at the scheduled batch size and LR, then its log line and validation when due.
        Returns the step's loss, or None when a spike rolled the run back."""
        train = self.train
        rows = batch_rows_at(self.state.tokens_seen, train, train.micro_batch * self.world)
        lr = lr_at(self.state.step, train) * self.state.lr_factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        loss, grad_norm, rolled_back = self._step(rows)
        if rolled_back:
            return None
        tokens = rows * train.seq_len
        meter.add(tokens, time.perf_counter() - started)
        self.state.step += 1
        self.state.cursor += rows
        if grad_norm is not None:  # a skipped batch was seen but not learned from
            self.state.tokens_seen += tokens
        step, record = self.state.step, {}
        if step % train.eval_every == 0 or step == train.max_steps:
            self.state.val_loss = self.evaluate()
            record["val_loss"] = self.state.val_loss
        if step % train.log_every == 0 or record:
            record.update(self._record(loss, lr, grad_norm, *meter.take_window()))
            self._write(record)
        return loss

    def _checkpoint_if_due(self, signalled: bool) -> bool:
        """Save on a stop signal, every `checkpoint_every` steps or `checkpoint_minutes`, and at the end;
        returns whether a signal asks the run to stop (on any rank)."""
        train, step = self.train, self.state.step
        timed = train.checkpoint_minutes is not None and (
            time.monotonic() - self.last_save_time >= 60 * train.checkpoint_minutes
        )
        signalled, timed = self._agree(signalled, timed)
        if signalled or timed or step % train.checkpoint_every == 0 or step == train.max_steps:
            self.save()
        return signalled

    def _start_trackers(self) -> None:
        """Accelerate's trackers, given the `[model]` and `[train]` tables. A resumed run hides what
        TensorBoard logged after its checkpoint (as metrics.jsonl drops those lines)."""
        if not self.acc.is_main_process or self.train.report_to == "none":
            return
        tables = self.recipe.to_dict()
        init_kwargs = {}
        if self.inputs.resume_from is not None:
            init_kwargs["tensorboard"] = {"purge_step": self.state.step + 1}
        self.acc.init_trackers(
            self.recipe.run.name,
            config=tracker_config({k: tables[k] for k in ("model", "train")}),
            init_kwargs=init_kwargs,
        )

    def _mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation (Chowdhery et al. 2022, PaLM App. B): achieved model FLOP/s over peak."""
        if not self.peak.flops:
            return None
        return self.size.flops_per_token * tokens_per_s / (self.peak.flops * self.world)

    def _record(self, loss: float, lr: float, grad_norm: float | None, tokens: int, seconds: float) -> dict:
        tokens_per_s = tokens / seconds if seconds else 0.0
        return {
            "step": self.state.step,
            "tokens": self.state.tokens_seen,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens_per_s,
            "mfu": self._mfu(tokens_per_s),
            "peak_mem": peak_memory_bytes(),
        }

    def _write(self, record: dict[str, Any]) -> None:
        if self.metrics:
            self.metrics.write(record)
        if self.train.report_to != "none":
            self.acc.log(
                {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))},
                step=self.state.step,
            )

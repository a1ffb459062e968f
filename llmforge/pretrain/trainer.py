"""The pretraining loop: step, accumulate, clip, log, evaluate, checkpoint, spike guard.

What the loop does not know: how the model is spread over processes (`strategy`), how state reaches the
disk (`checkpointer`), what a batch and its loss are (`objective`), the model family (`model`, the
registry). Our own data cursor, LR schedule, checkpoints and seeded per-window randomness make a resumed
run continue bit for bit.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.console import info, progress, rate_text
from llmforge.objectives.base import TRAIN_STREAM, VAL_STREAM, Batch, RowLosses, window_seeds
from llmforge.pretrain.checkpoint import TrainState, set_rng_state
from llmforge.pretrain.engine import assemble
from llmforge.pretrain.logbook import METRICS_FILE, Logbook
from llmforge.pretrain.metrics import Peak
from llmforge.pretrain.model import ModelSize
from llmforge.pretrain.preflight import Inputs
from llmforge.pretrain.schedule import batch_rows_at, lr_at
from llmforge.recipe import Recipe
from llmforge.spike_guard import SpikeGuard
from llmforge.stop_signal import StopSignal

__all__ = ["METRICS_FILE", "Outcome", "pretrain"]


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
    objective: str = "clm"


@dataclass
class _StepResult:
    loss: float
    grad_norm: float | None  # None: the update was dropped
    accuracy: float | None = None
    rolled_back: bool = False


def pretrain(recipe: Recipe, inputs: Inputs, accelerator: Any) -> Outcome:
    return _Loop(recipe, inputs, accelerator).run()


class _Loop:
    def __init__(self, recipe: Recipe, inputs: Inputs, accelerator: Any):
        import torch

        self.recipe, self.inputs = recipe, inputs
        self.train, self.seed = recipe.table("train"), recipe.run.seed
        engine = assemble(recipe, inputs, accelerator)
        self.strategy, self.objective, self.size = engine.strategy, engine.objective, engine.size
        self.train_windows, self.val_windows = engine.train_windows, engine.val_windows
        self.model, self.optimizer, self.checkpointer = engine.model, engine.optimizer, engine.checkpointer
        self.rank, self.world = self.strategy.rank, self.strategy.world
        self.state = TrainState(world_size=self.world)
        self.guard = SpikeGuard(self.train.spike, [])
        if inputs.resume_from is not None:
            self._restore(inputs.resume_from)
            if self.strategy.is_main:
                info(f"resuming from step {self.state.step} ({inputs.resume_from})")
        self.local_params = self.strategy.local_params()
        self.forward = torch.compile(self.model) if self.train.compile else self.model
        resume_step = self.state.step if inputs.resume_from else None
        self.log = Logbook(recipe, accelerator, self.size.flops_per_token, self.world, resume_step)
        if self.strategy.is_main:
            self.checkpointer.remove_temporaries()
        self.last_checkpoint = inputs.resume_from
        self.last_save_time = time.monotonic()

    # ------------------------------------------------------------------------------------ one step

    def _micro_batch(self, position: int) -> Batch:
        """This rank's rows of the micro-batch at global window `position`: rank + k·world, k < micro_batch."""
        positions = [position + self.rank + k * self.world for k in range(self.train.micro_batch)]
        return self._batch(self.train_windows, positions, TRAIN_STREAM)

    def _batch(self, windows: Any, positions: list[int], stream: int) -> Batch:
        import numpy as np

        rows = np.stack([windows.window(p) for p in positions])
        seeds = window_seeds(self.seed, stream, positions)
        return self.objective.make_batch(rows, seeds).to(self.strategy.device)

    def _row_losses(self, batch: Batch) -> RowLosses:
        with self.strategy.autocast():
            return self.objective.row_losses(self.forward, batch)

    def _step(self, rows: int) -> _StepResult:
        """Forward/backward over the global batch at the cursor; apply the update unless it spikes.
        The loss is the mean over every scored position of the global batch, so micro-batches and ranks
        with more scored positions (masked LM) weigh more, as in one big batch."""
        import torch

        strategy, per_micro = self.strategy, self.train.micro_batch * self.world
        batches = [self._micro_batch(self.state.cursor + j * per_micro) for j in range(rows // per_micro)]
        targets = self._global_targets(batches)
        nll = torch.zeros((), device=strategy.device, dtype=torch.float64)
        correct = torch.zeros((), device=strategy.device, dtype=torch.float64)
        for j, batch in enumerate(batches):
            with strategy.gradient_sync(j == len(batches) - 1):
                losses = self._row_losses(batch)
                # Ranks' gradients are averaged, hence × world: the sum over ranks is divided by `targets`.
                strategy.backward(losses.nll.sum() * (self.world / targets))
            nll += losses.nll.detach().sum()
            if losses.correct is not None:
                correct += losses.correct.sum()
        totals = strategy.reduce_sum(torch.stack([nll, correct])).tolist()
        loss = totals[0] / targets
        accuracy = totals[1] / targets if self.objective.reports_accuracy else None
        return self._apply_update(loss, rows, accuracy)

    def _global_targets(self, batches: list[Batch]) -> float:
        """Scored positions in the whole global batch (all ranks)."""
        import torch

        fixed = self.objective.fixed_targets_per_row(self.train.seq_len)
        if fixed is not None:
            return float(fixed * self.train.micro_batch * self.world * len(batches))
        mine = sum(int(b.targets_per_row().sum()) for b in batches)
        total = self.strategy.reduce_sum(torch.tensor(float(mine), device=self.strategy.device))
        return max(float(total), 1.0)

    def _apply_update(self, loss: float, rows: int, accuracy: float | None) -> _StepResult:
        verdict = self.guard.check(loss)
        grad_norm = None
        if not verdict.spike:
            grad_norm = self.strategy.clip_grad_norm(self.train.grad_clip)
            if self.strategy.acc.scaler is None:  # fp16's loss scaler skips overflowing steps itself
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
        return _StepResult(loss, grad_norm, accuracy, rolled_back)

    def _on_spike(self, loss: float, reason: str, rows: int) -> bool:
        spike = self.train.spike
        self.state.spike_events += 1
        event: dict[str, Any] = {"event": "spike", "step": self.state.step, "loss": loss, "reason": reason}
        rollback = spike.policy == "rollback" and self.last_checkpoint is not None
        if rollback:
            resume_cursor = self.state.cursor + rows * (1 + spike.skip_batches)
            events = self.state.spike_events
            self._restore(self.last_checkpoint)
            self.state.spike_events = events
            self.log.rewind(self.state.step)
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
        self.log.event(event)
        if self.state.spike_events > spike.max_events:
            raise RuntimeError(
                f"training diverged: {self.state.spike_events} loss spikes (train.spike.max_events = "
                f"{spike.max_events}); lower train.lr or raise train.warmup_steps"
            )
        return rollback

    def _restore(self, path: Path) -> None:
        """Weights, optimizer, train state, RNG and loss scale of the checkpoint at `path`."""
        self.state, rng_states = self.checkpointer.restore(path)
        set_rng_state(rng_states[self.rank % len(rng_states)])
        self.state.world_size = self.world
        scaler = self.strategy.acc.scaler
        # fp16: continue with the saved loss scale rather than Accelerate's initial 2^16 (which would skip
        # the first few updates after a resume while the scale backs off again).
        if scaler is not None and self.state.grad_scaler:
            scaler.load_state_dict(self.state.grad_scaler)
        self.guard = SpikeGuard(self.train.spike, self.state.spike_history)

    # --------------------------------------------------------------------------------- eval, save

    def evaluate(self) -> tuple[float, float | None]:
        """(mean loss per scored position, accuracy or None) over the first `eval_tokens` of the val split,
        shared across ranks (the strategy pads ranks to the same number of forward passes)."""
        import torch

        n = min(max(self.train.eval_tokens // self.train.seq_len, 1), self.val_windows.num_windows)
        mine, weights = self.strategy.even_share(n)
        total = torch.zeros(3, device=self.strategy.device, dtype=torch.float64)
        micro = self.train.micro_batch
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(mine), micro):
                batch = self._batch(self.val_windows, mine[i : i + micro], VAL_STREAM)
                w = torch.tensor(weights[i : i + micro], dtype=torch.float64, device=total.device)
                losses = self._row_losses(batch)
                correct = losses.correct if losses.correct is not None else torch.zeros_like(losses.nll)
                rows = torch.stack([losses.nll.double(), batch.targets_per_row().double(), correct.double()])
                total += (rows * w).sum(dim=1)
        self.model.train()
        nll, targets, correct = self.strategy.reduce_sum(total).tolist()
        return nll / targets, (correct / targets if self.objective.reports_accuracy else None)

    def save(self, last: bool = False) -> Path:
        if not self.strategy.weights_finite():
            raise RuntimeError(
                f"step {self.state.step}: the weights hold NaN or inf, so no checkpoint is written (the last "
                f"good one: {self.last_checkpoint}); lower train.lr or raise train.warmup_steps and resume"
            )
        self.state.spike_history = list(self.guard.history)
        if self.strategy.acc.scaler is not None:
            self.state.grad_scaler = self.strategy.acc.scaler.state_dict()
        path = self.checkpointer.save(self.state, last=last)
        self.last_checkpoint = path
        self.last_save_time = time.monotonic()
        return path

    def run(self) -> Outcome:
        train, meter = self.train, self.log.meter
        self.log.start_trackers()
        interrupted = None
        with StopSignal() as stop, progress() as bar:
            task = bar.add_task("pretrain", total=train.max_steps, completed=self.state.step, rate="")
            while self.state.step < train.max_steps:
                loss = self._advance()
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
        self.log.end_trackers()
        return Outcome(
            state=self.state,
            size=self.size,
            checkpoint=self.last_checkpoint,
            interrupted=interrupted,
            events=self.log.events,
            tokens_per_s=meter.tokens_per_s,
            mfu=self.log.mfu(meter.tokens_per_s),
            peak=self.log.peak,
            local_params=self.local_params,
            objective=self.objective.name,
        )

    def _advance(self) -> float | None:
        """One optimizer step at the scheduled batch size and LR, then its log line and validation when due.
        Returns the step's loss, or None when a spike rolled the run back."""
        train = self.train
        rows = batch_rows_at(self.state.tokens_seen, train, train.micro_batch * self.world)
        lr = lr_at(self.state.step, train) * self.state.lr_factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        result = self._step(rows)
        if result.rolled_back:
            return None
        tokens = rows * train.seq_len
        self.log.meter.add(tokens, time.perf_counter() - started)
        self.state.step += 1
        self.state.cursor += rows
        if result.grad_norm is not None:  # a skipped batch was seen but not learned from
            self.state.tokens_seen += tokens
        step, values = self.state.step, {}
        if step % train.eval_every == 0 or step == train.max_steps:
            self.state.val_loss, val_accuracy = self.evaluate()
            values["val_loss"] = self.state.val_loss
            if val_accuracy is not None:
                values["val_accuracy"] = val_accuracy
        if step % train.log_every == 0 or values:
            values.update(tokens=self.state.tokens_seen, loss=result.loss, lr=lr, grad_norm=result.grad_norm)
            if result.accuracy is not None:
                values["accuracy"] = result.accuracy
            self.log.step(step, values)
        return result.loss

    def _checkpoint_if_due(self, signalled: bool) -> bool:
        """Save on a stop signal, every `checkpoint_every` steps or `checkpoint_minutes`, and at the end;
        returns whether a signal asks the run to stop (on any rank)."""
        train, step = self.train, self.state.step
        timed = train.checkpoint_minutes is not None and (
            time.monotonic() - self.last_save_time >= 60 * train.checkpoint_minutes
        )
        signalled, timed = self.strategy.any(signalled, timed)
        last = signalled or step == train.max_steps
        if last or timed or step % train.checkpoint_every == 0:
            self.save(last=last)
        return signalled

"""PPO-RLHF, our own small loop (trl no longer has one): rollout → score → advantages → clipped updates.

One step (Ouyang et al. 2022; the details of Huang et al. 2024, numbered as in llmforge/rlhf/ppo_math.py):
  1. sample `rollout_batch` prompts (a seeded permutation per epoch over the prompts);
  2. generate a reply to each (pure sampling at `temperature`, at most `response_length` tokens) and cut it
     after its first stop token;
  3. score the replies (the scorer: a reward model or a function), subtract `missing_eos_penalty` from replies
     without a stop token, optionally clip; per-token log-probs of the policy and the frozen reference, the
     value model's values; per-token rewards (−β·KL on every token, the score on the last), GAE advantages
     (whitened) and returns;
  4. `ppo_epochs` passes over the rollout in minibatches of `minibatch_size` rows: clipped policy loss
     (+ β·KL when kl_in = "loss") + vf_coef × clipped value loss, gradient clipping, AdamW steps; the spike
     guard drops an update whose loss or gradient is non-finite or spikes;
  5. update β (adaptive with `adaptive_kl`), log one metrics line, checkpoint every `save_every` steps.

Every model stays in eval() mode throughout (detail 8): dropout would make the log-probs of the rollout and of
the update disagree even before any weight moved. Resuming from `state_dir/step-N` (weights, optimizers, β,
spike history, data position and every RNG) continues exactly as an uninterrupted run. One process: the
accelerator places the models and runs backward; there is no data sharding across devices.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmforge.artifacts import atomic_dir
from llmforge.metrics_log import MetricsLog
from llmforge.rlhf import ppo_math as pm
from llmforge.rlhf.config import PpoConfig
from llmforge.spike_guard import SpikeGuard
from llmforge.stop_signal import StopSignal

STATE_FILE = "trainer_state.pt"
POLICY_FILE = "policy.safetensors"
VALUE_FILE = "value.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")
TIMING_KEYS = ("rollout_tokens_per_s", "update_seconds")  # the metrics that differ between identical runs

# scorer(sequences [B,T], attention_mask [B,T], prompt texts, completion texts, extra columns) -> scores [B]
Scorer = Callable[[torch.Tensor, torch.Tensor, list[str], list[str], dict[str, list]], torch.Tensor]


@dataclass
class PpoModels:
    policy: Any  # AutoModelForCausalLM, trained
    ref: Any  # frozen copy of the initial policy
    value: Any  # AutoModelForTokenClassification(num_labels=1), its head zero-initialised (value_model_from)


def value_model_from(policy_dir: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    """The value model: the policy's checkpoint with a one-output token-classification head whose weights
    are zero (detail 8: every value starts at 0, so the first advantages are the rewards themselves rather
    than the noise of a random head)."""
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(policy_dir, num_labels=1, dtype=dtype)
    head = _value_head(model)
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
    return model


def _value_head(model: Any) -> torch.nn.Linear:
    """The token-classification head (`score` in most architectures, `classifier` in some)."""
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    heads = [m for m in model.children() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if len(heads) != 1:
        raise ValueError(f"{type(model).__name__}: cannot find its one-output value head")
    return heads[0]


@dataclass
class LoopState:
    """What besides weights, optimizers, β and RNG a resumed run needs."""

    step: int = 0  # steps completed
    epoch: int = 0  # pass over the prompts the next batch is drawn from
    position: int = 0  # next index into that epoch's permutation
    skipped_updates: int = 0  # over the whole run


@dataclass
class Rollout:
    """One step's samples and everything the update needs, all [B, …] on the loop's device."""

    prompt_index: torch.Tensor  # [B] rows of `prompts`
    query: torch.Tensor  # [B, P] left-padded prompt ids
    query_mask: torch.Tensor  # [B, P]
    responses: torch.Tensor  # [B, R] reply ids, pad after the stop token
    response_mask: torch.Tensor  # [B, R] True on reply tokens (the stop token included)
    has_stop: torch.Tensor  # [B]
    logprobs: torch.Tensor  # [B, R] policy, temperature-scaled (masked positions 0)
    ref_logprobs: torch.Tensor  # [B, R]
    values: torch.Tensor  # [B, R]
    scores: torch.Tensor  # [B] the scorer's raw scores
    rewards: torch.Tensor  # [B, R] per-token rewards (before any whitening)
    advantages: torch.Tensor  # [B, R] whitened
    returns: torch.Tensor  # [B, R]
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def sequences(self) -> torch.Tensor:
        return torch.cat([self.query, self.responses], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask.long()], dim=1)


class PpoLoop:
    def __init__(
        self,
        cfg: PpoConfig,
        models: PpoModels,
        tokenizer: Any,
        scorer: Scorer,
        prompts: list[str],
        columns: list[dict],
        *,
        stop_ids: list[int],
        seed: int,
        state_dir: Path,
        metrics_path: Path,
        accelerator: Any = None,
    ):
        if not prompts:
            raise ValueError("PpoLoop: no prompts")
        if len(columns) != len(prompts):
            raise ValueError(f"PpoLoop: {len(columns)} column rows for {len(prompts)} prompts")
        if accelerator is None:
            from accelerate import Accelerator

            accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.cfg, self.models, self.tokenizer, self.scorer = cfg, models, tokenizer, scorer
        self.prompts, self.columns = prompts, columns
        self.stop_ids = list(stop_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.seed = seed
        self.state_dir, self.metrics_path = Path(state_dir), Path(metrics_path)
        self.accelerator = accelerator
        self.device = accelerator.device
        for model in (models.policy, models.ref, models.value):
            model.to(self.device)
            model.eval()  # and never train(): no dropout anywhere in the loop (detail 8)
        models.ref.requires_grad_(False)
        # rendered prompts carry the template's own special tokens: add none
        self.queries = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        self.policy_optimizer = torch.optim.AdamW(
            [p for p in models.policy.parameters() if p.requires_grad], **_adam(cfg.lr)
        )
        self.value_optimizer = torch.optim.AdamW(
            [p for p in models.value.parameters() if p.requires_grad], **_adam(cfg.value_lr or cfg.lr)
        )
        if cfg.adaptive_kl is not None:
            self.kl_ctl: pm.FixedKLController = pm.AdaptiveKLController(
                cfg.kl_coef, cfg.adaptive_kl.target, cfg.adaptive_kl.horizon
            )
        else:
            self.kl_ctl = pm.FixedKLController(cfg.kl_coef)
        self.guard = SpikeGuard(cfg.spike)
        self.state = LoopState()

    # ---- the run ----------------------------------------------------------------------------------------

    def train(
        self, stop: StopSignal | None = None, on_step: Callable[[dict], None] | None = None
    ) -> dict[str, Any]:
        """Run to `cfg.steps` (resuming from the newest state in `state_dir`); returns a summary, or
        {"stopped_at_step": N} when `stop` was signalled (the state is saved first)."""
        resumed = self.resume()
        if not resumed:
            _seed_everything(self.seed)
        log = MetricsLog(self.metrics_path, self.state.step if resumed else None)
        while self.state.step < self.cfg.steps:
            metrics = self.step()
            log.write(metrics)
            saved = self.state.step % self.cfg.save_every == 0 or self.state.step == self.cfg.steps
            if saved:
                self.save()
            if on_step is not None:
                on_step(metrics)
            if stop is not None and stop.signum is not None and self.state.step < self.cfg.steps:
                if not saved:
                    self.save()
                return {"stopped_at_step": self.state.step}
        return {
            "steps_completed": self.state.step,
            "skipped_updates": self.state.skipped_updates,
            "final_beta": self.kl_ctl.value,
        }

    def step(self) -> dict[str, Any]:
        """One rollout and its PPO updates; returns the step's metrics."""
        beta = self.kl_ctl.value
        started = time.perf_counter()
        rollout = self.rollout(self.next_batch())
        rollout_seconds = time.perf_counter() - started
        started = time.perf_counter()
        update = self.update(rollout)
        update_seconds = time.perf_counter() - started
        self.kl_ctl.update(rollout.stats["kl"], len(rollout.prompt_index))
        self.state.step += 1
        self.state.skipped_updates += update.pop("skipped_updates")
        return {
            "step": self.state.step,
            **rollout.stats,
            "beta": beta,
            **update,
            "rollout_tokens_per_s": rollout.response_mask.sum().item() / max(rollout_seconds, 1e-9),
            "update_seconds": update_seconds,
            "skipped_updates": self.state.skipped_updates,
        }

    def next_batch(self) -> torch.Tensor:
        """The next `rollout_batch` prompt indices: a seeded permutation per epoch, read from the saved
        position (a batch may run over into the next epoch)."""
        n = len(self.prompts)
        picked: list[int] = []
        while len(picked) < self.cfg.rollout_batch:
            order = np.random.default_rng([self.seed, self.state.epoch]).permutation(n)
            take = min(self.cfg.rollout_batch - len(picked), n - self.state.position)
            picked += order[self.state.position : self.state.position + take].tolist()
            self.state.position += take
            if self.state.position == n:
                self.state.epoch, self.state.position = self.state.epoch + 1, 0
        return torch.tensor(picked, dtype=torch.long)

    # ---- rollout ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, prompt_index: torch.Tensor) -> Rollout:
        cfg = self.cfg
        query, query_mask = self._left_pad([self.queries[i] for i in prompt_index.tolist()])
        generated = self._generate(query, query_mask)
        responses, mask, has_stop = pm.truncate_at_stop(generated, self.stop_ids, self.pad_id)
        sequences = torch.cat([query, responses], dim=1)
        attention_mask = torch.cat([query_mask, mask.long()], dim=1)
        width = query.shape[1]
        logprobs, ref_logprobs, values, entropy = [], [], [], []
        for rows in torch.arange(len(prompt_index)).split(cfg.minibatch_size):
            seq, am, resp = sequences[rows], attention_mask[rows], responses[rows]
            logits = self._response_logits(self.models.policy, seq, am, resp.shape[1])
            logprobs.append(pm.logprobs_from_logits(logits, resp, cfg.temperature))
            entropy.append(pm.entropy_from_logits(logits, cfg.temperature))
            del logits
            ref_logits = self._response_logits(self.models.ref, seq, am, resp.shape[1])
            ref_logprobs.append(pm.logprobs_from_logits(ref_logits, resp, cfg.temperature))
            del ref_logits
            values.append(self._values(self.models.value, seq, am, width))
        m = mask.float()
        logprobs, ref_logprobs = torch.cat(logprobs) * m, torch.cat(ref_logprobs) * m
        values, entropy = torch.cat(values) * m, torch.cat(entropy)

        scores = self._score(prompt_index, sequences, attention_mask, responses, mask)
        total = scores
        if cfg.reward_clip is not None:
            total = total.clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.missing_eos_penalty is not None:
            total = total - cfg.missing_eos_penalty * (~has_stop).float()
        beta = self.kl_ctl.value
        kl = pm.kl_per_token(logprobs, ref_logprobs, cfg.kl_estimator) * m
        rewards = pm.per_token_rewards(total, kl, mask, beta, cfg.kl_in)
        shaped = pm.whiten(rewards, mask, shift_mean=False) if cfg.whiten_rewards else rewards
        advantages, returns = pm.gae(shaped, values, mask, cfg.gamma, cfg.lam)
        advantages = pm.whiten(advantages, mask)
        stats = {
            "score": scores.mean().item(),
            # the whole per-sequence reward, the KL penalty included wherever the KL is applied
            "reward": pm.per_token_rewards(total, kl, mask, beta, "reward").sum(1).mean().item(),
            "kl": ((logprobs - ref_logprobs) * m).sum(1).mean().item(),
            "response_length": m.sum(1).mean().item(),
            "no_stop_fraction": (~has_stop).float().mean().item(),
            "entropy": pm.masked_mean(entropy, mask).item(),
        }
        return Rollout(
            prompt_index, query, query_mask, responses, mask, has_stop, logprobs, ref_logprobs, values,
            scores, rewards, advantages, returns, stats,
        )  # fmt: skip

    def _left_pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in ids)
        query = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        query_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            if x:
                query[row, width - len(x) :] = torch.tensor(x)
                query_mask[row, width - len(x) :] = 1
        return query.to(self.device), query_mask.to(self.device)

    def _generate(self, query: torch.Tensor, query_mask: torch.Tensor, model: Any = None) -> torch.Tensor:
        """Pure sampling at the configured temperature (from the policy unless `model` is given). The
        checkpoint's own generation config (top_k, repetition penalty, …) is swapped out for the call: PPO's
        ratios assume exactly this policy."""
        from transformers import GenerationConfig

        policy = self.accelerator.unwrap_model(model if model is not None else self.models.policy)
        sampling = GenerationConfig(
            do_sample=True,
            temperature=self.cfg.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=self.cfg.response_length,
            min_new_tokens=0,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            bos_token_id=policy.generation_config.bos_token_id,
            use_cache=True,
        )
        saved = policy.generation_config
        policy.generation_config = sampling
        try:
            out = policy.generate(input_ids=query, attention_mask=query_mask, generation_config=sampling)
        finally:
            policy.generation_config = saved
        return out[:, query.shape[1] :]

    def _score(self, prompt_index, sequences, attention_mask, responses, mask) -> torch.Tensor:
        rows = prompt_index.tolist()
        return self._score_replies(
            [self.prompts[i] for i in rows], [self.columns[i] for i in rows], sequences, attention_mask,
            responses, mask,
        )  # fmt: skip

    def _score_replies(
        self, prompts, column_rows, sequences, attention_mask, responses, mask
    ) -> torch.Tensor:
        completions = [
            self.tokenizer.decode(r[m].tolist(), skip_special_tokens=True)
            for r, m in zip(responses, mask, strict=True)
        ]
        keys = sorted({k for row in column_rows for k in row})
        columns = {k: [row.get(k) for row in column_rows] for k in keys}
        scores = self.scorer(sequences, attention_mask, prompts, completions, columns)
        scores = torch.as_tensor(scores, dtype=torch.float32).to(self.device).reshape(-1)
        if scores.shape[0] != len(prompts):
            raise ValueError(f"the scorer returned {scores.shape[0]} scores for {len(prompts)} replies")
        return scores

    @torch.no_grad()
    def mean_score(self, model: Any, prompts: list[str], columns: list[dict], seed: int) -> float:
        """The mean score of `model`'s replies to other (held-out) prompts, sampled and scored as in a rollout,
        under its own seed: the training RNG is left as it was, so a resumed run stays exact."""
        queries = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        devices = [self.device] if self.device.type == "cuda" else []
        total = 0.0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), self.cfg.rollout_batch):
                rows = range(start, min(start + self.cfg.rollout_batch, len(prompts)))
                query, query_mask = self._left_pad([queries[i] for i in rows])
                responses, mask, _ = pm.truncate_at_stop(
                    self._generate(query, query_mask, model), self.stop_ids, self.pad_id
                )
                scores = self._score_replies(
                    [prompts[i] for i in rows], [columns[i] for i in rows],
                    torch.cat([query, responses], dim=1), torch.cat([query_mask, mask.long()], dim=1),
                    responses, mask,
                )  # fmt: skip
                total += scores.sum().item()
        return total / len(prompts)

    # ---- forward passes ---------------------------------------------------------------------------------

    @staticmethod
    def _response_logits(model: Any, sequences, attention_mask, response_width: int) -> torch.Tensor:
        """Logits at the positions that predict each reply token (the last prompt token … the token before
        the last reply token); positions from the attention mask so left padding does not shift them."""
        out = model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=pm.left_pad_position_ids(attention_mask),
            logits_to_keep=response_width + 1,
            use_cache=False,
        )
        return out.logits[:, :-1]

    @staticmethod
    def _values(model: Any, sequences, attention_mask, query_width: int) -> torch.Tensor:
        """V at the same positions as the logits: the value of the state before each reply token."""
        out = model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=pm.left_pad_position_ids(attention_mask),
            use_cache=False,
        )
        return out.logits[:, query_width - 1 : -1, 0].float()

    # ---- update -----------------------------------------------------------------------------------------

    def update(self, rollout: Rollout) -> dict[str, Any]:
        """`ppo_epochs` passes over the rollout in shuffled minibatches; returns the mean of each statistic
        over the minibatch updates and the number of updates the spike guard dropped."""
        n = len(rollout.prompt_index)
        totals: dict[str, float] = {}
        count, skipped = 0, 0
        for epoch in range(self.cfg.ppo_epochs):
            shuffle = torch.Generator().manual_seed(self.seed * 1_000_003 + self.state.step * 1_009 + epoch)
            order = torch.randperm(n, generator=shuffle).to(self.device)
            for rows in order.split(self.cfg.minibatch_size):
                stats = self._minibatch_update(rollout, rows)
                skipped += int(stats.pop("skipped"))
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        return {**{k: v / count for k, v in totals.items()}, "skipped_updates": skipped}

    def _minibatch_update(self, rollout: Rollout, rows: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        sequences, attention_mask = rollout.sequences[rows], rollout.attention_mask[rows]
        responses, mask = rollout.responses[rows], rollout.response_mask[rows]
        logits = self._response_logits(self.models.policy, sequences, attention_mask, responses.shape[1])
        logprobs = pm.logprobs_from_logits(logits, responses, cfg.temperature)
        del logits
        values = self._values(self.models.value, sequences, attention_mask, rollout.query.shape[1])
        pg_loss, pg_clipfrac, approx_kl = pm.policy_loss(
            logprobs, rollout.logprobs[rows], rollout.advantages[rows], mask, cfg.cliprange
        )
        loss = pg_loss
        if cfg.kl_in == "loss":
            kl = pm.kl_per_token(logprobs, rollout.ref_logprobs[rows], cfg.kl_estimator)
            loss = loss + self.kl_ctl.value * pm.masked_mean(kl, mask)
        vf_loss, vf_clipfrac = pm.value_loss(
            values, rollout.values[rows], rollout.returns[rows], mask, cfg.cliprange_value
        )
        loss = loss + cfg.vf_coef * vf_loss
        skipped = not self._apply(loss)
        return {
            "policy_loss": pg_loss.item(),
            "value_loss": vf_loss.item(),
            "policy_clipfrac": pg_clipfrac.item(),
            "value_clipfrac": vf_clipfrac.item(),
            "approx_kl": approx_kl.item(),
            "skipped": float(skipped),
        }

    def _apply(self, loss: torch.Tensor) -> bool:
        """Backward, clip, step, unless the spike guard objects (then the gradients are dropped). Returns
        whether the update was applied."""
        value = loss.item()
        verdict = self.guard.check(value)
        if not verdict.spike:
            self.accelerator.backward(loss)
            params = [p for m in (self.models.policy, self.models.value) for p in m.parameters()]
            grad_norm = self.accelerator.clip_grad_norm_(params, self.cfg.max_grad_norm)
            verdict = self.guard.check_grad_norm(float(grad_norm))
            if not verdict.spike:
                self.policy_optimizer.step()
                self.value_optimizer.step()
                self.guard.accept(value)
        self.policy_optimizer.zero_grad(set_to_none=True)
        self.value_optimizer.zero_grad(set_to_none=True)
        if verdict.spike and not self.cfg.spike.enabled:
            raise RuntimeError(
                f"PPO step {self.state.step + 1}: {verdict.reason} with rlhf.ppo.spike.enabled = false; the "
                "run stops before its weights are spoiled; lower rlhf.ppo.lr or turn the spike guard on"
            )
        return not verdict.spike

    # ---- state ------------------------------------------------------------------------------------------

    def save(self) -> Path:
        """state_dir/step-N, written under a temporary name and renamed (a crash leaves no half state);
        only the newest `keep_last` are kept."""
        from safetensors.torch import save_model

        path = self.state_dir / f"step-{self.state.step}"
        with atomic_dir(path) as tmp:
            save_model(self.accelerator.unwrap_model(self.models.policy), str(tmp / POLICY_FILE))
            save_model(self.accelerator.unwrap_model(self.models.value), str(tmp / VALUE_FILE))
            torch.save(
                {
                    "loop": asdict(self.state),
                    "policy_optimizer": self.policy_optimizer.state_dict(),
                    "value_optimizer": self.value_optimizer.state_dict(),
                    "kl_controller": self.kl_ctl.state_dict(),
                    "spike_history": list(self.guard.history),
                    "rng": _rng_state(),
                },
                tmp / STATE_FILE,
            )
        for old in state_dirs(self.state_dir)[: -self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def resume(self) -> bool:
        """Load the newest complete state in `state_dir`, if any; returns whether one was loaded."""
        from safetensors.torch import load_model

        found = state_dirs(self.state_dir)
        if not found:
            return False
        path = found[-1]
        device = str(self.device)
        load_model(self.accelerator.unwrap_model(self.models.policy), str(path / POLICY_FILE), device=device)
        load_model(self.accelerator.unwrap_model(self.models.value), str(path / VALUE_FILE), device=device)
        saved = torch.load(path / STATE_FILE, map_location=self.device, weights_only=True)
        self.policy_optimizer.load_state_dict(saved["policy_optimizer"])
        self.value_optimizer.load_state_dict(saved["value_optimizer"])
        self.kl_ctl.load_state_dict(saved["kl_controller"])
        self.guard = SpikeGuard(self.cfg.spike, saved["spike_history"])
        self.state = LoopState(**saved["loop"])
        _set_rng_state(saved["rng"])
        return True


def state_dirs(state_dir: Path) -> list[Path]:
    """The complete states under `state_dir`, oldest first (temporaries of atomic_dir start with a dot)."""
    if not state_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in state_dir.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def _adam(lr: float) -> dict[str, Any]:
    # eps 1e-5 as OpenAI's lm-human-preferences (TensorFlow's Adam; Huang et al. 2024); no weight decay
    return {"lr": lr, "eps": 1e-5, "weight_decay": 0.0}


def _seed_everything(seed: int) -> None:
    """A fresh run's sampling (and any randomness of the scorer) follows from `seed` alone."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])

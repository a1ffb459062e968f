"""`[rlhf]` table: preference data, reward model, DPO, PPO, RLOO and GRPO. Pydantic only (no torch at import).

The shared keys (the SFT policy, the data, lengths, precision) sit in `[rlhf]`; each trainer has its own
sub-table (`[rlhf.reward]`, `[rlhf.dpo]`, `[rlhf.ppo]`, `[rlhf.rloo]`, `[rlhf.grpo]`) whose keys are the
trainer's hyperparameters. Every output goes under `rlhf.out` (default `<run dir>/rlhf`), one folder per trainer.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from llmforge.recipe_base import RecipePath, RecipePathOrName, Table

PREFERENCE_FORMATS = ("auto", "pairs", "hh", "alpaca_eval")
# roles a preference row is read by; `fields` renames them to the file's columns
PREFERENCE_ROLES = ("prompt", "chosen", "rejected", "margin", "output_1", "output_2", "preference")

# every loss trl's DPOTrainer offers (trl 1.16, DPOConfig.loss_type); kept here so a recipe is checked without
# importing trl, and tests check the list against trl's own
DPO_LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)


class PreferenceSource(Table):
    """One file of preference pairs (jsonl/json/parquet) or a `datasets` hub name (online).

    Formats: `pairs` (`prompt`?, `chosen`, `rejected`, optional `margin`), `hh` (Anthropic HH-RLHF: `chosen`
    and `rejected` are whole "\\n\\nHuman: … \\n\\nAssistant: …" dialogues sharing everything before the last
    assistant turn) and `alpaca_eval` (AlpacaEval annotations: `instruction`, `output_1`, `output_2`,
    `preference` 1 or 2; 0 = no decision, dropped). `auto` tells them apart by their columns."""

    path: RecipePathOrName = Field(min_length=1)
    name: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")  # default: the file's stem
    subset: str | None = Field(None, min_length=1)  # hub datasets only
    split: str = Field("train", min_length=1)  # hub datasets only
    val_path: RecipePathOrName | None = None  # its held-out pairs; without it rlhf.val_fraction are held out
    format: Literal["auto", "pairs", "hh", "alpaca_eval"] = "auto"
    fields: dict[str, str] = Field(default_factory=dict)  # role → column, e.g. {chosen = "better"}
    max_rows: int | None = Field(None, ge=1)  # at most this many pairs (the file's first ones)

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceSource:
        unknown = sorted(set(self.fields) - set(PREFERENCE_ROLES))
        if unknown:
            raise ValueError(
                f"fields: unknown role(s) {', '.join(unknown)} (expected some of {', '.join(PREFERENCE_ROLES)})"
            )
        hub_only = [k for k in ("subset", "split") if k in self.model_fields_set]
        if hub_only and os.path.exists(self.path):
            raise ValueError(
                f"{', '.join(hub_only)}: applies to a hub dataset only; {self.path} is a local file"
            )
        return self


class PromptSource(Table):
    """Prompts for the online trainers (PPO, RLOO, GRPO): a jsonl/json/parquet file or hub dataset with a
    prompt column, and optionally a reference answer column for programmatic rewards (GSM8K's `answer`)."""

    path: RecipePathOrName = Field(min_length=1)
    subset: str | None = Field(None, min_length=1)
    split: str = Field("train", min_length=1)
    prompt_field: str = Field("prompt", min_length=1)  # dotted paths reach nested columns
    answer_field: str | None = Field(None, min_length=1)  # passed to the reward function as `answer`
    max_rows: int | None = Field(None, ge=1)


class TrainerKeys(Table):
    """What every trl-driven trainer here shares."""

    lr: float = Field(1e-5, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs
    batch_size: int = Field(8, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(25, ge=1)  # optimizer steps between evaluations
    save_every: int | None = Field(None, ge=1)  # default: eval_every
    keep_last: int = Field(2, ge=1)
    out: RecipePath | None = None  # default: <rlhf.out>/<trainer>

    @property
    def save_steps(self) -> int:
        return self.save_every or self.eval_every


class RewardConfig(TrainerKeys):
    """`[rlhf.reward]`: a reward model (a scalar sequence-classification head on the SFT model, trl's
    RewardTrainer; Bradley–Terry loss −log σ(r_chosen − r_rejected − margin), Ouyang et al. 2022 §3.5)."""

    base: RecipePath | None = None  # default: rlhf.policy
    lr: float = Field(5e-5, gt=0)
    center_rewards_coefficient: float | None = Field(None, gt=0)  # Eisenstein et al. 2023: pulls rewards to 0
    calibration_bins: int = Field(10, ge=2)


class DpoConfig(TrainerKeys):
    """`[rlhf.dpo]`: direct preference optimisation (Rafailov et al. 2023) through trl's DPOTrainer."""

    policy: RecipePath | None = None  # default: rlhf.policy (the reference is the same model, frozen)
    beta: float = Field(0.1, gt=0)
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"], min_length=1)
    loss_weights: list[float] | None = None  # one per loss_type
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # robust / cDPO's assumed label noise
    precompute_ref_log_probs: bool = False  # reference log-probs computed once, the reference then freed

    @model_validator(mode="after")
    def _losses(self) -> DpoConfig:
        unknown = [name for name in self.loss_type if name not in DPO_LOSSES]
        if unknown:
            raise ValueError(
                f"loss_type: {', '.join(map(repr, unknown))} not a DPO loss; expected some of {', '.join(DPO_LOSSES)}"
            )
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights: {len(self.loss_weights)} weights for {len(self.loss_type)} loss_type entries"
            )
        return self


class RewardSource(Table):
    """Where an online trainer's reward comes from: a reward-model checkpoint (`rlhf reward`'s output by
    default) or a programmatic reward (`reward_fn`): a built-in name (llmforge/rlhf/rewards/) or
    `python:module:function` taking `(prompts, completions, **columns) -> list[float]`."""

    reward_model: RecipePath | None = None  # default: <rlhf.out>/reward/checkpoint unless reward_fn is set
    reward_fn: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_reward(self) -> RewardSource:
        if self.reward_model is not None and self.reward_fn is not None:
            raise ValueError("give reward_model or reward_fn, not both")
        return self


class SpikeConfig(Table):
    """`[rlhf.ppo.spike]`: an update whose loss is non-finite or `sigma` std above the recent mean is dropped."""

    enabled: bool = True
    sigma: float = Field(6.0, gt=0)
    window: int = Field(50, ge=2)
    min_history: int = Field(20, ge=2)


class AdaptiveKlConfig(Table):
    """Ziegler et al. 2019's proportional controller: err = clip(KL/target − 1, ±0.2), β ← β·(1 + err·n/horizon)."""

    target: float = Field(gt=0)  # the KL (nats per sequence) the controller steers to
    horizon: int = Field(10000, ge=1)  # in rollout samples


class PpoConfig(RewardSource):
    """`[rlhf.ppo]`: PPO-RLHF (Ouyang et al. 2022; the details of Huang et al. 2024 "The N implementation
    details of RLHF with PPO"), our own loop (llmforge/rlhf/ppo.py) on Accelerate."""

    policy: RecipePath | None = (
        None  # default: rlhf.policy; also the frozen reference and the value model's init
    )
    steps: int = Field(100, ge=1)  # rollout → update iterations
    rollout_batch: int = Field(16, ge=1)  # prompts sampled per step
    minibatch_size: int = Field(4, ge=1)  # rows per gradient step; must divide rollout_batch
    ppo_epochs: int = Field(4, ge=1)  # passes over each rollout
    response_length: int = Field(48, ge=1)  # new tokens at most
    temperature: float = Field(0.7, gt=0)  # sampling temperature; log-probs are computed at the same one
    lr: float = Field(1e-5, gt=0)
    value_lr: float | None = Field(None, gt=0)  # default: lr
    kl_coef: float = Field(0.05, gt=0)  # β (initial β with adaptive_kl)
    kl_estimator: Literal["k1", "k3"] = "k1"  # Schulman 2020: k1 = log r, k3 = (r − 1) − log r
    kl_in: Literal["reward", "loss"] = "reward"  # −β·KL_t in the per-token reward, or β·KL in the loss
    adaptive_kl: AdaptiveKlConfig | None = None
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    whiten_rewards: bool = False
    reward_clip: float | None = Field(None, gt=0)  # clip the reward-model score to ±reward_clip
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, gt=0)
    missing_eos_penalty: float | None = Field(1.0, ge=0)  # subtracted from the score of a reply without EOS
    max_grad_norm: float = Field(1.0, gt=0)
    save_every: int = Field(10, ge=1)  # steps between resumable checkpoints
    keep_last: int = Field(2, ge=1)
    val_prompts: int = Field(64, ge=0)  # held-out prompts scored before and after training (0: none)
    spike: SpikeConfig = Field(default_factory=SpikeConfig)
    out: RecipePath | None = None

    @model_validator(mode="after")
    def _minibatches(self) -> PpoConfig:
        if self.rollout_batch % self.minibatch_size:
            raise ValueError(
                f"minibatch_size = {self.minibatch_size} must divide rollout_batch = {self.rollout_batch}"
            )
        return self


class OnlineConfig(RewardSource, TrainerKeys):
    """`[rlhf.rloo]` / `[rlhf.grpo]`: trl's RLOOTrainer (Ahmadian et al. 2024) / GRPOTrainer (Shao et al. 2024)."""

    policy: RecipePath | None = None  # default: rlhf.policy
    num_generations: int = Field(4, ge=2)  # completions per prompt (the group / leave-one-out baseline)
    beta: float = Field(0.05, ge=0)  # KL coefficient (0: no reference model)
    response_length: int = Field(48, ge=1)
    temperature: float = Field(0.7, gt=0)
    mask_truncated_completions: bool = (
        False  # replies cut at response_length leave the loss (DAPO, Yu et al. 2025)
    )
    max_steps: int | None = Field(50, ge=1)

    @model_validator(mode="after")
    def _groups(self) -> OnlineConfig:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size × grad_accum = {self.batch_size * self.grad_accum} must be a multiple of "
                f"num_generations = {self.num_generations} (each prompt's completions form one group)"
            )
        return self


class RlooConfig(OnlineConfig):
    """`[rlhf.rloo]`: REINFORCE with the leave-one-out baseline; the KL (β) is folded into the reward."""

    normalize_advantages: bool = False


class GrpoConfig(OnlineConfig):
    """`[rlhf.grpo]`: group-relative advantages (reward − group mean, scaled by `scale_rewards`)."""

    beta: float = Field(0.0, ge=0)  # trl's default: no reference model, no KL term
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"


class RoundsConfig(Table):
    """`[rlhf.rounds]`: what `--rounds K` (K > 1) of `rlhf dpo` / `rlhf ppo` samples and who labels it
    (llmforge/rlhf/rounds.py). Exactly one labeller: a judge model (a reward-model artifact), a judge
    function (a built-in or `python:module:function`, as reward_fn) or people (`labels`: a folder where
    `round-N.jsonl` holds their chosen/rejected rows for round N's candidates)."""

    judge_model: RecipePath | None = None
    judge_fn: str | None = Field(None, min_length=1)
    labels: RecipePath | None = None
    prompts_per_round: int = Field(64, ge=1)  # train prompts sampled per round (a fresh seeded subset)
    val_prompts: int = Field(16, ge=1)  # held-out prompts per round (the round's val pairs)
    temperature: float = Field(1.0, gt=0)
    response_length: int = Field(48, ge=1)
    out: RecipePath | None = None  # default: <rlhf.out>/rounds

    @model_validator(mode="after")
    def _at_most_one_labeller(self) -> RoundsConfig:
        given = [k for k in ("judge_model", "judge_fn", "labels") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of judge_model, judge_fn or labels, not {' and '.join(given)}")
        return self


class RlhfConfig(Table):
    """`[rlhf]`: align an instruction-tuned causal LM with preferences (the SFT checkpoint of `finetune sft`)."""

    policy: RecipePath  # the SFT checkpoint: a causal-LM dir with a tokenizer (and its chat template)
    preferences: list[PreferenceSource] = Field(default_factory=list)  # reward model and DPO data
    prompts: list[PromptSource] = Field(
        default_factory=list
    )  # online data; default: the preferences' prompts
    val_fraction: float = Field(0.1, gt=0, lt=1)  # held out of each preference source without val_path
    chat_template: bool = True  # render prompts with the policy's chat template (false: plain text)
    system_prompt: str | None = None
    max_prompt_len: int = Field(
        128, ge=1
    )  # tokens of a rendered prompt (online trainers); longer ones are left out
    max_len: int = Field(384, ge=8)  # prompt + reply tokens for reward and DPO; longer pairs are dropped
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int | None = Field(None, ge=0)  # default: run.seed
    out: RecipePath | None = None  # default: <run dir>/rlhf
    reward: RewardConfig = Field(default_factory=RewardConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    ppo: PpoConfig = Field(default_factory=PpoConfig)
    rloo: RlooConfig = Field(default_factory=RlooConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)

    @model_validator(mode="after")
    def _lengths(self) -> RlhfConfig:
        if self.max_prompt_len >= self.max_len:
            raise ValueError(f"max_prompt_len = {self.max_prompt_len} must be below max_len = {self.max_len}")
        names = [p.name for p in self.preferences if p.name]
        if len(names) != len(set(names)):
            raise ValueError("preferences: two sources share a name; give each a different `name`")
        return self

"""The trl-driven rlhf trainers on a tiny chat model and a planted, learnable preference (replies made of one set
of words are preferred over replies made of another): the reward model learns it and beats chance on held-out
pairs with its score head saved intact; DPO raises the chosen-minus-rejected log-prob margin; GRPO/RLOO run the
online loop on a programmatic reward; and the checks that must refuse bad input before any training."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_tiny_model import build_tiny_model  # noqa: E402

from llmforge.console import UserError  # noqa: E402

GOOD = "apple river garden music silver candle".split()
BAD = "stone cloud window forest thunder rust".split()
TOPICS = "the sea,a city,the night,an old house,the road,a small boat,the hills,a letter".split(",")


@pytest.fixture(scope="session")
def policy(tmp_path_factory, shared_data) -> Path:
    """A 2-layer llama with the ChatML template installed (role tokens added), standing in for an SFT model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.generation.chat_template import BUILTIN, install

    root = tmp_path_factory.mktemp("rlhf")
    base = build_tiny_model(root / "base", shared_data / "tinyshakespeare" / "input.txt", vocab_size=400)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    install(tok, model, BUILTIN["chatml"])
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    return root / "policy"


def planted_pairs(n: int, seed: int, start: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(start, start + n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": f"Write three words about {topic} ({i}).",
                "chosen": " ".join(rng.choice(GOOD) for _ in range(3)),
                "rejected": " ".join(rng.choice(BAD) for _ in range(3)),
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def recipe(tmp_path: Path, policy: Path, extra: str = "") -> Path:
    train = write_jsonl(tmp_path / "train.jsonl", planted_pairs(48, 0))
    val = write_jsonl(tmp_path / "val.jsonl", planted_pairs(16, 1, start=100))
    text = f"""
[run]
name = "t"
out_dir = "{tmp_path / "runs"}"

[rlhf]
policy = "{policy}"
max_prompt_len = 48
max_len = 96

[[rlhf.preferences]]
path = "{train}"
val_path = "{val}"

[rlhf.reward]
max_steps = 30
batch_size = 8
lr = 2e-3
eval_every = 30

[rlhf.dpo]
max_steps = 12
batch_size = 8
lr = 1e-3
eval_every = 12
{extra}
"""
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def load(path: Path, *sets: str):
    from llmforge.recipe import load_recipe

    return load_recipe(path, list(sets))


@pytest.fixture(scope="module")
def reward_results(tmp_path_factory, policy) -> dict:
    from llmforge.rlhf.reward import run_reward

    return run_reward(load(recipe(tmp_path_factory.mktemp("reward"), policy))).results


def test_reward_model_learns_a_planted_preference_and_its_saved_head_scores_the_same(reward_results):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    results = reward_results
    assert results["val"]["pairs"] == 16
    assert results["val"]["accuracy"] >= 0.8, results["val"]  # chance is 0.5
    assert results["val"]["mean_margin"] > 0
    ckpt = Path(results["checkpoint"])
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["stats"]["model_kind"] == "reward_model"
    assert manifest["stats"]["reload_max_score_diff"] < 1e-4
    # reloaded from disk, the model still prefers the planted words (a random head would not)
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt).eval()

    def score(reply: str) -> float:
        text = tok.apply_chat_template(
            [
                {"role": "user", "content": "Write three words about the sea."},
                {"role": "assistant", "content": reply},
            ],
            tokenize=False,
        )
        with torch.no_grad():
            return model(**tok(text, return_tensors="pt")).logits[0, 0].item()

    assert score("apple garden silver") > score("stone window rust")
    report = Path(results["report"])
    assert (report / "calibration.png").stat().st_size > 0
    assert json.loads((report / "results.json").read_text())["val"]["calibration"]


def test_dpo_raises_the_chosen_minus_rejected_log_prob_margin(tmp_path, policy):
    from llmforge.rlhf.dpo import run_dpo

    results = run_dpo(load(recipe(tmp_path, policy))).results
    before, after = results["before"], results["after"]
    assert before["margin"] == pytest.approx(0.0, abs=1e-6)  # the policy is its own reference at step 0
    assert after["logp_margin"] > before["logp_margin"] + 1.0, (before, after)
    assert after["accuracy"] > 0.8
    assert (Path(results["checkpoint"]) / "model.safetensors").is_file()


def test_dpo_with_precomputed_reference_and_two_losses_trains(tmp_path, policy):
    from llmforge.rlhf.dpo import run_dpo

    r = load(
        recipe(tmp_path, policy),
        "rlhf.dpo.precompute_ref_log_probs=true",
        'rlhf.dpo.loss_type=["sigmoid","ipo"]',
        "rlhf.dpo.loss_weights=[1.0,0.5]",
        "rlhf.dpo.max_steps=6",
        "rlhf.dpo.eval_every=6",
    )
    results = run_dpo(r).results
    assert results["loss_type"] == ["sigmoid", "ipo"]
    assert results["after"]["logp_margin"] > results["before"]["logp_margin"]


def test_our_dpo_loss_names_are_trls():
    import dataclasses

    from trl import DPOConfig

    from llmforge.rlhf.config import DPO_LOSSES

    field = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"]
    help_text = field.metadata["help"]
    for name in DPO_LOSSES:
        assert f"'{name}'" in help_text or f"`{name}`" in help_text or name in help_text


def reward_fn(prompts, completions, **_):
    """A programmatic reward for the online trainers: the share of GOOD words in the reply."""
    return [sum(w in GOOD for w in c.split()) / max(1, len(c.split())) for c in completions]


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online_trainers_run_on_a_programmatic_reward_and_report_per_step(tmp_path, policy, algo):
    from llmforge.rlhf.online import run_online

    sys.modules.setdefault("rlhf_test_rewards", sys.modules[__name__])
    extra = f"""
[rlhf.{algo}]
reward_fn = "python:rlhf_test_rewards:reward_fn"
max_steps = 3
batch_size = 4
num_generations = 4
response_length = 8
eval_every = 3
lr = 1e-3
"""
    results = run_online(load(recipe(tmp_path, policy, extra)), algo).results
    assert results["steps"] == 3
    assert len(results["per_step"]) == 3
    assert all(r["reward"] is not None for r in results["per_step"])
    assert results["val_reward_before"] is not None and results["val_reward_after"] is not None
    assert (Path(results["report"]) / f"{algo}.png").is_file()


PPO_SETS = (
    "rlhf.ppo.steps=4",
    "rlhf.ppo.rollout_batch=4",
    "rlhf.ppo.minibatch_size=2",
    "rlhf.ppo.ppo_epochs=1",
    "rlhf.ppo.response_length=8",
    "rlhf.ppo.save_every=2",
    "rlhf.ppo.lr=1e-4",
)


def test_ppo_against_the_reward_model_writes_an_aligned_checkpoint_and_per_step_report(
    tmp_path, policy, reward_results
):
    import torch
    from transformers import AutoModelForCausalLM

    from llmforge.artifacts import read_manifest
    from llmforge.rlhf.ppo_run import run_ppo

    r = load(recipe(tmp_path, policy), *PPO_SETS, f"rlhf.ppo.reward_model={reward_results['checkpoint']!r}")
    results = run_ppo(r).results
    assert results["steps"] == 4 and results["reward"] == reward_results["checkpoint"]
    rows = [json.loads(x) for x in (Path(results["report"]) / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for key in ("score", "kl", "response_length", "entropy", "policy_clipfrac", "value_clipfrac", "beta"):
        assert all(row[key] is not None for row in rows), key
    assert (Path(results["report"]) / "ppo.png").stat().st_size > 1000
    # scored on the 16 held-out prompts, before (the reference = the initial policy) and after
    assert isinstance(results["val_reward_before"], float) and isinstance(results["val_reward_after"], float)
    ckpt = Path(results["checkpoint"])
    assert read_manifest(ckpt)["kind"] == "checkpoint"
    assert not (ckpt.parent / "state").exists()  # the resumable state goes once the run is done
    before = AutoModelForCausalLM.from_pretrained(policy).state_dict()
    after = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy was trained


def test_ppo_scores_a_reply_as_the_reward_model_saw_it_in_training(policy, reward_results):
    """PPO's reply ends at the end-of-turn token; the reward model was trained on rendered conversations, which
    go on past it (ChatML: a newline). With the template's tail appended, the score of PPO's ids equals the
    score of the rendered conversation; without it, the head reads another position."""
    import torch
    from transformers import AutoTokenizer

    from llmforge.rlhf import scoring
    from llmforge.rlhf.ppo_run import stop_ids, template_tail, with_template_tail

    tok = AutoTokenizer.from_pretrained(policy)
    spec = scoring.RewardSpec("model", reward_results["checkpoint"], model=Path(reward_results["checkpoint"]))
    scorer = scoring.ppo_scorer(spec, "cpu")
    stops = stop_ids(policy, tok)
    user = [{"role": "user", "content": "Write three words about the sea."}]
    prompt = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    reply = "apple garden silver"
    ids = (
        tok(prompt, add_special_tokens=False)["input_ids"] + tok(reply, add_special_tokens=False)["input_ids"]
    )
    pad = tok.pad_token_id
    seq = torch.tensor([[*ids, stops[0], pad, pad]])
    mask = torch.tensor([[1] * (len(ids) + 1) + [0, 0]])
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": reply}], tokenize=False)
    full_ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
    expected = scorer(full_ids, torch.ones_like(full_ids), [], [], {}).item()

    assert template_tail(tok, stops) == tok("\n", add_special_tokens=False)["input_ids"]
    with_tail = with_template_tail(scorer, template_tail(tok, stops), stops)
    assert with_tail(seq, mask, [], [], {}).item() == pytest.approx(expected, abs=1e-5)
    assert scorer(seq, mask, [], [], {}).item() != pytest.approx(expected, abs=1e-5)


PPO_REWARD = """
def letters(prompts, completions, **_):
    return [sum(c.isalpha() for c in t) / max(len(t), 1) for t in completions]
"""


@pytest.mark.slow
def test_ppo_killed_with_sigkill_resumes_exactly_through_the_cli(tmp_path, policy):
    """Two runs of `llmforge rlhf ppo`: one uninterrupted, one SIGKILLed after its step-2 state and run again.
    Every step's metrics (timings aside) must be equal."""
    import os
    import signal
    import subprocess
    import time

    from llmforge.rlhf.ppo import TIMING_KEYS

    (tmp_path / "ppo_rewards.py").write_text(PPO_REWARD)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    sets = [*PPO_SETS, "rlhf.ppo.steps=6", 'rlhf.ppo.reward_fn="python:ppo_rewards:letters"']

    def command(out: Path) -> list[str]:
        args = [sys.executable, "-m", "llmforge", "--quiet", "rlhf", "ppo", str(recipe(tmp_path, policy))]
        return [*args, *(x for s in [*sets, f"rlhf.ppo.out={str(out)!r}"] for x in ("--set", s))]

    killed = subprocess.Popen(command(tmp_path / "killed"), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "state" / "step-2").is_dir():
        assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "checkpoint").exists()
    for out in ("killed", "whole"):
        done = subprocess.run(command(tmp_path / out), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    def metrics(out: str) -> list[dict]:
        text = (tmp_path / out / "report" / "metrics.jsonl").read_text()
        return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS} for x in text.splitlines()]

    assert [m["step"] for m in metrics("killed")] == [1, 2, 3, 4, 5, 6]
    assert metrics("killed") == metrics("whole")


# ------------------------------------------------------------------------------------------ refusals


def test_a_reward_model_that_is_not_a_reward_artifact_is_refused(tmp_path, policy):
    from llmforge.rlhf.online import prepare

    r = load(recipe(tmp_path, policy, f'\n[rlhf.grpo]\nreward_model = "{policy}"\n'))
    with pytest.raises(UserError, match="not a reward-model checkpoint"):
        prepare(r, "grpo", fresh=False)


def test_a_missing_reward_model_says_to_train_one(tmp_path, policy):
    from llmforge.rlhf.ppo_run import prepare

    with pytest.raises(UserError, match="run `llmforge rlhf reward RECIPE` first"):
        prepare(load(recipe(tmp_path, policy)), fresh=False)


def test_a_reward_model_with_another_tokenizer_is_refused_for_ppo(tmp_path, policy, shared_data):
    from llmforge.artifacts import write_manifest
    from llmforge.rlhf.ppo_run import prepare

    other = build_tiny_model(
        tmp_path / "other", shared_data / "tinyshakespeare" / "input.txt", vocab_size=300
    )
    write_manifest(other, "checkpoint", stats={"model_kind": "reward_model"})
    r = load(recipe(tmp_path, policy, f'\n[rlhf.ppo]\nreward_model = "{other}"\n'))
    with pytest.raises(UserError, match="tokenizer differs from the policy"):
        prepare(r, fresh=False)


def test_kl_coefficient_must_be_positive(tmp_path, policy):
    with pytest.raises(UserError, match="rlhf.ppo.kl_coef"):
        load(recipe(tmp_path, policy), "rlhf.ppo.kl_coef=0")


def test_an_unknown_dpo_loss_is_refused(tmp_path, policy):
    with pytest.raises(UserError, match="not a DPO loss"):
        load(recipe(tmp_path, policy), 'rlhf.dpo.loss_type=["sigmoid","nope"]')


def test_a_finished_reward_run_is_not_silently_retrained(tmp_path, policy):
    from llmforge.rlhf.reward import prepare, run_reward

    r = load(recipe(tmp_path, policy), "rlhf.reward.max_steps=2", "rlhf.reward.eval_every=2")
    run_reward(r)
    with pytest.raises(UserError, match="already finished; pass --fresh"):
        prepare(r, fresh=False)


# ------------------------------------------------------------------------------------------ rounds


def letter_share(prompts, completions, **_):
    """A judge that tells a random model's replies apart: the share of letters among their characters."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


ROUND_SETS = (
    'rlhf.rounds.judge_fn="python:rlhf_test_rewards:letter_share"',
    "rlhf.rounds.prompts_per_round=8",
    "rlhf.rounds.val_prompts=4",
    "rlhf.rounds.response_length=8",
    "rlhf.dpo.max_steps=4",
    "rlhf.dpo.eval_every=4",
)


def test_a_second_dpo_round_trains_from_the_first_rounds_output_on_judged_pairs(tmp_path, policy):
    from llmforge.artifacts import read_manifest
    from llmforge.rlhf.rounds import run_rounds

    sys.modules.setdefault("rlhf_test_rewards", sys.modules[__name__])
    r = load(recipe(tmp_path, policy), *ROUND_SETS)
    results = run_rounds(r, "dpo", 2).results
    first, second = results["rounds"]
    assert first["policy"] == str(policy) and first["pairs"] == "configured"
    assert second["policy"] == first["checkpoint"]  # round 2 starts from round 1's output
    pairs = Path(second["pairs"]).parent
    manifest = read_manifest(pairs)
    assert manifest["kind"] == "preferences"
    assert any(first["checkpoint"] in i.get("path", str(i)) for i in manifest["inputs"])  # lineage
    rows = [json.loads(x) for x in (pairs / "train.jsonl").read_text().splitlines()]
    assert rows and all(
        letter_share([], [p["chosen"]])[0] > letter_share([], [p["rejected"]])[0] for p in rows
    )
    dpo_manifest = read_manifest(Path(second["checkpoint"]))
    assert any(first["checkpoint"] in i.get("path", str(i)) for i in dpo_manifest["inputs"])

    # the same command again: every round is done, nothing is retrained or resampled
    stamp = (Path(second["checkpoint"]) / "model.safetensors").stat().st_mtime_ns
    again = run_rounds(r, "dpo", 2).results
    assert again["rounds"] == results["rounds"]
    assert (Path(second["checkpoint"]) / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_round_labelled_by_people_waits_for_their_file_then_trains_on_it(tmp_path, policy):
    from llmforge.rlhf.rounds import CANDIDATES, run_rounds

    labels = tmp_path / "labels"
    sets = [s for s in ROUND_SETS if "judge_fn" not in s] + [f"rlhf.rounds.labels={str(labels)!r}"]
    r = load(recipe(tmp_path, policy), *sets)
    waiting = run_rounds(r, "dpo", 2).results
    assert waiting["waiting_for_labels"] == 2 and len(waiting["rounds_done"]) == 1
    candidates = tmp_path / "runs" / "t" / "rlhf" / "rounds" / "round-2" / CANDIDATES
    rows = [json.loads(x) for x in candidates.read_text().splitlines()]
    labelled = [
        {"prompt": c["prompt"], "chosen": c["reply_a"] + " apple", "rejected": c["reply_b"] + " stone"}
        for c in rows
    ]
    labels.mkdir()
    write_jsonl(labels / "round-2.jsonl", labelled)
    results = run_rounds(r, "dpo", 2).results
    assert results["rounds"][1]["pairs"] == str(labels / "round-2.jsonl")
    assert results["rounds"][1]["policy"] == results["rounds"][0]["checkpoint"]


@pytest.mark.slow
def test_ppo_rounds_retrain_the_reward_model_on_the_new_pairs(tmp_path, policy, reward_results):
    from llmforge.artifacts import read_manifest
    from llmforge.rlhf.rounds import run_rounds

    sys.modules.setdefault("rlhf_test_rewards", sys.modules[__name__])
    r = load(
        recipe(tmp_path, policy),
        *ROUND_SETS,
        *PPO_SETS,
        f"rlhf.ppo.reward_model={reward_results['checkpoint']!r}",
        "rlhf.reward.max_steps=4",
        "rlhf.reward.eval_every=4",
    )
    first, second = run_rounds(r, "ppo", 2).results["rounds"]
    assert second["policy"] == first["checkpoint"]
    reward = Path(second["checkpoint"]).parent.parent / "reward" / "checkpoint"
    assert read_manifest(reward)["stats"]["model_kind"] == "reward_model"
    ppo_results = json.loads((Path(second["checkpoint"]).parent / "report" / "results.json").read_text())
    assert ppo_results["reward"] == str(reward)  # PPO of round 2 scores with round 2's reward model


def test_rounds_without_a_labeller_are_refused(tmp_path, policy):
    from llmforge.rlhf.rounds import check

    with pytest.raises(UserError, match="set rlhf.rounds.judge_model"):
        check(load(recipe(tmp_path, policy)), "dpo", 2)

"""`rlhf dpo|ppo --rounds K`: steps 2–3 of RLHF iterated (Ouyang et al. 2022): sample → label → train.

Round 1 is the ordinary run on the configured preferences (DPO), or against the configured reward model (PPO).
Each later round N
  1. samples two replies per prompt from round N−1's policy: `rlhf.rounds.prompts_per_round` train prompts (a
     fresh seeded subset each round) and `val_prompts` held-out ones → round-N/candidates.jsonl;
  2. labels each pair: the reply a judge scores higher is `chosen` (a reward-model artifact or a reward
     function; ties are dropped) → round-N/pairs, a `preferences` artifact; or people label the candidates
     (the review page) into `rlhf.rounds.labels/round-N.jsonl` — until that file exists the round waits, and
     the command says which file to write;
  3. trains from round N−1's policy. DPO: on round N's pairs, the previous policy being its reference
     (iterative DPO, Xiong et al. 2024). PPO: the reward model is retrained on the configured pairs plus
     every round's pairs so far (round-N/reward), then PPO runs against it (round-N/ppo).

Layout under `rlhf.rounds.out` (default `<rlhf.out>/rounds`): round-N/{candidates.jsonl, pairs/, dpo/ |
reward/ + ppo/} and report/ (rounds.json: each round's policy, pairs and results; a `report` artifact whose
inputs are every round's checkpoint). Each step's manifest names what it was made from, so the lineage runs
from the SFT policy through every round. A killed run resumes where it stopped: finished steps are kept, the
candidates are never resampled (labels refer to them), and a trainer resumes from its own state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, atomic_dir, write_json, write_manifest
from llmforge.console import UserError, info
from llmforge.recipe import validate_recipe
from llmforge.rlhf.common import REPORT_DIR, Outcome, prompt_messages, rlhf_config, rlhf_out, seed_of
from llmforge.rlhf.preferences import seeded_rng

CANDIDATES = "candidates.jsonl"
PAIRS = "pairs"
RESULTS = "results.json"
GENERATE_BATCH = 16  # prompts per generate() call


def rounds_out(recipe: Any) -> Path:
    cfg = rlhf_config(recipe)
    return Path(cfg.rounds.out) if cfg.rounds.out else rlhf_out(recipe) / "rounds"


def check(recipe: Any, method: str, rounds: int) -> None:
    """Before any round: later rounds need a labeller; PPO rounds retrain a reward model, not a function."""
    cfg = rlhf_config(recipe)
    if rounds > 1 and not (cfg.rounds.judge_model or cfg.rounds.judge_fn or cfg.rounds.labels):
        raise UserError(
            f"--rounds {rounds}: rounds after the first label new pairs; set rlhf.rounds.judge_model (a reward "
            "model), rlhf.rounds.judge_fn (a reward function) or rlhf.rounds.labels (a folder of people's labels)"
        )
    if method == "ppo" and cfg.ppo.reward_fn is not None and rounds > 1:
        raise UserError(
            "--rounds with rlhf.ppo.reward_fn: PPO rounds retrain the reward model on new pairs, and a reward "
            "function is not trained; run more rlhf.ppo.steps instead, or give rlhf.ppo a reward model"
        )
    if cfg.rounds.judge_model is not None:
        from llmforge.rlhf.common import check_reward_model

        check_reward_model(cfg.rounds.judge_model, "rlhf.rounds.judge_model")
    if cfg.rounds.judge_fn is not None:
        from llmforge.rlhf.scoring import load_function

        load_function(cfg.rounds.judge_fn, "rlhf.rounds.judge_fn")


def run_rounds(recipe: Any, method: str, rounds: int, *, fresh: bool = False) -> Outcome:
    check(recipe, method, rounds)
    cfg = rlhf_config(recipe)
    out = rounds_out(recipe)
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    table = getattr(cfg, method)
    policy = Path(table.policy or cfg.policy)
    done: list[dict[str, Any]] = []
    label_sources: list[dict[str, Any]] = []
    for n in range(1, rounds + 1):
        folder = out / f"round-{n}"
        source = None
        if n > 1:
            source = round_pairs(recipe, policy, n, folder)
            if source is None:
                return Outcome({"rounds_done": done, "waiting_for_labels": n})
            label_sources.append(source)
        info(f"[bold]round {n}/{rounds}[/]: {method} from {policy}")
        results = train_round(recipe, method, n, folder, policy, source, label_sources)
        if "stopped_at_step" in results:
            return Outcome(results, interrupted=results.pop("_signal"))
        done.append(round_summary(method, n, policy, source, results))
        policy = Path(results["checkpoint"])
    return Outcome(write_report(recipe, method, out, done))


# ------------------------------------------------------------------------------------------ training


def train_round(
    recipe: Any,
    method: str,
    n: int,
    folder: Path,
    policy: Path,
    source: dict | None,
    label_sources: list[dict],
) -> dict[str, Any]:
    """The round's trainer runs (each skipped when its report exists: a resumed round keeps them)."""
    if method == "dpo":
        edits: dict[str, Any] = {"dpo": {"policy": str(policy), "out": str(folder / "dpo")}}
        if source is not None:
            edits["preferences"] = [source]
        return _run(derived(recipe, n, edits), "dpo", folder / "dpo")
    ppo: dict[str, Any] = {"policy": str(policy), "out": str(folder / "ppo")}
    if n > 1:
        configured = recipe.model_dump(mode="json", exclude_unset=True, exclude_none=True)["rlhf"]
        reward_edits = {
            "preferences": [*configured.get("preferences", []), *label_sources],
            "reward": {"out": str(folder / "reward")},
        }
        reward = _run(derived(recipe, n, reward_edits), "reward", folder / "reward")
        if "stopped_at_step" in reward:
            return reward
        ppo["reward_model"] = reward["checkpoint"]
    return _run(derived(recipe, n, {"ppo": ppo}), "ppo", folder / "ppo")


def derived(recipe: Any, n: int, edits: dict[str, Any]) -> Any:
    """The recipe with `[rlhf]` keys replaced for round `n` (paths are absolute in the dump)."""
    raw = recipe.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    rlhf = raw["rlhf"]
    for key, value in edits.items():
        if isinstance(value, dict):
            rlhf[key] = {**rlhf.get(key, {}), **value}
        else:
            rlhf[key] = value
    return validate_recipe(raw, source=f"{recipe._source or 'recipe'} (round {n})")


def _run(recipe: Any, trainer: str, out: Path) -> dict[str, Any]:
    finished = out / REPORT_DIR / RESULTS
    if finished.is_file():
        info(f"{out}: done in an earlier run, kept")
        return json.loads(finished.read_text())
    if trainer == "dpo":
        from llmforge.rlhf.dpo import run_dpo as run
    elif trainer == "reward":
        from llmforge.rlhf.reward import run_reward as run
    else:
        from llmforge.rlhf.ppo_run import run_ppo as run
    outcome = run(recipe)
    if outcome.interrupted:
        return {
            **outcome.results,
            "stopped_at_step": outcome.results.get("stopped_at_step"),
            "_signal": outcome.interrupted,
        }
    return outcome.results


# ------------------------------------------------------------------------------------------ pairs


def round_pairs(recipe: Any, policy: Path, n: int, folder: Path) -> dict[str, Any] | None:
    """The preference source of round `n` (a `[[rlhf.preferences]]` entry), or None while people label."""
    cfg = rlhf_config(recipe)
    candidates = folder / CANDIDATES
    if not candidates.is_file():
        write_candidates(recipe, policy, n, candidates)
    if cfg.rounds.labels is not None:
        labels = Path(cfg.rounds.labels) / f"round-{n}.jsonl"
        if not labels.is_file():
            count = sum(1 for _ in candidates.open())
            info(
                f"[yellow]round {n} waits for labels[/]: label the {count} candidate pairs of {candidates} "
                f"(rows of prompt, chosen, rejected — e.g. on `llmforge review`) into {labels}, then run the "
                "same command"
            )
            return None
        return {"path": str(labels), "name": f"round-{n}"}
    pairs = folder / PAIRS
    if not (pairs / MANIFEST).is_file():
        judge_candidates(recipe, policy, n, candidates, pairs)
    return {"path": str(pairs / "train.jsonl"), "val_path": str(pairs / "val.jsonl"), "name": f"round-{n}"}


def write_candidates(recipe: Any, policy: Path, n: int, path: Path) -> None:
    """Two sampled replies to each of this round's prompts, one jsonl row per prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.rlhf.ppo_run import stop_ids
    from llmforge.rlhf.prompts import load_prompt_set
    from llmforge.rlhf.render import render

    cfg = rlhf_config(recipe)
    seed = seed_of(recipe)
    prompts = load_prompt_set(cfg, seed)
    rng = seeded_rng(seed, "rounds", n)
    picked = {
        "train": rng.sample(prompts.train, min(cfg.rounds.prompts_per_round, len(prompts.train))),
        "val": rng.sample(prompts.val, min(cfg.rounds.val_prompts, len(prompts.val))),
    }
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).eval()
    stops = stop_ids(policy, tokenizer)
    torch.manual_seed(seed + n)
    rows = []
    for split, chosen_rows in picked.items():
        rendered = render(tokenizer, chosen_rows, cfg, split)
        for start in range(0, len(rendered.texts), GENERATE_BATCH):
            texts = rendered.texts[start : start + GENERATE_BATCH]
            replies = sample_two(model, tokenizer, texts, stops, cfg.rounds)
            for i, (a, b) in enumerate(replies):
                row = rendered.rows[start + i]
                rows.append({"split": split, "prompt": rendered.plain[start + i], "messages": row.messages,
                             "columns": row.columns, "reply_a": a, "reply_b": b, "origin": row.origin})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(path)
    info(f"round {n}: sampled {len(rows)} prompts × 2 replies from {policy} → {path}")


def sample_two(
    model: Any, tokenizer: Any, texts: list[str], stops: list[int], keys: Any
) -> list[tuple[str, str]]:
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **batch,
            do_sample=True,
            temperature=keys.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=keys.response_length,
            num_return_sequences=2,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :].tolist()
    replies = []
    for ids in new:
        cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
        replies.append(tokenizer.decode(ids[:cut], skip_special_tokens=True).strip())
    return [(replies[2 * i], replies[2 * i + 1]) for i in range(len(texts))]


def judge_candidates(recipe: Any, policy: Path, n: int, candidates: Path, pairs: Path) -> None:
    """The judge's preference between the two replies of each candidate row, as a `preferences` artifact."""
    cfg = rlhf_config(recipe)
    rows = [json.loads(line) for line in candidates.read_text().splitlines()]
    scores_a, scores_b = judge_scores(cfg, rows)
    kept: dict[str, list[dict]] = {"train": [], "val": []}
    ties = 0
    for row, a, b in zip(rows, scores_a, scores_b, strict=True):
        if a == b or row["reply_a"] == row["reply_b"]:
            ties += 1
            continue
        chosen, rejected = (row["reply_a"], row["reply_b"]) if a > b else (row["reply_b"], row["reply_a"])
        kept[row["split"]].append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected,
                                   "score_margin": abs(a - b), "origin": row["origin"]})  # fmt: skip
    if not kept["train"] or not kept["val"]:
        raise UserError(
            f"round {n}: the judge left no {'train' if not kept['train'] else 'val'} pair (every pair a tie or "
            f"identical replies, {ties} of {len(rows)}); raise rlhf.rounds.temperature or the prompt counts"
        )
    judge = cfg.rounds.judge_model or cfg.rounds.judge_fn
    report = {"round": n, "policy": str(policy), "judge": judge, "candidates": len(rows), "ties": ties,
              "train": len(kept["train"]), "val": len(kept["val"])}  # fmt: skip
    with atomic_dir(pairs) as tmp:
        for split, split_rows in kept.items():
            (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
        write_json(tmp / "report.json", report)
        inputs = [policy, candidates, *([cfg.rounds.judge_model] if cfg.rounds.judge_model else [])]
        write_manifest(tmp, "preferences", recipe=recipe.to_dict(), inputs=inputs, stats=report)
    info(
        f"round {n}: {len(kept['train'])} train / {len(kept['val'])} val pairs labelled by {judge} ({ties} ties)"
    )


def judge_scores(cfg: Any, rows: list[dict]) -> tuple[list[float], list[float]]:
    if cfg.rounds.judge_fn is not None:
        from llmforge.rlhf.scoring import call_function, load_function

        fn = load_function(cfg.rounds.judge_fn, "rlhf.rounds.judge_fn")
        prompts = [r["prompt"] for r in rows]
        keys = sorted({k for r in rows for k in r["columns"]})
        columns = {k: [r["columns"].get(k) for r in rows] for k in keys}
        return (
            call_function(fn, prompts, [r["reply_a"] for r in rows], columns),
            call_function(fn, prompts, [r["reply_b"] for r in rows], columns),
        )
    return model_scores(cfg, rows, "reply_a"), model_scores(cfg, rows, "reply_b")


def model_scores(cfg: Any, rows: list[dict], reply: str) -> list[float]:
    """The judge reward model's score of each prompt + reply, rendered as its trainer rendered pairs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llmforge.rlhf.common import plain_prompt

    path = cfg.rounds.judge_model
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    texts = []
    for r in rows:
        if cfg.chat_template:
            turns = [
                *prompt_messages(r["messages"], cfg.system_prompt),
                {"role": "assistant", "content": r[reply]},
            ]
            texts.append(tokenizer.apply_chat_template(turns, tokenize=False))
        else:
            texts.append(plain_prompt(r["messages"]) + r[reply] + (tokenizer.eos_token or ""))
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(texts), GENERATE_BATCH):
            batch = tokenizer(texts[start : start + GENERATE_BATCH], return_tensors="pt", padding=True,
                              truncation=True, max_length=cfg.max_len, add_special_tokens=False)  # fmt: skip
            scores += model(**batch).logits[:, 0].float().tolist()
    return scores


# ------------------------------------------------------------------------------------------ report

ROUND_KEYS = {  # the numbers a round's report carries, per method
    "dpo": ("steps", "after"),
    "ppo": ("steps", "first_score", "last_score", "last_kl", "val_reward_before", "val_reward_after"),
}


def round_summary(method: str, n: int, policy: Path, source: dict | None, results: dict) -> dict[str, Any]:
    return {
        "round": n,
        "policy": str(policy),
        "pairs": source["path"] if source else "configured",
        "checkpoint": results["checkpoint"],
        **{k: results.get(k) for k in ROUND_KEYS[method]},
    }


def write_report(recipe: Any, method: str, out: Path, done: list[dict]) -> dict[str, Any]:
    results = {"method": method, "rounds": done, "checkpoint": done[-1]["checkpoint"]}
    report = out / REPORT_DIR
    with atomic_dir(report) as tmp:
        write_json(tmp / "rounds.json", results)
        write_manifest(
            tmp, "report", recipe=recipe.to_dict(), inputs=[r["checkpoint"] for r in done],
            stats={"method": method, "rounds": len(done)},
        )  # fmt: skip
    results["report"] = str(report)
    return results


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    if "waiting_for_labels" in results:
        return {
            "rounds done": len(results["rounds_done"]),
            "waiting for labels": f"round {results['waiting_for_labels']}",
        }
    rows: dict[str, Any] = {"method": results["method"]}
    for r in results["rounds"]:
        if results["method"] == "dpo":
            after = r["after"] or {}
            text = f"accuracy {after.get('accuracy', 0):.3f}, margin {after.get('margin', 0):.3f}"
        else:
            before, after = r["val_reward_before"], r["val_reward_after"]
            text = "—" if before is None else f"val score {before:.4f} → {after:.4f}"
        rows[f"round {r['round']} ({r['pairs']})"] = text
    rows["checkpoint"] = results["checkpoint"]
    rows["report"] = results["report"]
    return rows

"""Instruction tuning (`finetune sft`): chat templates and role tokens, completion-only labels with the end of
turn trained, packing without cross-example attention, on_too_long, full and LoRA runs, merge, exact resume,
and the traps users of trl/axolotl/litgpt fall into."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_tiny_model import build_tiny_model  # noqa: E402

from llmforge.console import UserError  # noqa: E402
from llmforge.finetune.sft_tokenize import encode, tokenize_split  # noqa: E402
from llmforge.generation import chat_template as ct  # noqa: E402

WORDS = "apple river stone cloud music garden silver window forest candle".split()


@pytest.fixture(scope="session")
def base(tmp_path_factory, shared_data) -> Path:
    """A 2-layer d=64 llama whose tokenizer has pad = eos and no chat template (like our pretrain output)."""
    return build_tiny_model(
        tmp_path_factory.mktemp("sft") / "base", shared_data / "tinyshakespeare" / "input.txt", vocab_size=400
    )


@pytest.fixture
def tok_model(base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(base), AutoModelForCausalLM.from_pretrained(base)


def echo_rows(n: int, start: int = 0) -> list[dict]:
    """'Repeat: X Y' → 'X Y' over the 100 word pairs in a fixed order: learnable by a tiny model in a few dozen
    steps; rows [start, start + n) of that order, so train and val ranges share no prompt."""
    pairs = [(a, b) for a in WORDS for b in WORDS]
    pairs = pairs[::7] + [p for i, p in enumerate(pairs) if i % 7]  # a fixed interleaving of first words
    return [{"prompt": f"Repeat: {a} {b}", "completion": f"{a} {b}"} for a, b in pairs[start : start + n]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def recipe_file(tmp_path: Path, base: Path, **finetune) -> Path:
    train = write_jsonl(tmp_path / "train.jsonl", echo_rows(64))
    val = write_jsonl(tmp_path / "val.jsonl", echo_rows(8, start=80))
    table = {
        "task": "instruction",
        "base": str(base),
        "chat_template": "chatml",
        "max_len": 64,
        "batch_size": 8,
        "lr": 3e-3,
        "max_steps": 12,
        "eval_every": 6,
        "warmup_ratio": 0.0,
        **finetune,
    }
    import tomli_w

    text = tomli_w.dumps(
        {
            "run": {"name": "sft", "out_dir": str(tmp_path / "runs"), "seed": 7},
            "finetune": {**table, "datasets": [{"path": str(train), "val_path": str(val)}]},
        }
    )
    f = tmp_path / "recipe.toml"
    f.write_text(text)
    return f


def conversation(prompt: str, completion: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


# ------------------------------------------------------------------------------------ chat templates


def test_chatml_renders_the_expected_text_and_adds_role_tokens_with_mean_rows(tok_model):
    tok, model = tok_model
    old = model.get_input_embeddings().weight.detach().clone()
    added = ct.install(tok, model, ct.BUILTIN["chatml"])
    assert added == ["<|im_start|>", "<|im_end|>"]
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *conversation("Hi", "Hello")], tokenize=False
    )
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n"
    )
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == old.shape[0] + 2 == len(tok)
    mean = old.mean(dim=0)
    for token in added:
        assert tok.convert_tokens_to_ids(token) >= old.shape[0]
        assert (emb[tok.convert_tokens_to_ids(token)] - mean).abs().max() < 1e-6
    assert (emb[: old.shape[0]] - old).abs().max() == 0  # old rows untouched


def test_role_tokens_of_a_padded_vocabulary_take_spare_rows_set_to_the_trained_mean(tok_model):
    """gpt-neox/Qwen pad the embedding past the tokenizer; new tokens land on those untrained rows, which must
    be set to the mean of the trained rows (not left random, not averaged in)."""
    tok, model = tok_model
    known = len(tok)
    model.resize_token_embeddings(known + 8, mean_resizing=False)  # 8 spare rows
    with __import__("torch").no_grad():
        model.get_input_embeddings().weight[known:] = 100.0  # untrained padding rows, far off
    ct.install(tok, model, ct.BUILTIN["chatml"])
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == known + 8  # no growth: the ids fit
    mean = emb[:known].mean(dim=0)
    for token in ("<|im_start|>", "<|im_end|>"):
        assert (emb[tok.convert_tokens_to_ids(token)] - mean).abs().max() < 1e-6


def test_llama_template_puts_the_system_prompt_in_the_first_instruction(tok_model):
    tok, _ = tok_model
    ct.install(tok, None, ct.BUILTIN["llama"])
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, *conversation("Q1", "A1"), *conversation("Q2", "A2")],
        tokenize=False,
    )
    assert (
        text == "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ1 [/INST] A1<|endoftext|>[INST] Q2 [/INST] A2<|endoftext|>"
    )


def test_a_template_without_generation_markers_is_refused_for_completion_loss(tmp_path):
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    template = ct.resolve(str(plain), None)
    with pytest.raises(UserError, match=r"plain.jinja chat template has no \{% generation %\}"):
        ct.require_generation_markers(template)
    with pytest.raises(
        UserError, match="has no chat template; set finetune.chat_template to 'chatml' or 'llama'"
    ):
        ct.resolve("tokenizer", None)


# ---------------------------------------------------------------------------------------------- labels


def test_prompt_tokens_are_ignored_and_the_end_of_turn_is_trained(tok_model):
    tok, model = tok_model
    ct.install(tok, model, ct.BUILTIN["chatml"])
    ids, labels = encode(tok, conversation("Repeat: apple", "apple"), loss_on="completion")
    prompt_ids = tok.apply_chat_template(
        [conversation("Repeat: apple", "")[0]], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert ids[: len(prompt_ids)] == list(prompt_ids)
    assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
    trained = [t for t in labels if t != -100]
    assert tok.decode(trained) == "apple<|im_end|>"
    _, everything = encode(tok, conversation("Repeat: apple", "apple"), loss_on="all")
    assert everything == ids


def test_a_reply_that_merges_with_the_template_newline_is_tokenized_as_generation_sees_it():
    """Byte-level BPE trained on code merges "\n" with the indentation that follows, so a reply starting with
    spaces fuses with the newline after the assistant role: the prompt alone would tokenize differently from
    the prompt inside the conversation (the tuned model then never sees, in training, the prompt it is given
    at generation, and answers with EOS at once). The encoding keeps the prompt's own tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    code = ["def f(x):\n    return x + 1\n", "if x:\n    y = 2\n"] * 200
    bpe.train_from_iterator(code, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    ct.install(tok, None, ct.BUILTIN["chatml"])
    messages = conversation("Body of f:", "    return x + 1\n")
    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, return_dict=True)["input_ids"]
    whole = tok.apply_chat_template(messages, return_dict=True)["input_ids"]
    assert whole[: len(prompt)] != prompt  # the trap is real with this tokenizer
    ids, labels = encode(tok, messages, loss_on="completion")
    assert ids[: len(prompt)] == prompt and labels[: len(prompt)] == [-100] * len(prompt)
    assert tok.decode([t for t in labels if t != -100]) == "    return x + 1\n<|im_end|>"


def test_pad_equal_to_eos_still_trains_the_eos_that_ends_each_answer(tok_model):
    """The tiny base has pad = eos; the llama template ends replies with that EOS, and it must be a label."""
    tok, model = tok_model
    assert tok.pad_token_id == tok.eos_token_id
    ct.install(tok, model, ct.BUILTIN["llama"])
    ids, labels = encode(tok, conversation("Q", "yes"), loss_on="completion")
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id
    # and trl's collator, which pads with that same id, keeps it as a label (padding is masked by position)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    short = encode(tok, conversation("Q", "no"), loss_on="completion")
    rows = [{"input_ids": i, "labels": la} for i, la in ((ids, labels), short)]
    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none", max_length=64,
                     per_device_train_batch_size=2, dataset_num_proc=None)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    for row_labels, row_mask in zip(batch["labels"], batch["attention_mask"], strict=True):
        real = row_labels[row_mask.bool()].tolist()
        assert real[-1] == tok.eos_token_id  # the answer's EOS is trained
        assert (row_labels[~row_mask.bool()] == -100).all()  # the padding (same id) is not


class Row:
    def __init__(self, prompt: str, completion: str, row: int):
        self.messages, self.source, self.row = tuple(conversation(prompt, completion)), "t", row


def test_on_too_long_truncates_drops_or_stops_and_counts(tok_model):
    tok, model = tok_model
    ct.install(tok, model, ct.BUILTIN["chatml"])
    rows = [Row("short", "ok", 1), Row("long " * 40, "ok", 2), Row("x", "word " * 40, 3)]
    common = dict(template_name="chatml", loss_on="completion", max_len=24, split="train")
    kept = tokenize_split(rows, tok, on_too_long="truncate", **common)
    # row 2's prompt fills max_len: nothing left to train, so it goes; row 3 keeps the start of its answer
    assert (kept.truncated, kept.dropped_untrained, len(kept.rows)) == (1, 1, 2)
    assert all(len(r["input_ids"]) <= 24 for r in kept.rows)
    dropped = tokenize_split(rows, tok, on_too_long="drop", **common)
    assert (dropped.dropped_too_long, len(dropped.rows)) == (2, 1)
    with pytest.raises(
        UserError, match=r"t row 2 \(train\): \d+ tokens after the chat template, above finetune.max_len = 24"
    ):
        tokenize_split(rows, tok, on_too_long="error", **common)


def test_an_example_whose_template_marks_nothing_is_an_error_naming_the_template(tok_model):
    tok, _ = tok_model
    # markers around the user turn only: assistant replies are never marked
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}{% generation %}{{ '' }}{% endgeneration %}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(UserError, match="the odd chat template marks no assistant token to train"):
        tokenize_split([Row("a", "b", 1)], tok, template_name="odd", loss_on="completion", max_len=64,
                       on_too_long="error", split="train")  # fmt: skip


# --------------------------------------------------------------------------------------------- packing


def test_a_packed_batch_has_the_loss_of_the_same_examples_unpacked(tok_model, tmp_path):
    """trl's padding-free packing (best-fit decreasing) gives position ids that restart per example; with the
    cache off (trl's compute_loss turns it off) transformers makes them a block-diagonal mask, so the loss of
    the packed batch equals the examples scored one by one. Positions that run on across the boundary (cross
    attention allowed) give another loss, so the check can fail; so does the cache left on (the KV cache
    disables transformers' packed-sequence detection)."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok, model = tok_model
    model.eval()
    ct.install(tok, model, ct.BUILTIN["chatml"])
    rows = []
    for prompt, completion in [
        ("Repeat: apple", "apple"),
        ("Name a colour", "silver"),
        ("Hi", "hello there"),
    ]:
        ids, labels = encode(tok, conversation(prompt, completion), loss_on="completion")
        rows.append({"input_ids": ids, "labels": labels})
    args = SFTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", packing=True,
        packing_strategy="bfd", max_length=128, per_device_train_batch_size=4, dataset_num_proc=None,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # all three in one row

    def summed_nll(inputs):
        logits = model(input_ids=inputs["input_ids"], **inputs.get("extra", {})).logits[:, :-1]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), inputs["labels"][:, 1:].reshape(-1), reduction="sum"
        )

    with torch.no_grad():
        separate = [summed_nll({k: torch.tensor([r[k]]) for k in ("input_ids", "labels")}) for r in rows]
        targets = sum(sum(t != -100 for t in r["labels"][1:]) for r in rows)
        packed_mean = trainer.compute_loss(model, dict(batch))
        positions = batch["position_ids"]
        flowing = torch.arange(positions.shape[1])[None]
        leaked = summed_nll({**batch, "extra": {"position_ids": flowing, "use_cache": False}})
        cached = summed_nll({**batch, "extra": {"position_ids": positions, "use_cache": True}})
    expected = float(sum(separate)) / targets
    assert float(packed_mean) == pytest.approx(expected, rel=1e-5)
    assert abs(float(leaked) / targets - expected) > 1e-3 * expected
    assert abs(float(cached) / targets - expected) > 1e-3 * expected


# ----------------------------------------------------------------------------------------------- runs


def run(recipe: Path, *sets: str, fresh: bool = False):
    from llmforge.finetune.sft import run_sft
    from llmforge.recipe import load_recipe

    return run_sft(load_recipe(recipe, list(sets)), fresh=fresh)


@pytest.mark.slow
def test_full_finetune_learns_stops_on_its_own_and_records_its_inputs(tmp_path, base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.artifacts import read_manifest

    recipe = recipe_file(tmp_path, base, max_steps=40, eval_every=10)
    results = run(recipe).results
    assert results["val_loss"] < results["first_val_loss"] - 0.5
    assert results["train"]["trained_tokens"] > 0 and results["added_tokens"] == [
        "<|im_start|>",
        "<|im_end|>",
    ]
    ckpt = Path(results["checkpoint"])
    manifest = read_manifest(ckpt)
    assert manifest["stats"]["chat_template"]["name"] == "chatml"
    inputs = {Path(i["path"]).name: i for i in manifest["inputs"]}
    assert {"base", "train.jsonl", "val.jsonl"} <= set(inputs) and inputs["train.jsonl"]["content_hash"]
    report = Path(results["report"])
    assert (report / "loss.png").is_file() and (report / "metrics.jsonl").read_text().count("eval_loss") >= 4
    # the tuned model ends its answer with <|im_end|> by itself
    tok, model = AutoTokenizer.from_pretrained(ckpt), AutoModelForCausalLM.from_pretrained(ckpt)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Repeat: river stone"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )  # fmt: skip
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert tok.convert_tokens_to_ids("<|im_end|>") in new, tok.decode(new)
    assert len(new) < 20


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_merge_gives_the_same_logits(tmp_path, base):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from llmforge.finetune.merge import load_adapter_model, merge_adapter

    before = load_file(base / "model.safetensors")
    recipe = recipe_file(tmp_path, base, method="lora", lr=1e-2, lora={"r": 4, "alpha": 8.0})
    results = run(recipe).results
    # LoRA r=4 on every linear layer (r·(in + out) each) + the embedding, which trains because role tokens
    # were added (tied to the head); nothing else
    r, d, ffn, layers, vocab = 4, 64, 128, 2, 400 + 2
    lora_params = layers * (4 * r * (d + d) + 3 * r * (d + ffn))  # q k v o, then gate up down
    assert results["trainable_params"] == lora_params + vocab * d
    assert results["val_loss"] < results["first_val_loss"]
    after = load_file(base / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # the base is never written
    adapter = Path(results["checkpoint"])
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    peft_model, tok = load_adapter_model(adapter)
    trained = {n for n, p in peft_model.named_parameters() if "lora_" in n or "modules_to_save" in n}
    assert any("modules_to_save" in n for n in trained) and any("lora_B" in n for n in trained)
    merged_dir = tmp_path / "merged"
    stats = merge_adapter(adapter, merged_dir)
    assert stats["merge_max_abs_logit_diff"] < 1e-4
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    probe = torch.tensor([tok("Repeat: apple river")["input_ids"]])
    with torch.no_grad():
        diff = (peft_model(probe).logits - merged(probe).logits).abs().max()
    assert diff < 1e-4  # fp32: the two orders of summation agree to ~1e-6 relative
    # a merge that changed the model is refused, not written
    from llmforge.finetune import merge as merge_module

    loader = merge_module.load_adapter_model

    def breaking_loader(path):
        model, tokenizer = loader(path)
        merge = model.merge_and_unload

        def broken(*a, **kw):
            merged = merge(*a, **kw)
            with torch.no_grad():
                merged.get_input_embeddings().weight.add_(0.5)
            return merged

        model.merge_and_unload = broken
        return model, tokenizer

    merge_module.load_adapter_model = breaking_loader
    try:
        with pytest.raises(RuntimeError, match="merged logits differ from base \\+ adapter"):
            merge_adapter(adapter, tmp_path / "bad-merge")
    finally:
        merge_module.load_adapter_model = loader
    assert not (tmp_path / "bad-merge").exists()


@pytest.mark.slow
def test_resume_continues_the_step_count_and_ends_where_an_uninterrupted_run_ends(tmp_path, base):
    """Run 12 steps checkpointing every 6; then rewind the folder to step 6 (as a kill after it would leave it)
    and rerun: it resumes at 6 and its final val loss equals the uninterrupted run's."""
    recipe = recipe_file(tmp_path, base, save_every=6, keep_last=3)
    out = tmp_path / "runs" / "sft" / "finetune"
    straight = run(recipe).results
    shutil.rmtree(out)
    from llmforge.finetune import sft as sft_module

    trainer = out / "trainer"
    stopped = _run_until(sft_module, recipe, stop_at=6)
    assert stopped.interrupted and stopped.results["stopped_at_step"] == 6
    assert [p.name for p in sorted(trainer.glob("checkpoint-*"))] == ["checkpoint-6"]
    counted = _count_steps(sft_module)
    try:
        resumed = run(recipe).results
    finally:
        sft_module.build_trainer = counted.original
    assert counted.first_step == 6 and counted.steps == 6  # it went on from step 6, it did not start over
    assert resumed["steps"] == 12
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-6)
    lines = [json.loads(x) for x in (Path(resumed["report"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 12  # one line per step, none twice


def _count_steps(sft_module):
    """Patch the trainer factory so the next run records the step it starts at and the steps it trains."""
    from transformers import TrainerCallback

    class Count(TrainerCallback):
        first_step, steps, original = None, 0, sft_module.build_trainer

        def on_train_begin(self, args, state, control, **kwargs):
            Count.first_step = state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            Count.steps += 1

    def counting(*a, **kw):
        trainer = Count.original(*a, **kw)
        trainer.add_callback(Count())
        return trainer

    sft_module.build_trainer = counting
    return Count


def _run_until(sft_module, recipe: Path, stop_at: int):
    """Run with a stop signal raised at the end of step `stop_at` (what SIGTERM does)."""
    import signal

    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == stop_at:
                signal.raise_signal(signal.SIGTERM)

    original = sft_module.build_trainer

    def with_kill(*a, **kw):
        trainer = original(*a, **kw)
        trainer.add_callback(Kill())
        return trainer

    sft_module.build_trainer = with_kill
    try:
        return run(recipe)
    finally:
        sft_module.build_trainer = original


# ------------------------------------------------------------------------------------------ refusals


def test_qlora_is_refused_without_cuda_and_bitsandbytes(tmp_path, base):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the refusal applies only without one")
    with pytest.raises(
        UserError, match="finetune.method = 'qlora' needs a CUDA GPU and bitsandbytes: no CUDA GPU"
    ):
        run(recipe_file(tmp_path, base, method="qlora"))


def test_lora_target_modules_that_do_not_exist_are_listed(tmp_path, base):
    recipe = recipe_file(tmp_path, base, method="lora", lora={"target_modules": ["q_proj", "query"]})
    with pytest.raises(
        UserError, match=r"target_modules: query not in the model; its linear layers are .*q_proj"
    ):
        run(recipe)


def test_a_base_without_chat_template_needs_one_from_the_recipe(tmp_path, base):
    with pytest.raises(UserError, match="the base model's tokenizer has no chat template"):
        run(recipe_file(tmp_path, base, chat_template="tokenizer"))


def test_a_finished_run_is_not_silently_retrained(tmp_path, base):
    recipe = recipe_file(tmp_path, base, max_steps=2, eval_every=2)
    run(recipe)
    with pytest.raises(UserError, match="already finished; pass --fresh"):
        run(recipe)
    assert run(recipe, fresh=True).results["steps"] == 2


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_evaluation(tmp_path, base):
    """An LR far too high makes the val loss rise after the first evaluation: with patience 1 the run stops
    two evaluations in, and its result is the best evaluation's model, not the last one."""
    recipe = recipe_file(tmp_path, base, lr=0.5, max_steps=40, eval_every=2, early_stopping=1)
    results = run(recipe).results
    assert results["early_stopped"] and results["steps"] < 40
    assert results["val_loss"] == results["best_val_loss"]
    evals = [json.loads(x) for x in (Path(results["report"]) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])
    assert results["result_step"] == best["step"] < evals[-1]["step"]


def test_a_dataset_that_no_example_of_fits_is_an_error_naming_it(tmp_path, base):
    long = write_jsonl(
        tmp_path / "long.jsonl", [{"prompt": f"{i} " + "word " * 80, "completion": "x"} for i in range(4)]
    )
    long_val = write_jsonl(tmp_path / "long_val.jsonl", [{"prompt": "v " + "word " * 80, "completion": "x"}])
    recipe = recipe_file(tmp_path, base, on_too_long="drop")
    text = recipe.read_text() + f'\n[[finetune.datasets]]\npath = "{long}"\nval_path = "{long_val}"\n'
    recipe.write_text(text)
    with pytest.raises(
        UserError,
        match=r"finetune.datasets \(long\): none of its 4 train examples fits finetune.max_len = 64",
    ):
        run(recipe)


@pytest.mark.slow
def test_resuming_with_another_table_names_what_changed(tmp_path, base):
    from llmforge.finetune import sft as sft_module

    recipe = recipe_file(tmp_path, base, save_every=2, eval_every=2)
    assert _run_until(sft_module, recipe, stop_at=2).interrupted
    with pytest.raises(UserError, match="its checkpoints were trained with other lr; pass --fresh"):
        run(recipe, "finetune.lr=1e-4")


@pytest.mark.slow
def test_sft_json_prints_only_json_on_stdout(tmp_path, base, cli):
    recipe = recipe_file(tmp_path, base, max_steps=2, eval_every=2)
    r = cli("finetune", "sft", str(recipe), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)
    assert results["steps"] == 2 and results["trainable_params"] > 0

"""The shared generation layer (settings, loading, sampling, streaming) and `llmforge generate` / `chat`, on an
untrained 2-layer llama (tests/eval_tiny_model.py): its greedy output is a deterministic token soup, which is
all these tests need."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA
from eval_tiny_model import build_tiny_model

from llmforge.cli import main
from llmforge.console import UserError
from llmforge.generation.settings import SamplingLimits, SamplingSettings, unescape_stop

GREEDY = SamplingSettings(max_new_tokens=24, temperature=0)
PROMPT = "To be, or not to be"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return build_tiny_model(
        tmp_path_factory.mktemp("gen") / "tiny", SHARED_DATA / "tinyshakespeare" / "input.txt"
    )


@pytest.fixture(scope="session")
def loaded(tiny):
    from llmforge.generation.loading import load_for_generation

    return load_for_generation(tiny, "cpu")


@pytest.fixture(scope="session")
def chat_model(tiny, tmp_path_factory) -> Path:
    """The tiny model with the ChatML template installed (role tokens added as new embedding rows)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.generation.chat_template import BUILTIN, install

    out = tmp_path_factory.mktemp("gen") / "chat"
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    install(tok, model, BUILTIN["chatml"])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def chat_loaded(chat_model):
    from llmforge.generation.loading import load_for_generation

    return load_for_generation(chat_model, "cpu")


def _gen(loaded, settings=GREEDY, prompts=(PROMPT,), **kw):
    from llmforge.generation.sampling import generate

    return generate(loaded, list(prompts), settings, **kw)


def _direct_greedy(model, tokenizer, prompt: str, n: int) -> list[int]:
    """transformers' own greedy continuation, without our layer."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, pad_token_id=0)  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


# ------------------------------------------------------------------------------------------ settings


def test_settings_refuse_out_of_range_values_naming_the_option():
    SamplingSettings().checked()
    for kwargs, flag in [
        ({"temperature": -1}, "--temperature must be ≥ 0"),
        ({"temperature": float("nan")}, "--temperature"),
        ({"top_p": 0}, "--top-p must be in (0, 1]"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": -1}, "--top-k must be ≥ 0"),
        ({"max_new_tokens": 0}, "--max-new-tokens must be ≥ 1"),
        ({"repetition_penalty": 0}, "--repetition-penalty must be > 0"),
        ({"stop": ("",)}, "--stop"),
    ]:
        with pytest.raises(UserError, match=re.escape(flag)):
            SamplingSettings(**kwargs).checked()


def test_clamped_pulls_a_request_into_the_limits():
    s = SamplingSettings(max_new_tokens=10**6, temperature=50, top_k=10**5, stop=tuple("abcdefghij")).clamped(
        SamplingLimits(max_new_tokens=256, max_stop=3)
    )
    assert (s.max_new_tokens, s.temperature, s.top_k, s.stop) == (256, 2.0, 1000, ("a", "b", "c"))
    assert SamplingSettings(max_new_tokens=5).clamped() == SamplingSettings(max_new_tokens=5)


def test_generation_kwargs_greedy_and_sampled():
    g = GREEDY.to_generation_kwargs([7, 9])
    assert g["do_sample"] is False and g["eos_token_id"] == [7, 9] and g["pad_token_id"] == 7
    assert "temperature" not in g and g["max_new_tokens"] == 24
    s = SamplingSettings(temperature=0.8, top_p=0.9).to_generation_kwargs([7])
    assert (s["do_sample"], s["temperature"], s["top_p"], s["top_k"]) == (
        True,
        0.8,
        0.9,
        0,
    )  # top_k 0, not HF's 50


def test_stop_escapes():
    assert unescape_stop(r"\n\nQ:") == "\n\nQ:"
    assert unescape_stop(r"a\\n\t") == "a\\n\t"


# ------------------------------------------------------------------------------------------ sampling


def test_greedy_is_deterministic_and_equals_plain_generate(loaded):
    (a,) = _gen(loaded)
    (b,) = _gen(loaded)
    assert a == b.__class__(**{**b.__dict__, "seconds": a.seconds})
    expected = _direct_greedy(loaded.model, loaded.tokenizer, PROMPT, GREEDY.max_new_tokens)
    assert a.text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
    assert (a.new_tokens, a.finish_reason) == (GREEDY.max_new_tokens, "length")
    assert a.prompt_tokens == len(loaded.tokenizer(PROMPT)["input_ids"])


def test_max_new_tokens_ends_with_length(loaded):
    (g,) = _gen(loaded, SamplingSettings(max_new_tokens=5, temperature=0))
    assert (g.new_tokens, g.finish_reason) == (5, "length")


def test_seeded_sampling_is_reproducible_and_seeds_differ(loaded):
    s = SamplingSettings(max_new_tokens=16, temperature=1.0, seed=1)
    one, again = _gen(loaded, s, prompts=(PROMPT, PROMPT))
    (other,) = _gen(loaded, SamplingSettings(max_new_tokens=16, temperature=1.0, seed=2))
    assert one.text == again.text
    assert one.text != other.text


def test_stop_string_cuts_the_text_and_ends_generation(loaded):
    sampled = SamplingSettings(max_new_tokens=40, temperature=1.0, seed=5)  # token soup: stop strings to pick
    (full,) = _gen(loaded, sampled)
    start = next(k for k in range(len(full.text) // 2, len(full.text) - 3)
                 if full.text.find(full.text[k : k + 3]) == k and "\ufffd" not in full.text[k : k + 3])  # fmt: skip
    stop = full.text[start : start + 3]
    deltas: list[str] = []
    (g,) = _gen(loaded, SamplingSettings(max_new_tokens=40, temperature=1.0, seed=5, stop=("@@never@@", stop)),
                on_text=lambda i, d: deltas.append(d))  # fmt: skip
    assert g.text == full.text[:start] and len(g.text) > 10
    assert g.finish_reason == "stop" and g.new_tokens < 40
    assert "".join(deltas) == g.text  # the stop string (and what follows) is never streamed
    assert len(deltas) > 1


def test_an_end_of_sequence_id_stops_and_is_not_in_the_text(tiny, tmp_path, loaded):
    from llmforge.generation.loading import load_for_generation

    ids = _direct_greedy(loaded.model, loaded.tokenizer, PROMPT, 24)
    j = next((k for k in range(1, len(ids)) if ids[k] not in ids[:k]), 0)
    copy = Path(shutil.copytree(tiny, tmp_path / "eos"))
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": [0, ids[j]]}))
    eos_loaded = load_for_generation(copy, "cpu")
    assert ids[j] in eos_loaded.stop_ids and 0 in eos_loaded.stop_ids
    (g,) = _gen(eos_loaded)
    assert (g.finish_reason, g.new_tokens) == ("eos", j + 1)
    assert g.text == loaded.tokenizer.decode(ids[:j], skip_special_tokens=True)


def test_streamed_deltas_concatenate_to_the_text(loaded):
    deltas: dict[int, list[str]] = {0: [], 1: []}
    gens = _gen(loaded, SamplingSettings(max_new_tokens=30, temperature=0.9, seed=3), prompts=("ROMEO:", PROMPT),
                on_text=lambda i, d: deltas[i].append(d))  # fmt: skip
    for i, g in enumerate(gens):
        assert len(deltas[i]) > 1 and "".join(deltas[i]) == g.text


def test_streamer_waits_for_whole_characters(loaded):
    """A character split over byte-level tokens is handed out once, whole (never U+FFFD)."""
    import torch

    from llmforge.generation.sampling import TextDeltaStreamer

    text = "café ✓ 日本 ok"
    ids = loaded.tokenizer(text)["input_ids"]
    assert len(ids) > len(text.split()) + 4  # the non-ASCII characters take several tokens each
    deltas: list[str] = []
    streamer = TextDeltaStreamer(loaded.tokenizer, (), loaded.stop_ids, deltas.append)
    streamer.put(torch.tensor([[1, 2]]))  # the prompt
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_prompt_longer_than_the_context_is_refused(loaded):
    long = "word " * 600
    with pytest.raises(
        UserError, match=r"prompt 2: \d+ tokens \+ --max-new-tokens 24 exceed the model's context of 512"
    ):
        _gen(loaded, prompts=(PROMPT, long))


# ------------------------------------------------------------------------------------------ chat


def test_chat_prompt_uses_the_template(chat_loaded):
    from llmforge.generation.sampling import chat_reply

    assert chat_loaded.has_chat_template
    im_end = chat_loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in chat_loaded.stop_ids
    (g,) = _gen(chat_loaded, chat=True, system="Be brief.")
    expected = chat_loaded.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
        add_generation_prompt=True, tokenize=False,
    )  # fmt: skip
    assert g.prompt_tokens == len(chat_loaded.tokenizer(expected, add_special_tokens=False)["input_ids"])
    history = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": g.text},
               {"role": "user", "content": "and then?"}]  # fmt: skip
    second = chat_reply(chat_loaded, history, GREEDY)
    assert second.prompt_tokens > g.prompt_tokens and second.prompt == "and then?"


def test_chat_without_a_template_is_refused(loaded):
    with pytest.raises(
        UserError, match="has no chat template; fine-tune with finetune.chat_template or drop --chat"
    ):
        _gen(loaded, chat=True)


def test_a_long_conversation_drops_its_oldest_exchanges(chat_loaded):
    from llmforge.generation.sampling import chat_reply

    old = "word " * 200
    history = [{"role": "system", "content": "S"}]
    for _ in range(3):
        history += [{"role": "user", "content": old}, {"role": "assistant", "content": old}]
    history.append({"role": "user", "content": "now"})
    g = chat_reply(chat_loaded, history, SamplingSettings(max_new_tokens=8, temperature=0))
    assert g.prompt_tokens + 8 <= 512 and g.new_tokens == 8


# ------------------------------------------------------------------------------------------ loading


def test_lora_adapter_generates_like_its_merged_model(tiny, tmp_path, loaded):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmforge.generation.loading import load_for_generation

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny))
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(tiny)

    adapted = load_for_generation(tmp_path / "adapter", "cpu")
    assert adapted.base == tiny and adapted.stop_ids == loaded.stop_ids
    (g,) = _gen(adapted)
    merged = peft_model.merge_and_unload().eval()
    expected = _direct_greedy(merged, loaded.tokenizer, PROMPT, GREEDY.max_new_tokens)
    assert g.text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
    ids = torch.tensor([loaded.tokenizer(PROMPT)["input_ids"]])
    with torch.inference_mode():  # the adapter is applied: not the base model's logits
        assert not torch.allclose(adapted.model(ids).logits, loaded.model(ids).logits, atol=1e-4)


def test_loading_refuses_what_cannot_generate(tmp_path, tiny):
    from llmforge.generation.loading import load_for_generation

    def model_dir(name: str, files: dict[str, str]) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f, content in files.items():
            (d / f).write_text(content)
        return d

    cases = [
        (tmp_path / "missing", "missing: no such model directory"),
        (model_dir("bert", {"config.json": '{"model_type": "bert"}', "model.safetensors": ""}),
         "generation needs a causal LM (decoder-only), but config.json describes an encoder-only model (bert)"),
        (model_dir("t5", {"config.json": '{"model_type": "t5", "is_encoder_decoder": true}'}), "an encoder-decoder (t5)"),
        (model_dir("reward", {"config.json": '{"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]}'}),
         "describes a LlamaForSequenceClassification"),
        (model_dir("noweights", {"config.json": '{"model_type": "llama"}'}), "noweights: no model weights"),
        (model_dir("notok", {"config.json": '{"model_type": "llama"}', "model.safetensors": ""}), "notok: no tokenizer files"),
        (model_dir("adapter", {"adapter_config.json": '{"base_model_name_or_path": "/nowhere/base"}', "adapter_model.safetensors": ""}),
         "base_model_name_or_path '/nowhere/base' is not a local model dir"),
    ]  # fmt: skip
    for path, phrase in cases:
        with pytest.raises(UserError, match=re.escape(phrase)):
            load_for_generation(path, "cpu")


# ------------------------------------------------------------------------------------------ CLI


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        rc = 0
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["generate", "{missing}", "-p", "x"], "{missing}: no such model directory"),
        (["generate", "{tiny}", "-p", "x", "--temperature", "-1"], "--temperature must be ≥ 0"),
        (["generate", "{tiny}"], "no prompt: give --prompt TEXT (repeatable) or --file FILE"),
        (
            ["generate", "{tiny}", "--file", "{tmp}/empty.txt"],
            "--file {tmp}/empty.txt: no prompts (the file is empty)",
        ),
        (
            ["generate", "{tiny}", "--file", "{tmp}/bad.jsonl"],
            "{tmp}/bad.jsonl:2: expected a JSON object with a string field 'prompt'",
        ),
        (["generate", "{tmp}/bert", "-p", "x"], "generation needs a causal LM"),
        (["generate", "{tiny}", "-p", "x", "--chat"], "has no chat template"),
        (["chat", "{tiny}"], "has no chat template"),
        (["generate", "{tiny}", "-p", "x", "--system", "Be brief."], "--system: needs --chat"),
    ],
    ids=[
        "missing",
        "temperature",
        "no-prompt",
        "empty-file",
        "bad-jsonl",
        "encoder",
        "chat-flag",
        "chat-command",
        "system-without-chat",
    ],
)
def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path, tiny, argv, phrase):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"text": "b"}\n')
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    values = {"tmp": str(tmp_path), "missing": str(tmp_path / "missing"), "tiny": str(tiny)}
    rc, out, err = _main(capsys, *[a.format(**values) for a in argv])
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()  # one line: nothing logged before the refusal
    assert line.startswith("error: "), err
    assert phrase.format(**values) in line, err


def test_read_prompts_txt_and_jsonl(tmp_path):
    from llmforge.generation.prompts import read_prompts

    (tmp_path / "p.txt").write_text("first\n\nsecond line\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a\\nb"}\n\n{"prompt": "c", "id": 3}\n')
    assert read_prompts(tmp_path / "p.txt") == ["first", "second line"]
    assert read_prompts(tmp_path / "p.jsonl") == ["a\nb", "c"]


def test_generate_json_from_a_file_holds_only_json(capsys, tmp_path, tiny, loaded):
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "ROMEO:"}) + "\n")
    rc, out, err = _main(capsys, "generate", str(tiny), "-p", PROMPT, "--file", str(tmp_path / "p.jsonl"),
                         "-n", "24", "-t", "0", "--device", "cpu", "--json")  # fmt: skip
    assert rc == 0, err
    rows = json.loads(out)  # the whole of stdout is one JSON document
    expected = _gen(loaded, prompts=(PROMPT, "ROMEO:"))
    assert rows == [g.to_dict() for g in expected]
    assert set(rows[0]) == {"prompt", "text", "new_tokens", "prompt_tokens", "finish_reason"}


def test_generate_streams_text_to_stdout_and_stats_to_stderr(capsys, tiny, loaded):
    rc, out, err = _main(capsys, "generate", str(tiny), "-p", PROMPT, "-p", "ROMEO:", "-n", "24", "-t", "0",
                         "--stop", "@@", "--device", "cpu")  # fmt: skip
    assert rc == 0, err
    a, b = _gen(loaded, prompts=(PROMPT, "ROMEO:"))
    assert out == f"{a.text}\n\n{b.text}\n"
    assert err.count("new tokens") == 2 and "length" in err


@pytest.mark.slow
def test_chat_reads_stdin_resets_and_exits(chat_model):
    """Through a real pipe: three turns, /reset between the second and third, /exit before a fourth. Seeded
    sampling (reseeded per reply) is as deterministic as greedy and, on an untrained model, says more than
    greedy's run of newlines."""
    r = subprocess.run(
        [sys.executable, "-m", "llmforge", "chat", str(chat_model), "-t", "1", "--seed", "7", "-n", "12",
         "--stop", r"\n", "--system", "Be brief."],
        input=b"hello there\nhello there\n/reset\nhello there\n/exit\nnever read\n",
        capture_output=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    stdout, stderr = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")
    assert r.returncode == 0, stderr[-3000:]
    replies = stdout.split("\n")
    assert len(replies) == 4 and replies[3] == "", stdout  # three replies, one per line
    assert replies[0].strip() and replies[2] == replies[0]  # after /reset: the same message, the same reply
    prompt_tokens = [int(n) for n in re.findall(r"(\d+) prompt \+", stderr)]
    assert len(prompt_tokens) == 3
    assert prompt_tokens[1] > prompt_tokens[0] == prompt_tokens[2]  # history in turn 2, gone after /reset
    assert "conversation cleared" in stderr and "never read" not in stderr


def test_chat_refuses_max_new_tokens_that_fill_the_context(capsys, chat_model):
    rc, out, err = _main(capsys, "chat", str(chat_model), "--max-new-tokens", "512", "--device", "cpu")
    assert (rc, out) == (2, "")
    assert err.strip() == (
        "error: --max-new-tokens 512: leaves no room for the conversation in the model's context of 512 tokens"
    )


def test_an_empty_prompt_starts_from_bos(loaded):
    (g,) = _gen(loaded, prompts=("",))
    assert g.prompt_tokens == 1 and g.new_tokens >= 1  # (this untrained model answers BOS with EOS at once)


# ------------------------------------------------------------------------------------------ eval samples


def test_eval_samples_stop_at_the_chat_templates_end_of_turn(chat_model):
    """`eval samples` ends a row where `generate` would: at `<|im_end|>` of a ChatML-tuned model, not only at
    EOS. The model is made to say `<|im_end|>` as its third new token; the row's text is the two before it and
    no further step runs."""
    from llmforge.eval.checkpoint import load
    from llmforge.eval.samples import generate as sheet_generate

    model, tokenizer = load(chat_model, "cpu")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tokenizer.eos_token_id
    forward, calls, produced = model.forward, [], []

    def forced(*args, **kwargs):
        out = forward(*args, **kwargs)
        if len(calls) == 2:  # the prompt pass, two steps, then the third new token
            out.logits[:, -1, im_end] += 1e4
        calls.append(kwargs["input_ids"].shape[1])
        produced.append(out.logits[0, -1].argmax().item())
        return out

    model.forward = forced
    (text,) = sheet_generate(model, tokenizer, [PROMPT], max_new_tokens=12, temperature=0.0, seed=0)
    assert produced[2] == im_end and len(calls) == 3  # generation ended at <|im_end|>
    assert text == tokenizer.decode(
        produced[:2], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


def test_one_causal_rule_for_every_stage(tmp_path):
    """generate, eval and finetune sft read a model dir with the same rule (artifacts/model_dir.py)."""
    from llmforge.artifacts.model_dir import NotCausalLM, model_kind, require_causal_lm_dir

    kinds = {
        "llama": ({"model_type": "llama"}, "causal"),
        "gpt2": ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "causal"),
        "bert-decoder": ({"model_type": "bert", "architectures": ["BertLMHeadModel"]}, "causal"),
        "bert": ({"model_type": "bert"}, "masked"),
        "bert-mlm": ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, "masked"),
        "t5": ({"model_type": "t5", "is_encoder_decoder": True}, "seq2seq"),
        "reward": ({"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]}, "other"),
    }
    assert {name: model_kind(config) for name, (config, _) in kinds.items()} == {
        name: kind for name, (_, kind) in kinds.items()
    }
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(
        NotCausalLM, match=re.escape(f"finetune.base: {d}: instruction tuning needs a causal LM")
    ):
        require_causal_lm_dir(d, key="finetune.base", needs="instruction tuning")
    (d / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 128}')
    with pytest.raises(UserError, match=re.escape(f"finetune.base: {d}: no model weights")):
        require_causal_lm_dir(d, key="finetune.base")
    (d / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=re.escape(f"finetune.base: {d}: no tokenizer files")):
        require_causal_lm_dir(d, key="finetune.base")
    assert require_causal_lm_dir(d, key="finetune.base", tokenizer=False)["max_position_embeddings"] == 128
    with pytest.raises(
        UserError, match=re.escape(f"finetune.base: {tmp_path}/gone: no such model directory")
    ):
        require_causal_lm_dir(tmp_path / "gone", key="finetune.base")
    with pytest.raises(
        UserError, match=re.escape(f"finetune.base: {tmp_path}: not a Hugging Face model dir")
    ):
        require_causal_lm_dir(tmp_path, key="finetune.base")

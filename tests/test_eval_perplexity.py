"""`llmforge eval perplexity`: sliding-window perplexity equals exp(mean NLL) from the logits; bits per byte
over exactly the scored tokens; bad input exits 2. Masked LMs: pseudo-perplexity equals masking one token at
a time; encoder-decoders: target perplexity equals the model's own loss; the model kind is read from
config.json and causal-only commands refuse the other kinds."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from eval_tiny_model import build_tiny_model

from llmforge.artifacts import write_json, write_manifest
from llmforge.console import UserError
from llmforge.eval import perplexity as ppl


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    return build_tiny_model(
        tmp_path_factory.mktemp("ppl") / "model", shared_data / "tinyshakespeare" / "input.txt"
    )


@pytest.fixture(scope="module")
def loaded(model_dir):
    from llmforge.eval.checkpoint import load

    return load(model_dir, "cpu")


@pytest.fixture
def text_file(tmp_path, shared_data):
    f = tmp_path / "held_out.txt"
    f.write_text(
        (shared_data / "wikitext2" / "valid.txt").read_text(encoding="utf-8")[:3000], encoding="utf-8"
    )
    return f


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(10, 4, 4), (10, 4, 1), (300, 128, 64), (5, 16, 8), (129, 128, 127)]
)
def test_spans_score_every_token_after_the_first_once(n, window, stride):
    scored = []
    for s in ppl.spans(n, window, stride):
        assert s.end - s.begin <= window and s.scored <= s.end - s.begin - 1
        scored += range(s.end - s.scored, s.end)
    if stride == window:  # non-overlapping: the first token of each window has no context
        expected = [i for i in range(1, n) if i % window]
    else:
        expected = list(range(1, n))
    assert scored == expected


def _direct_nll(model, ids):
    import torch

    with torch.no_grad():
        logits = model(torch.tensor(ids)[None]).logits[0, :-1]
    return torch.nn.functional.cross_entropy(
        logits.float(), torch.tensor(ids[1:]), reduction="sum"
    ).item(), len(ids) - 1


def test_perplexity_is_exp_of_mean_nll_from_logits(loaded, text_file):
    model, tokenizer = loaded
    ids, n_bytes = ppl.text_stream(tokenizer, text_file, None)
    assert n_bytes == len(text_file.read_text(encoding="utf-8").encode("utf-8"))

    whole = ppl.measure(model, tokenizer, ids[:100], n_bytes, window=128, stride=64, batch_size=4)
    nll, count = _direct_nll(model, ids[:100])
    assert whole.tokens == count == 99
    assert whole.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)

    chunks = ppl.measure(model, tokenizer, ids[:256], n_bytes, window=64, stride=64, batch_size=3)
    parts = [_direct_nll(model, ids[i : i + 64]) for i in range(0, 256, 64)]
    total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    assert chunks.tokens == count
    assert chunks.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)


def _stream_with_eos(tokenizer, docs):
    """Documents joined by EOS (as a tokens artifact holds them) and their UTF-8 bytes."""
    ids = []
    for d in docs:
        ids += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return np.asarray(ids, dtype=np.int64), sum(len(d.encode("utf-8")) for d in docs)


def _bytes_added(tokenizer, ids, t):
    """Bytes token t adds to the text decoded from the whole stream before it (special tokens add none)."""

    def decoded(n):
        return len(tokenizer.decode(ids[:n].tolist(), skip_special_tokens=True).encode("utf-8"))

    return decoded(t + 1) - decoded(t)


def test_bits_per_byte_counts_the_bytes_of_exactly_the_scored_tokens(loaded, shared_data):
    """At stride = window the first token of every window is context only and EOS has no bytes: both the
    NLL sum and the byte count must cover the same targets (EOS excluded), computed here token by token."""
    import torch

    model, tokenizer = loaded
    speeches = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n\n")[:12]
    ids, n_bytes = _stream_with_eos(tokenizer, speeches)
    window = 32
    assert len(ids) > 8 * window
    nll, tokens, scored_bytes = 0.0, 0, 0
    for begin in range(0, len(ids), window):
        chunk = ids[begin : begin + window]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor(chunk)[None]).logits[0].double(), -1)
        for j in range(1, len(chunk)):  # chunk[0] has no context in its window: never a target
            if chunk[j] == tokenizer.eos_token_id:
                continue
            nll -= float(logp[j - 1, chunk[j]])
            tokens += 1
            scored_bytes += _bytes_added(tokenizer, ids, begin + j)
    p = ppl.measure(model, tokenizer, ids, n_bytes, window=window, stride=window, batch_size=4)
    assert p.tokens == tokens and p.bytes == scored_bytes < n_bytes
    assert p.bits_per_byte == pytest.approx(nll / (math.log(2) * scored_bytes), rel=1e-6)
    assert p.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-6)


def _tokens_artifact(path, tokenizer, docs):
    eos = tokenizer.eos_token_id
    stream = []
    for d in docs:
        stream += tokenizer(d)["input_ids"] + [eos]
    arr = np.asarray(stream, dtype=np.uint16)
    (path / "val").mkdir(parents=True)
    arr.tofile(path / "val" / "00000.bin")
    shard = {"file": "val/00000.bin", "tokens": len(arr), "documents": len(docs)}
    write_json(
        path / "index.json",
        {
            "format": 1,
            "dtype": "uint16",
            "vocab_size": len(tokenizer),
            "eos_id": eos,
            "splits": {"val": {"tokens": len(arr), "documents": len(docs), "shards": [shard]}},
            "sources": {},
        },
    )
    write_manifest(path, "tokens")
    return arr


def test_tokens_val_split_counts_bytes_by_decoding(cli, loaded, model_dir, tmp_path):
    _, tokenizer = loaded
    docs = ["The king is dead.", "Long live the queen, said the fool. ", "ünïcödé bytes count too"]
    arr = _tokens_artifact(tmp_path / "tokens", tokenizer, docs)

    def perplexity(*extra):
        args = ["--tokens", str(tmp_path / "tokens"), "--out", str(tmp_path / "rep"), *extra]
        return cli("eval", "perplexity", str(model_dir), *args)

    r = perplexity("--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    first_token = len(tokenizer.decode(arr[:1].tolist()).encode("utf-8"))  # context only, never scored
    assert out["bytes"] == sum(len(d.encode("utf-8")) for d in docs) - first_token
    assert out["tokens"] == len(arr) - 1 - len(docs)  # every target but the EOS after each document
    assert json.loads((tmp_path / "rep" / "manifest.json").read_text())["kind"] == "report"
    again = perplexity()
    assert again.returncode == 2 and "a report already exists; pass --force" in again.stderr
    forced = perplexity("--device", "cpu", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["perplexity,none"] == out["perplexity,none"]


def test_perplexity_bad_input_exits_2(cli, model_dir, tmp_path, text_file):
    neither = cli("eval", "perplexity", str(model_dir))
    assert neither.returncode == 2 and "exactly one" in neither.stderr
    wrong_kind = tmp_path / "not_tokens"
    wrong_kind.mkdir()
    write_manifest(wrong_kind, "dataset")
    r = cli("eval", "perplexity", str(model_dir), "--tokens", str(wrong_kind))
    assert r.returncode == 2 and "expected a tokens artifact" in r.stderr
    r = cli(
        "eval", "perplexity", str(model_dir), "--text", str(text_file), "--window", "16", "--stride", "32"
    )
    assert r.returncode == 2 and "--stride 32" in r.stderr


def test_window_above_the_model_context_is_refused(cli, model_dir, text_file, tmp_path):
    r = cli("eval", "perplexity", str(model_dir), "--text", str(text_file), "--window", "100000")
    assert r.returncode == 2, r.stderr
    assert "--window 100000: larger than the model's context (512 tokens" in r.stderr
    assert not (tmp_path / "rep").exists()


def _damaged_copy(model_dir, tmp_path, damage):
    copy = tmp_path / "damaged"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(damage(data))
    return copy, weights


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda b: b[: len(b) // 2], "tensors need"),  # a copy cut short
        (lambda b: (10**12).to_bytes(8, "little") + b[8:], "header of 1000000000000 bytes"),
        (lambda b: b[:3], "shorter than its header"),
    ],
    ids=["truncated", "header-too-large", "tiny"],
)
def test_damaged_safetensors_exit_2_naming_the_file(cli, model_dir, text_file, tmp_path, damage, phrase):
    copy, weights = _damaged_copy(model_dir, tmp_path, damage)
    r = cli("eval", "perplexity", str(copy), "--text", str(text_file))
    assert r.returncode == 2, r.stderr
    assert f"{weights}: damaged safetensors file" in r.stderr and phrase in r.stderr
    assert "Traceback" not in r.stderr


# --- masked LMs (pseudo-perplexity) and encoder-decoders (target perplexity) ------------------------------

N_SENTINELS = 8


def _tokenizer(text_file, *, sentinels: int = 0):
    """A byte-level BPE with EOS, pad and mask tokens; `sentinels` <extra_id_k> at the top of the vocabulary,
    <extra_id_0> the highest id (the tokenize stage's layout)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|pad|>", "<|mask|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text_file.read_text(encoding="utf-8")[:50_000].splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>", mask_token="<|mask|>"
    )
    if sentinels:
        names = [f"<extra_id_{k}>" for k in reversed(range(sentinels))]
        tokenizer.add_special_tokens({"additional_special_tokens": names})
    return tokenizer


def _save(model, tokenizer, out):
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, shared_data):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = _tokenizer(shared_data / "tinyshakespeare" / "input.txt")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _save(BertForMaskedLM(config), tokenizer, tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory, shared_data):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _tokenizer(shared_data / "tinyshakespeare" / "input.txt", sentinels=N_SENTINELS)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save(T5ForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("t5") / "model")


def _docs(shared_data, n):
    return (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n\n")[:n]


def test_model_kind_reads_config_json(model_dir, bert_dir, t5_dir, tmp_path):
    from llmforge.eval.checkpoint import model_kind

    assert (model_kind(model_dir), model_kind(bert_dir), model_kind(t5_dir)) == (
        "causal",
        "masked",
        "seq2seq",
    )
    for name, config, kind in [
        ("roberta", {"model_type": "roberta"}, "masked"),  # no architectures: the model type decides
        ("gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "causal"),
        ("decoder-bert", {"model_type": "bert", "architectures": ["BertLMHeadModel"]}, "causal"),
        ("bart", {"model_type": "bart", "is_encoder_decoder": True}, "seq2seq"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        assert model_kind(tmp_path / name) == kind, name
    # a classifier has no LM head: no kind eval scores (it used to load as a causal LM with a random head)
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    with pytest.raises(UserError, match="describes a BertForSequenceClassification; eval scores causal LMs"):
        model_kind(tmp_path / "classifier")


def test_load_picks_the_model_class_by_kind(bert_dir, t5_dir):
    from transformers import BertForMaskedLM, T5ForConditionalGeneration

    from llmforge.eval.checkpoint import load

    assert isinstance(load(bert_dir, "cpu")[0], BertForMaskedLM)
    assert isinstance(load(t5_dir, "cpu")[0], T5ForConditionalGeneration)


def _pseudo_nll_one_at_a_time(model, tokenizer, ids, window):
    """Σ -log P(w_i | W\\i) by masking one token per forward pass, each window on its own (specials skipped)."""
    import torch

    special = set(tokenizer.all_special_ids)
    nll, count = 0.0, 0
    for begin in range(0, len(ids), window):
        chunk = ids[begin : begin + window]
        for j in range(len(chunk)):
            if chunk[j] in special:
                continue
            masked = torch.tensor(chunk)[None].clone()
            masked[0, j] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=masked).logits[0, j]
            nll -= float(torch.log_softmax(logits.double(), -1)[chunk[j]])
            count += 1
    return nll, count


def test_pseudo_perplexity_equals_masking_one_token_at_a_time(bert_dir, shared_data):
    """Batched one-mask copies (5 per pass, windows of 24 and a shorter last one, the output projection run
    at the masked positions only) give the unbatched loop's pseudo-perplexity from whole logits; EOS between
    documents is context only; bytes are the text's."""
    from llmforge.eval import masked_perplexity as mlm
    from llmforge.eval.checkpoint import load

    model, tokenizer = load(bert_dir, "cpu")
    ids, n_bytes = _stream_with_eos(tokenizer, _docs(shared_data, 4))
    ids = ids[:100]
    n_bytes = len(tokenizer.decode(ids.tolist(), skip_special_tokens=True).encode("utf-8"))
    eos = tokenizer.eos_token_id
    assert (ids == eos).sum() >= 1 and len(ids) % 24 != 0
    p = mlm.measure(model, tokenizer, ids, n_bytes, window=24, batch_size=5, mask_id=tokenizer.mask_token_id)
    nll, count = _pseudo_nll_one_at_a_time(model, tokenizer, ids, 24)  # after: the head's hook is gone
    assert p.metric == "pseudo-perplexity"
    assert p.tokens == count == len(ids) - (ids == eos).sum()
    assert p.perplexity == pytest.approx(math.exp(nll / count), rel=1e-6)
    assert p.bytes == n_bytes
    assert p.bits_per_byte == pytest.approx(nll / (math.log(2) * n_bytes), rel=1e-6)


def test_pseudo_perplexity_never_scores_special_tokens(bert_dir):
    from llmforge.eval import masked_perplexity as mlm
    from llmforge.eval.checkpoint import load

    model, tokenizer = load(bert_dir, "cpu")
    word = tokenizer("the", add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids = np.asarray(word + [eos] + word + [pad, eos] + word, dtype=np.int64)
    jobs = mlm.one_mask_jobs(ids, 4, sorted(tokenizer.all_special_ids))
    scored = sorted(b + p for group in jobs.values() for b, p in group)
    assert scored == [i for i, t in enumerate(ids) if t not in (eos, pad)]
    p = mlm.measure(model, tokenizer, ids, 9, window=4, batch_size=2, mask_id=tokenizer.mask_token_id)
    assert p.tokens == 3 * len(word)
    with pytest.raises(UserError, match="no token to score besides special tokens"):
        mlm.measure(model, tokenizer, np.asarray([eos, pad, eos]), 0, window=4, batch_size=2, mask_id=0)


def test_masked_lm_without_a_mask_token_exits_2(bert_dir):
    from types import SimpleNamespace

    from llmforge.eval import masked_perplexity as mlm

    with pytest.raises(UserError, match="the tokenizer has no mask_token"):
        mlm.mask_token_id(SimpleNamespace(mask_token_id=None), bert_dir)


def test_target_perplexity_equals_the_models_own_loss(t5_dir, shared_data):
    """exp(mean NLL per target token) over the span-corruption examples, raw window k corrupted with seed
    (0, k): the model's `loss` on the same examples, weighted by their target lengths."""
    import torch

    from llmforge.eval import target_perplexity as t5
    from llmforge.eval.checkpoint import load
    from llmforge.objectives.span_corruption import SpanCorruption

    model, tokenizer = load(t5_dir, "cpu")
    sentinels = t5.sentinel_ids(tokenizer, t5_dir)
    assert sentinels == [tokenizer.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(N_SENTINELS)]
    assert sentinels[0] == len(tokenizer) - 1  # highest id first
    ids, _ = _stream_with_eos(tokenizer, _docs(shared_data, 4))
    window, eos = 32, tokenizer.eos_token_id
    raw = SpanCorruption().lengths(window)[0]
    ids = ids[: 3 * raw + 7]  # three full raw windows and a shorter last one
    loss_sum, targets = 0.0, 0
    for k, begin in enumerate(range(0, len(ids), raw)):
        inputs, labels = SpanCorruption().example(ids[begin : begin + raw], [0, k], sentinels, eos)
        assert len(inputs) == window or begin + raw > len(ids)
        with torch.no_grad():
            loss = model(input_ids=torch.tensor(inputs)[None], labels=torch.tensor(labels)[None]).loss
        loss_sum += float(loss) * len(labels)
        targets += len(labels)
    p = t5.measure(model, ids, window=window, batch_size=2, sentinels=sentinels, eos_id=eos)
    assert (p.metric, p.tokens, p.bits_per_byte, p.stride) == ("target-perplexity", targets, None, raw)
    assert p.perplexity == pytest.approx(math.exp(loss_sum / targets), rel=1e-5)


def test_target_perplexity_refuses_a_tokenizer_without_enough_sentinels(t5_dir, model_dir):
    from llmforge.eval import target_perplexity as t5
    from llmforge.eval.checkpoint import load

    _, causal_tokenizer = load(model_dir, "cpu")
    with pytest.raises(UserError, match="no <extra_id_N> sentinel tokens"):
        t5.sentinel_ids(causal_tokenizer, model_dir)
    ids = np.arange(3, 300, dtype=np.int64)
    with pytest.raises(UserError, match="noise spans, the tokenizer has 2 sentinel tokens"):
        t5.examples(ids, t5.raw_length(256), [400, 399], 0)


def _perplexity_json(cli, model, text_file, out, *extra):
    r = cli("eval", "perplexity", str(model), "--text", str(text_file), "--out", str(out), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_reports_name_their_measure_and_compare_keeps_them_apart(cli, model_dir, bert_dir, t5_dir, tmp_path):
    from llmforge.eval.compare import load as load_comparison

    text_file = tmp_path / "held_out.txt"
    text_file.write_text("To be, or not to be, that is the question.\n" * 3, encoding="utf-8")
    causal = _perplexity_json(cli, model_dir, text_file, tmp_path / "causal")
    masked = _perplexity_json(cli, bert_dir, text_file, tmp_path / "masked", "--window", "16")
    target = _perplexity_json(cli, t5_dir, text_file, tmp_path / "target", "--window", "16")
    assert (causal["metric"], masked["metric"], target["metric"]) == (
        "perplexity",
        "pseudo-perplexity",
        "target-perplexity",
    )
    assert "perplexity,none" in causal and "perplexity,none" not in masked
    assert masked["pseudo_perplexity,none"] > 1 and masked["pseudo_bits_per_byte,none"] > 0
    assert masked["bytes"] == len(text_file.read_bytes())
    assert target["target_perplexity,none"] > 1 and target["target_bits_per_byte,none"] is None
    config = json.loads((tmp_path / "masked" / "results.json").read_text())["config"]
    assert (config["metric"], config["window"], config["stride"]) == ("pseudo-perplexity", 16, 16)
    rows = load_comparison([tmp_path / "causal", tmp_path / "masked", tmp_path / "target"]).rows
    names = {metric for _, metric, _ in rows}
    assert {"perplexity", "pseudo_perplexity", "target_perplexity"} <= names


def test_causal_only_commands_refuse_other_kinds(cli, bert_dir, t5_dir, tmp_path, text_file):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("To be or not\n")
    for model, kind in [(bert_dir, "a masked LM"), (t5_dir, "an encoder-decoder")]:
        for argv in [
            ["samples", str(model), "--prompts", str(prompts), "--out", str(tmp_path / "sheet.csv")],
            ["run", str(model), "--tasks", "piqa", "--data-dir", str(tmp_path)],
        ]:
            r = cli("eval", *argv, env={"COLUMNS": "80"})
            assert r.returncode == 2, r.stderr
            (line,) = r.stderr.strip().splitlines()
            assert line.startswith(f"error: {model}: eval {argv[0]} needs a causal LM") and kind in line
    assert not (tmp_path / "sheet.csv").exists()
    r = cli("eval", "perplexity", str(bert_dir), "--text", str(text_file), "--stride", "4")
    assert r.returncode == 2 and "--stride: applies to causal LMs only" in r.stderr

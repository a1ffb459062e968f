"""`llmforge eval perplexity`: sliding-window perplexity equals exp(mean NLL) from the logits; bits per byte
over exactly the scored tokens; bad input exits 2."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from eval_tiny_model import build_tiny_model

from llmforge.artifacts import write_json, write_manifest
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

"""`llmforge eval perplexity`: sliding-window perplexity equals exp(mean NLL) from the logits; bits per byte."""

from __future__ import annotations

import json
import math

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

    whole = ppl.measure(model, ids[:100], n_bytes, window=128, stride=64, batch_size=4)
    nll, count = _direct_nll(model, ids[:100])
    assert whole.tokens == count == 99
    assert whole.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)

    chunks = ppl.measure(model, ids[:256], n_bytes, window=64, stride=64, batch_size=3)
    parts = [_direct_nll(model, ids[i : i + 64]) for i in range(0, 256, 64)]
    total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    assert chunks.tokens == count
    assert chunks.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)


def test_bits_per_byte_agrees_with_perplexity_and_bytes_per_token(loaded, text_file):
    model, tokenizer = loaded
    ids, n_bytes = ppl.text_stream(tokenizer, text_file, None)
    p = ppl.measure(model, ids, n_bytes, window=128, stride=32, batch_size=8)
    assert p.bits_per_byte == pytest.approx(math.log2(p.perplexity) * p.tokens / p.bytes, rel=1e-9)
    assert p.bytes / p.tokens > 1  # a BPE token covers more than one byte on English text


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
    r = cli(
        "eval",
        "perplexity",
        str(model_dir),
        "--tokens",
        str(tmp_path / "tokens"),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "rep"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bytes"] == sum(len(d.encode("utf-8")) for d in docs)
    assert out["tokens"] == len(arr) - 1
    assert out["bits_per_byte,none"] == pytest.approx(
        math.log2(out["perplexity,none"]) * out["tokens"] / out["bytes"], rel=1e-9
    )
    assert json.loads((tmp_path / "rep" / "manifest.json").read_text())["kind"] == "report"


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

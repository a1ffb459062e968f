"""`llmforge tokenize compare`: metrics agree with hand counts; the CLI writes JSON and a PNG."""

from __future__ import annotations

import json
import shutil

import pytest
from tokenize_datasets import stdlib_docs, write_dataset

from llmforge.console import configure
from llmforge.tokenizer.compare import LONG_TOKEN_BYTES, compare_tokenizers, tokenizer_metrics
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.encode import load_tokenizer_file
from llmforge.tokenizer.train import train_tokenizer

configure(quiet=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    dataset = write_dataset(root / "dataset", [stdlib_docs(25)])
    for name, algo, vocab in (("small", "bpe", 300), ("large", "bpe", 1500), ("word", "word", 200)):
        train_tokenizer(
            TokenizerConfig(algorithm=algo, vocab_size=vocab, val_fraction=0.2), dataset, root / name
        )
    return root, dataset


def test_metrics_match_hand_counts(trained):
    root, dataset = trained
    docs = [{"text": "alpha beta  gamma\n", "source": "a"}, {"text": "δ 12", "source": "b"}]
    m = tokenizer_metrics(root / "small", docs)
    tok = load_tokenizer_file(root / "small")
    ids = [i for d in docs for i in tok.encode(d["text"], add_special_tokens=False).ids]
    assert m["tokens"] == len(ids)
    assert m["bytes_per_token"] == pytest.approx((18 + 5) / len(ids))
    assert m["fertility"] == pytest.approx(len(ids) / 5)
    assert m["vocab_utilisation"] == pytest.approx(len(set(ids)) / 300)
    long = sum(len(tok.decode([i]).encode()) >= LONG_TOKEN_BYTES for i in ids)
    assert m["long_token_share"] == pytest.approx(long / len(ids))
    assert set(m["bytes_per_token_by_source"]) == {"a", "b"}


def test_larger_vocabulary_packs_more_bytes_per_token_and_word_level_has_unknowns(trained):
    root, dataset = trained
    result = compare_tokenizers([root / "small", root / "large", root / "word"], dataset, 10**7, 0.2)
    small, large, word = result["tokenizers"]
    assert large["bytes_per_token"] > small["bytes_per_token"]
    assert large["fertility"] < small["fertility"]
    assert small["unk_rate"] == 0 and word["unk_rate"] > 0


def test_cli_compare_json_and_png(tmp_path, cli, trained):
    root, dataset = trained
    png = tmp_path / "cmp.png"
    r = cli(
        "tokenize",
        "compare",
        str(root / "small"),
        str(root / "large"),
        "--data",
        str(dataset),
        "--val-fraction",
        "0.2",
        "--json",
        "--png",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [t["vocab_size"] for t in result["tokenizers"]] == [300, 1500]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("tokenize", "compare", str(tmp_path), "--data", str(dataset))
    assert r.returncode == 2 and "tokenizer.json" in r.stderr


def test_compare_measures_on_the_split_the_tokens_artifact_holds_out(tmp_path, cli):
    """`compare --data` defaulted to --val-fraction 0.01 while the recipe held out 0.05: most of the documents
    it measured on were training documents."""
    from llmforge.tokenizer.encode import encode_dataset

    run = tmp_path / "runs/t"
    dataset = write_dataset(run / "dataset", [stdlib_docs(40)])
    cfg = TokenizerConfig(vocab_size=300, val_fraction=0.3)
    train_tokenizer(cfg, dataset, run / "tokenizer", recipe=cfg.model_dump(mode="json"))
    encode_dataset(dataset, run / "tokenizer", run / "tokens", val_fraction=0.25)
    val_docs = json.loads((run / "tokens/index.json").read_text())["splits"]["val"]["documents"]
    r = cli("tokenize", "compare", str(run / "tokenizer"), "--data", str(dataset), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["val_fraction"], result["documents"], result["held_out"]) == (0.25, val_docs, True)
    assert result["val_fraction_from"] == f"the split of {run / 'tokens'}"
    shutil.rmtree(run / "tokens")  # no tokens yet: the split the tokenizer was trained with
    result = compare_tokenizers([run / "tokenizer"], dataset, 10**7)
    assert result["val_fraction"] == 0.3 and "trained with" in result["val_fraction_from"]
    assert compare_tokenizers([run / "tokenizer"], dataset, 10**7, 0.5)["val_fraction"] == 0.5

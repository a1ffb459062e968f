"""`llmforge tokenize encode`: the tokens contract, the document split, dtype choice, workers and resume;
corrupt artifacts and bad tokenizers exit 2 (and `llmforge inspect` flags them)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tokenize_datasets import stdlib_docs, write_dataset, write_recipe

from llmforge.artifacts import write_manifest
from llmforge.artifacts.tokens import TokenShards, TokenWindows, validate_tokens
from llmforge.console import UserError, configure
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.encode import encode_dataset, load_tokenizer_file
from llmforge.tokenizer.train import train_tokenizer

configure(quiet=True)
VAL = 0.2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    docs = stdlib_docs(30)
    docs.insert(3, {"text": "", "id": "empty", "source": "code"})
    docs += [{"text": f"Prose number {i}. 🙂", "id": f"p{i}", "source": "prose"} for i in range(40)]
    dataset = write_dataset(root / "dataset", [docs[:35], docs[35:]])
    tokenizer = root / "tokenizer"
    train_tokenizer(TokenizerConfig(vocab_size=500, val_fraction=VAL), dataset, tokenizer)
    return root, dataset, tokenizer, [d for d in docs if d["text"]]


def _encode(setup, out, workers=1):
    _, dataset, tokenizer, _ = setup
    return encode_dataset(dataset, tokenizer, out, val_fraction=VAL, workers=workers)


def test_tokens_follow_the_contract_and_count_every_document_plus_eos(tmp_path, setup):
    _, dataset, tokenizer, docs = setup
    report = _encode(setup, tmp_path / "tokens")
    index = validate_tokens(tmp_path / "tokens")
    tok = load_tokenizer_file(tokenizer)
    expected = {"train": [], "val": []}
    from llmforge.tokenizer.split import is_val

    for d in docs:
        expected["val" if is_val(d, VAL) else "train"].append(
            tok.encode(d["text"], add_special_tokens=False).ids
        )
    assert expected["val"] and expected["train"]
    eos = index["eos_id"]
    for split in ("train", "val"):
        stream = TokenShards(tmp_path / "tokens", split).read(0, index["splits"][split]["tokens"])
        assert index["splits"][split]["tokens"] == sum(len(ids) + 1 for ids in expected[split])
        assert index["splits"][split]["documents"] == len(expected[split]) == int((stream == eos).sum())
        assert sorted(tok.decode(list(doc)) for doc in _split_docs(stream, eos)) == sorted(
            tok.decode(ids) for ids in expected[split]
        )
    assert index["dtype"] == "uint16" and index["vocab_size"] == 500
    assert index["tokenizer_path"] == str(tokenizer.resolve())
    assert index["tokenizer_hash"] == json.loads((tokenizer / "manifest.json").read_text())["content_hash"]
    assert (index["bos_id"], index["pad_id"]) == (0, 2)
    assert set(index["sources"]) == {"code", "prose"}
    assert index["sources"]["prose"]["documents"] == 40
    assert sum(s["train_tokens"] for s in index["sources"].values()) == index["splits"]["train"]["tokens"]
    assert report["skipped_empty_documents"] == 1
    manifest = json.loads((tmp_path / "tokens/manifest.json").read_text())
    assert [i["kind"] for i in manifest["inputs"]] == ["dataset", "tokenizer"]


def _split_docs(stream: np.ndarray, eos: int):
    ends = np.flatnonzero(stream == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [stream[s:e] for s, e in zip(starts, ends, strict=True)]


def test_val_split_never_shares_a_document_with_train(tmp_path, setup):
    _encode(setup, tmp_path / "tokens")
    index = validate_tokens(tmp_path / "tokens")
    eos = index["eos_id"]
    seqs = {
        split: {
            tuple(d)
            for d in _split_docs(
                TokenShards(tmp_path / "tokens", split).read(0, index["splits"][split]["tokens"]), eos
            )
        }
        for split in ("train", "val")
    }
    assert seqs["val"] and not seqs["train"] & seqs["val"]


def test_two_workers_and_resume_give_identical_shards(tmp_path, setup, monkeypatch):
    from llmforge.tokenizer import encode as enc

    _encode(setup, tmp_path / "one")
    _encode(setup, tmp_path / "two", workers=2)
    real_unit = enc.encode_unit

    def crash_on_second_unit(*args, **kw):
        if args[3] == 1:
            (tmp_path / ".resumed.partial/train/.00001.bin.tmp").write_bytes(b"\x01\x02\x03")  # half-written
            raise RuntimeError("killed")
        return real_unit(*args, **kw)

    monkeypatch.setattr(enc, "encode_unit", crash_on_second_unit)
    with pytest.raises(RuntimeError, match="killed"):
        _encode(setup, tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()
    assert (tmp_path / ".resumed.partial/train/00000.bin").is_file()
    monkeypatch.setattr(enc, "encode_unit", real_unit)
    report = _encode(setup, tmp_path / "resumed")
    assert report["resumed_units"] == 1
    assert not (tmp_path / ".resumed.partial").exists()
    for other in ("two", "resumed"):
        for f in ("train/00000.bin", "train/00001.bin", "val/00000.bin", "val/00001.bin"):
            assert (tmp_path / other / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), (other, f)
        assert json.loads((tmp_path / other / "index.json").read_text()) == json.loads(
            (tmp_path / "one/index.json").read_text()
        )


def test_staging_of_other_inputs_is_discarded(tmp_path, setup):
    stale = tmp_path / ".tokens.partial"
    (stale / "done").mkdir(parents=True)
    (stale / "params.json").write_text(json.dumps({"dataset_hash": "sha256:other"}))
    (stale / "done/00000.json").write_text("{}")
    report = _encode(setup, tmp_path / "tokens")
    assert report["resumed_units"] == 0
    validate_tokens(tmp_path / "tokens")


def test_uint32_when_the_vocabulary_exceeds_uint16(tmp_path, setup):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<eos>": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big = tmp_path / "big"
    big.mkdir()
    tok.save(str(big / "tokenizer.json"))
    (big / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    write_manifest(big, "tokenizer")
    data = write_dataset(tmp_path / "d", [[{"text": "w1 w69999 w65536 nope", "id": "a", "source": "s"}]])
    encode_dataset(data, big, tmp_path / "tokens", val_fraction=0)
    index = validate_tokens(tmp_path / "tokens")
    assert index["dtype"] == "uint32"
    assert TokenShards(tmp_path / "tokens").read(0, 5).tolist() == [3, 70001, 65538, 1, 0]


def test_token_windows_read_the_encoded_stream(tmp_path, setup):
    _encode(setup, tmp_path / "tokens")
    shards = TokenShards(tmp_path / "tokens", "train")
    windows = TokenWindows(shards, seq_len=64, seed=1)
    w = windows.window(0)
    assert len(w) == 65 and w.max() < 500


def test_bad_inputs_are_user_errors(tmp_path, setup):
    _, dataset, tokenizer, _ = setup
    broken = tmp_path / "broken"
    shutil.copytree(tokenizer, broken)
    (broken / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(UserError, match="tokenizer.json: does not parse"):
        encode_dataset(dataset, broken, tmp_path / "t", val_fraction=VAL)
    with pytest.raises(UserError, match="expected a tokenizer artifact"):
        encode_dataset(dataset, dataset, tmp_path / "t", val_fraction=VAL)
    empty = write_dataset(tmp_path / "empty", [[{"text": "", "id": "x"}]])
    with pytest.raises(UserError, match="empty dataset"):
        encode_dataset(empty, tokenizer, tmp_path / "t", val_fraction=VAL)
    assert not (tmp_path / "t").exists()


def test_cli_encode_and_inspect_flags_corrupt_tokens(tmp_path, cli, setup):
    _, dataset, tokenizer, _ = setup
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", val_fraction=VAL)
    r = cli(
        "tokenize",
        "encode",
        str(recipe),
        "--data",
        str(dataset),
        "--tokenizer",
        str(tokenizer),
        "--workers",
        "2",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "runs/t/tokens"
    assert json.loads(r.stdout)["workers"] == 2
    assert cli("inspect", str(out)).returncode == 0
    shard = out / "train/00001.bin"
    shard.write_bytes(shard.read_bytes()[:-1])  # odd size: not a whole number of uint16 tokens
    r = cli("inspect", str(out))
    assert "whole number" in r.stderr + r.stdout
    shard.write_bytes(shard.read_bytes()[:-1])  # whole tokens again, but fewer than index.json says
    with pytest.raises(UserError, match="index.json says"):
        TokenShards(out)
    r = cli("inspect", str(out))
    assert "corrupt shard" in r.stderr + r.stdout

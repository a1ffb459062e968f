"""`llmforge tokenize encode`: the tokens contract, the document split, dtype choice, workers and resume;
corrupt artifacts and bad tokenizers exit 2 (and `llmforge inspect` flags them)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest
import tomli_w
from tokenize_datasets import stdlib_docs, write_dataset, write_recipe

from llmforge.artifacts import write_manifest
from llmforge.artifacts.tokens import SPLITS, TokenShards, TokenWindows, validate_tokens
from llmforge.console import UserError, configure, progress
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
    from llmforge.artifacts.split import is_val

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
    assert (index["bos_id"], index["eos_id"], index["pad_id"]) == (1, 1, 2)  # bos is EOS (GPT-2 convention)
    assert index["split"]["by"] == "origin_document" and index["split"]["val_fraction"] == VAL
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


def _crash_on_second_unit(monkeypatch, setup, out):
    """Run an encode into `out` that is killed in its second unit, leaving a half-written shard behind."""
    from llmforge.tokenizer import encode as enc

    real_unit = enc.encode_unit

    def crash(*args, **kw):
        if args[3] == 1:
            (out.parent / f".{out.name}.partial/train/.00001.bin.tmp").write_bytes(b"\x01\x02\x03")
            raise RuntimeError("killed")
        return real_unit(*args, **kw)

    monkeypatch.setattr(enc, "encode_unit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        _encode(setup, out)
    monkeypatch.setattr(enc, "encode_unit", real_unit)
    assert not out.exists()
    assert (out.parent / f".{out.name}.partial/train/00000.bin").is_file()


def _force_processes(monkeypatch):
    """Make `workers` processes start even on the few kB of a test dataset, on any number of cores."""
    from llmforge.tokenizer import encode as enc

    monkeypatch.setattr(enc, "MIN_BYTES_PER_PROCESS", 1)
    monkeypatch.setattr(enc, "usable_cores", lambda: 2)


def test_two_workers_and_resume_give_identical_shards(tmp_path, setup, monkeypatch):
    _encode(setup, tmp_path / "one")
    _force_processes(monkeypatch)
    assert _encode(setup, tmp_path / "two", workers=2)["processes"] == 2
    _crash_on_second_unit(monkeypatch, setup, tmp_path / "resumed")
    report = _encode(setup, tmp_path / "resumed")
    assert report["resumed_units"] == 1
    assert not (tmp_path / ".resumed.partial").exists()
    for other in ("two", "resumed"):
        for f in ("train/00000.bin", "train/00001.bin", "val/00000.bin", "val/00001.bin"):
            assert (tmp_path / other / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), (other, f)
        assert json.loads((tmp_path / other / "index.json").read_text()) == json.loads(
            (tmp_path / "one/index.json").read_text()
        )


def test_resumed_encode_progress_ends_at_100_percent(tmp_path, setup, monkeypatch):
    """The resumed run's bar counted only the units it encoded against the whole dataset: it ended at
    "56% eta -:--:--"."""
    from llmforge.tokenizer import encode as enc

    _crash_on_second_unit(monkeypatch, setup, tmp_path / "tokens")
    bars = []

    def recorded(**kw):
        bars.append(progress(**kw))
        return bars[-1]

    monkeypatch.setattr(enc, "progress", recorded)
    report = _encode(setup, tmp_path / "tokens")
    assert report["resumed_units"] == 1
    (task,) = bars[-1].tasks
    assert task.completed == task.total == report["bytes"]
    assert task.percentage == 100


def test_more_workers_than_a_few_megabytes_need_start_no_processes(tmp_path, setup):
    """`--workers 2` was slower than 1 on the 3 MB demo corpus (2.1 vs 4.6 MB/s): every worker process paid
    its start-up, while one process already encodes on every core through tokenizers' thread pool."""
    from llmforge.tokenizer.encode import MIN_BYTES_PER_PROCESS, plan_processes, usable_cores

    assert plan_processes(2, 3_000_000, units=2) == 1
    assert plan_processes(8, 100 * MIN_BYTES_PER_PROCESS, units=8) == min(8, usable_cores())
    assert plan_processes(8, 100 * MIN_BYTES_PER_PROCESS, units=3) <= 3
    report = _encode(setup, tmp_path / "tokens", workers=2)
    assert (report["workers"], report["processes"]) == (2, 1)


def test_shard_with_an_id_beyond_the_vocabulary_fails_the_contract(tmp_path, cli, setup):
    """`inspect` passed a shard holding ids ≥ vocab_size; pretraining then died with an IndexError. Checking
    by scanning every shard at every start read a 100B-token corpus per rank per restart, so the cheap check
    trusts the recorded max_id; same-size damage is found by `inspect --verify` and by the reader."""
    _encode(setup, tmp_path / "tokens")
    shard = tmp_path / "tokens/train/00001.bin"
    ids = np.fromfile(shard, dtype="<u2")
    ids[7] = 500  # vocab_size is 500: ids run 0..499
    ids.tofile(shard)  # same size: the manifest's file sizes still match
    validate_tokens(tmp_path / "tokens")  # the recorded max_id is below vocab_size: no scan
    with pytest.raises(UserError, match="token 7 has id 500, not below the vocab_size 500"):
        validate_tokens(tmp_path / "tokens", scan=True)
    shards = TokenShards(tmp_path / "tokens", "train")
    first = shards.index["splits"]["train"]["shards"][0]["tokens"]
    with pytest.raises(
        UserError, match=f"train token {first + 7:,} has id 500, not below the vocab_size 500"
    ):
        shards.read(first, 64)
    assert len(TokenShards(tmp_path / "tokens", "val").read(0, 64)) == 64
    r = cli("inspect", str(tmp_path / "tokens"), "--verify")
    assert r.returncode == 2 and "00001.bin: token 7 has id 500, not below the vocab_size 500" in r.stderr, (
        r.stderr
    )


def test_each_shard_records_its_largest_id_and_readers_check_that(tmp_path, cli, setup):
    _encode(setup, tmp_path / "tokens")
    index_file = tmp_path / "tokens/index.json"
    index = json.loads(index_file.read_text())
    for split in SPLITS:
        for s in index["splits"][split]["shards"]:
            ids = np.fromfile(tmp_path / "tokens" / s["file"], dtype="<u2")
            assert s["max_id"] == (int(ids.max()) if len(ids) else -1)

    def rewrite(max_id):
        edited = json.loads(json.dumps(index))
        if max_id is None:
            for split in SPLITS:
                for s in edited["splits"][split]["shards"]:
                    del s["max_id"]
        else:
            edited["splits"]["train"]["shards"][0]["max_id"] = max_id
        index_file.write_text(json.dumps(edited))

    rewrite(500)  # at vocab_size: fails without reading a token
    with pytest.raises(
        UserError, match="00000.bin: index.json records max_id 500, not below the vocab_size 500"
    ):
        validate_tokens(tmp_path / "tokens")
    r = cli("inspect", str(tmp_path / "tokens"))  # before the sizes: index.json was edited
    assert r.returncode == 2 and "records max_id 500, not below the vocab_size 500" in r.stderr, r.stderr
    rewrite(index["splits"]["train"]["shards"][0]["max_id"] - 1)  # below the real one: only a scan sees it
    validate_tokens(tmp_path / "tokens")
    with pytest.raises(UserError, match="00000.bin: its largest id is .*, index.json records max_id"):
        validate_tokens(tmp_path / "tokens", scan=True)
    rewrite(None)  # an index without max_id (older or hand-written artifacts) is scanned
    validate_tokens(tmp_path / "tokens")
    shard = tmp_path / "tokens/train/00001.bin"
    ids = np.fromfile(shard, dtype="<u2")
    ids[3] = 500
    ids.tofile(shard)
    with pytest.raises(UserError, match="00001.bin: token 3 has id 500, not below the vocab_size 500"):
        validate_tokens(tmp_path / "tokens")


def test_copies_of_a_document_never_straddle_train_and_val(tmp_path, cli, shared_data):
    """Up-sampled copies (`{id}#k`, weight > 1) and counterfactual copies (`{id}#cf`, CDA) were split by
    their own ids: at weight 3, 377 of 379 documents with a copy in val had another copy in train. Built by
    the real data stage, so the ids are the ones it writes."""
    speeches = [p.strip() for p in (shared_data / "tinyshakespeare/input.txt").read_text().split("\n\n")]
    sources = []
    for j, (name, weight) in enumerate((("w1", 1.0), ("w2.5", 2.5), ("w3", 3.0))):
        path = tmp_path / f"{name}.jsonl"
        rows = [
            {"text": f"Doc {name}-{i}: he said to her.\n" + speeches[j * 100 + i], "id": f"{name}-{i}"}
            for i in range(100)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources.append({"name": name, "type": "jsonl", "path": str(path), "weight": weight})
    recipe = tmp_path / "leak.toml"
    recipe.write_text(
        tomli_w.dumps(
            {
                "run": {"name": "leak", "out_dir": str(tmp_path / "runs")},
                "data": {
                    "sources": sources,
                    "steps": [{"type": "counterfactual", "mode": "swap", "augment": True}],
                },
                "tokenizer": {"vocab_size": 300, "val_fraction": 0.1},
            }
        )
    )
    for stage in (("data", "build"), ("tokenize", "train"), ("tokenize", "encode")):
        r = cli("--quiet", *stage, str(recipe))
        assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs/leak"
    index = validate_tokens(run / "tokens")
    assert index["split"]["by"] == "origin_document"
    tok = load_tokenizer_file(run / "tokenizer")
    origins = {}
    for split in SPLITS:
        stream = TokenShards(run / "tokens", split).read(0, index["splits"][split]["tokens"])
        texts = [tok.decode(list(doc)) for doc in _split_docs(stream, index["eos_id"])]
        origins[split] = Counter(re.match(r"Doc (\S+):", t).group(1) for t in texts)
    assert not origins["train"].keys() & origins["val"].keys()
    # val does hold the copies: original + counterfactual, each repeated 1, 2-3 or 3 times by the weight
    copies = {
        w: {n for o, n in origins["val"].items() if o.startswith(f"{w}-")} for w in ("w1", "w2.5", "w3")
    }
    assert copies["w1"] == {2} and copies["w3"] == {6} and copies["w2.5"] <= {4, 5, 6}


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
    assert (index["mask_id"], index["sentinel_ids"]) == (None, [])  # a tokenizer without either


def test_index_records_the_mask_and_sentinel_ids_the_objectives_need(tmp_path, setup):
    _, dataset, tokenizer, _ = setup
    _encode(setup, tmp_path / "plain")
    index = validate_tokens(tmp_path / "plain")
    assert (index["mask_id"], index["sentinel_ids"]) == (4, [])
    assert load_tokenizer_file(tokenizer).id_to_token(4) == "<|mask|>"

    t5 = tmp_path / "tok-sentinels"
    cfg = TokenizerConfig(vocab_size=500, val_fraction=0, special_tokens={"sentinels": 3})
    train_tokenizer(cfg, dataset, t5)
    docs = write_dataset(
        tmp_path / "d", [[{"text": "fill<extra_id_1>gap <extra_id_0>", "id": "a", "source": "s"}]]
    )
    hashes = []
    for out in (tmp_path / "a", tmp_path / "b"):
        encode_dataset(docs, t5, out, val_fraction=0)
        hashes.append(json.loads((out / "manifest.json").read_text())["content_hash"])
    index = validate_tokens(tmp_path / "a")
    assert index["vocab_size"] == 500 and index["mask_id"] == 4
    assert index["sentinel_ids"] == [499, 498, 497]  # sentinel_ids[k] is the id of <extra_id_k>
    stream = TokenShards(tmp_path / "a", "train").read(0, index["splits"]["train"]["tokens"]).tolist()
    assert stream.count(498) == 1 and stream[-2:] == [499, index["eos_id"]]
    assert hashes[0] == hashes[1]  # deterministic: the same inputs give the same tokens hash
    assert (tmp_path / "a/index.json").read_bytes() == (tmp_path / "b/index.json").read_bytes()


def test_an_index_written_before_the_objective_ids_still_reads(tmp_path, setup):
    _encode(setup, tmp_path / "tokens")
    index_file = tmp_path / "tokens/index.json"
    old = {
        k: v for k, v in json.loads(index_file.read_text()).items() if k not in ("mask_id", "sentinel_ids")
    }
    index_file.write_text(json.dumps(old))
    index = validate_tokens(tmp_path / "tokens")
    assert "mask_id" not in index and len(TokenShards(tmp_path / "tokens", "train").read(0, 10)) == 10


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


@pytest.mark.parametrize(
    ("doc_id", "origin"),
    [
        ("x", "x"),
        ("x#cf", "x"),
        ("x#3", "x"),
        ("x#cf#3", "x"),
        ("x#cf#cf", "x"),  # two CDA steps
        ("x#cf#cf#12", "x"),
        ("x#0", "x#0"),  # not a repeat number (k ≥ 1)
        ("a#cfb", "a#cfb"),
    ],
)
def test_origin_id_strips_the_cf_of_every_cda_step(doc_id, origin):
    from llmforge.artifacts.split import origin_id

    assert origin_id(doc_id) == origin

"""The whole pipeline through the real CLI on a small real corpus: data build → tokenize train/encode →
pretrain → eval perplexity (first and last checkpoint) → eval compare → inspect, checking the artifact
contracts where one stage hands over to the next."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import run_cli

from llmforge.artifacts import read_manifest

pytestmark = pytest.mark.slow

N_DOCS = 300
PLANTED = 20  # documents written twice: half as exact copies, half with trailing spaces added


def _documents(shakespeare: Path) -> list[str]:
    """N_DOCS documents of four consecutive speeches each (speeches are blank-line separated)."""
    speeches = [p.strip() for p in shakespeare.read_text().split("\n\n") if p.strip()]
    docs = ["\n\n".join(speeches[i : i + 4]) for i in range(0, 4 * N_DOCS, 4)]
    assert len(set(docs)) == N_DOCS
    return docs


def _write_source(path: Path, docs: list[str]) -> None:
    rows = [{"text": t, "id": f"doc-{i}"} for i, t in enumerate(docs)]
    # Exact copies, and copies whose only difference is trailing spaces that `whitespace` strips before dedup.
    rows += [{"text": docs[i], "id": f"dup-{i}"} for i in range(PLANTED // 2)]
    rows += [
        {"text": docs[i].replace("\n", "   \n") + "  ", "id": f"dup-ws-{i}"}
        for i in range(PLANTED // 2, PLANTED)
    ]
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _recipe(root: Path, source: Path) -> dict:
    return {
        "run": {"name": "e2e", "out_dir": str(root), "seed": 3},
        "data": {
            "sources": [{"name": "shakespeare", "type": "jsonl", "path": str(source)}],
            "steps": [{"type": "whitespace"}, {"type": "exact_dedup"}],
        },
        "tokenizer": {"algorithm": "bpe", "vocab_size": 512, "val_fraction": 0.1},
        "model": {"arch": "llama", "n_layers": 2, "d_model": 64, "n_heads": 4, "max_seq_len": 64},
        "train": {
            "seq_len": 64,
            "global_batch_tokens": 1024,
            "micro_batch": 16,
            "max_steps": 40,
            "lr": 1e-2,
            "warmup_steps": 4,
            "eval_every": 10,
            "eval_tokens": 4096,
            "log_every": 5,
            "checkpoint_every": 20,
            "keep_last": 1,
            "keep_every": 20,
        },
    }


def _ok(*args: str) -> str:
    """Run a command that must succeed; under --quiet it writes nothing to stderr (no bars, no tables)."""
    r = run_cli("--quiet", *args)
    assert r.returncode == 0, f"llmforge {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    assert r.stderr == "", f"llmforge --quiet {' '.join(args)} wrote to stderr:\n{r.stderr[-3000:]}"
    return r.stdout


def _fails_with_one_line(*args: str) -> str:
    """Run a command that must be refused as bad input: exit 2, one `error:` line, no traceback."""
    r = run_cli("--quiet", *args)
    assert r.returncode == 2, f"llmforge {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    docs = _documents(shared_data / "tinyshakespeare" / "input.txt")
    source = root / "source.jsonl"
    _write_source(source, docs)
    recipe = root / "recipe.toml"
    recipe.write_text(tomli_w.dumps(_recipe(root, source)))
    run = root / "e2e"

    out = {"root": root, "run": run, "recipe": recipe, "source": source, "docs": docs}
    out["data"] = json.loads(_ok("data", "build", str(recipe), "--json"))
    _ok("tokenize", "train", str(recipe))
    out["encode"] = json.loads(_ok("tokenize", "encode", str(recipe), "--json"))
    out["pretrain"] = json.loads(_ok("pretrain", str(recipe), "--json"))
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    out["checkpoints"] = ckpts
    first_last = (ckpts[0], ckpts[-1])
    out["perplexity"] = [
        json.loads(_ok("eval", "perplexity", str(c), "--tokens", str(run / "tokens"), "--json"))
        for c in first_last
    ]
    out["reports"] = [run / "reports" / "perplexity" / c.name for c in first_last]
    out["compare"] = json.loads(_ok("eval", "compare", *map(str, out["reports"]), "--json"))
    return out


def _normalised(text: str) -> str:
    """What the `whitespace` step makes of a document: no trailing spaces on any line."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _split_documents(tokens: Path, split: str, eos_id: int) -> list[np.ndarray]:
    ids = np.fromfile(tokens / split / "00000.bin", dtype=np.uint16)
    assert ids[-1] == eos_id
    return np.split(ids, np.flatnonzero(ids == eos_id) + 1)[:-1]


def test_dataset_drops_the_planted_duplicates(pipeline):
    from llmforge.artifacts.dataset import iter_documents

    dataset = pipeline["run"] / "dataset"
    texts = [d["text"] for d in iter_documents(dataset)]
    assert len(texts) == N_DOCS == len(set(texts))
    assert set(texts) == {_normalised(t) for t in pipeline["docs"]}

    report = pipeline["data"]
    assert (report["docs_in"], report["docs_out"]) == (N_DOCS + PLANTED, N_DOCS)
    dedup = next(s for s in report["steps"] if s["step"].endswith("exact_dedup"))
    assert dedup["dropped"] == {"exact_dedup": PLANTED}
    assert json.loads((dataset / "report.json").read_text())["docs_out"] == N_DOCS
    assert (dataset / "funnel.png").stat().st_size > 0


def test_token_counts_match_the_documents(pipeline):
    from tokenizers import Tokenizer

    from llmforge.artifacts.dataset import iter_documents

    run = pipeline["run"]
    index = json.loads((run / "tokens" / "index.json").read_text())
    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    assert index["vocab_size"] == tok.get_vocab_size() == 512 and index["dtype"] == "uint16"

    dataset_texts = sorted(d["text"] for d in iter_documents(run / "dataset"))
    decoded = []
    for split in ("train", "val"):
        docs = _split_documents(run / "tokens", split, index["eos_id"])
        texts = [tok.decode(d[:-1].tolist()) for d in docs]
        decoded += texts
        # Every document is its own encoding + one EOS: the index's counts are the per-document sums.
        per_doc = [len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in texts]
        entry = index["splits"][split]
        assert entry["documents"] == len(docs) > 0
        assert entry["tokens"] == sum(per_doc) == sum(len(d) for d in docs)
        assert entry["shards"][0]["tokens"] == entry["tokens"]
    assert sorted(decoded) == dataset_texts  # byte-level BPE round-trips every document
    source = index["sources"]["shakespeare"]
    assert source["documents"] == N_DOCS
    assert source["train_tokens"] + source["val_tokens"] == sum(
        index["splits"][s]["tokens"] for s in ("train", "val")
    )


def test_pretraining_learns_beyond_unigram_statistics(pipeline):
    run = pipeline["run"]
    assert [c.name for c in pipeline["checkpoints"]] == ["step-000020", "step-000040"]
    results = json.loads((run / "reports" / "pretrain" / "results.json").read_text())
    assert results == pipeline["pretrain"]
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [e["val_loss"] for e in evals if "val_loss" in e]
    assert len(val) == 4
    assert val[-1] == pytest.approx(results["final_val_loss"])
    assert val[-1] < val[0]
    assert results["final_val_loss"] < results["unigram_entropy"]
    assert results["steps"] == 40 and results["tokens_seen"] == 40 * 1024


def test_checkpoints_are_hugging_face_dirs_with_training_state(pipeline):
    run = pipeline["run"]
    tokenizer = (run / "tokenizer" / "tokenizer.json").read_bytes()
    for ckpt, step in zip(pipeline["checkpoints"], (20, 40), strict=True):
        config = json.loads((ckpt / "config.json").read_text())
        assert (config["vocab_size"], config["max_position_embeddings"]) == (512, 64)
        assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 64)
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "generation_config.json").is_file()
        assert (ckpt / "tokenizer.json").read_bytes() == tokenizer  # the tokenizer the tokens were made with
        state = json.loads((ckpt / "trainer_state" / "state.json").read_text())
        assert (state["step"], state["tokens_seen"]) == (step, step * 1024)


def test_perplexity_falls_and_agrees_with_training(pipeline):
    early, final = pipeline["perplexity"]
    assert final["perplexity,none"] < early["perplexity,none"]
    assert final["bits_per_byte,none"] < early["bits_per_byte,none"]
    # The eval stage's NLL per token is the pretrain stage's val loss up to window placement.
    assert final["nll_per_token,none"] == pytest.approx(pipeline["pretrain"]["final_val_loss"], abs=0.15)
    assert final["perplexity,none"] == pytest.approx(np.exp(final["nll_per_token,none"]))

    run = pipeline["run"]
    index = json.loads((run / "tokens" / "index.json").read_text())
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    val_docs = _split_documents(run / "tokens", "val", index["eos_id"])
    # every token is a target but the first (no context) and the EOS ending each document (no bytes)
    assert final["tokens"] == index["splits"]["val"]["tokens"] - 1 - len(val_docs)
    first = len(tok.decode(val_docs[0][:1].tolist()).encode())
    assert final["bytes"] == sum(len(tok.decode(d[:-1].tolist()).encode()) for d in val_docs) - first


def test_compare_reports_the_improvement(pipeline):
    early, final = pipeline["perplexity"]
    cmp = pipeline["compare"]
    assert cmp["models"] == ["e2e/step-000020", "e2e/step-000040"]  # run/step
    row = next(r for r in cmp["rows"] if r["metric"] == "perplexity")
    assert row["values"] == {
        "e2e/step-000020": early["perplexity,none"],
        "e2e/step-000040": final["perplexity,none"],
    }
    assert (
        row["delta"] == pytest.approx(final["perplexity,none"] - early["perplexity,none"])
        and row["delta"] < 0
    )


def _kinds_in(tree: dict) -> set[tuple[str, str]]:
    found = {(tree.get("kind"), tree["path"])}
    for child in tree.get("inputs", []):
        found |= _kinds_in(child)
    return found


def test_manifests_chain_every_artifact_to_the_dataset(pipeline):
    run = pipeline["run"].resolve()
    ckpt_first, ckpt_last = (c.resolve() for c in pipeline["checkpoints"])
    expected_inputs = {
        run / "dataset": ("dataset", {("file", str(pipeline["source"].resolve()))}),
        run / "tokenizer": ("tokenizer", {("dataset", str(run / "dataset"))}),
        run / "tokens": (
            "tokens",
            {("dataset", str(run / "dataset")), ("tokenizer", str(run / "tokenizer"))},
        ),
        ckpt_first: ("checkpoint", {("tokens", str(run / "tokens"))}),
        ckpt_last: ("checkpoint", {("tokens", str(run / "tokens"))}),
        run / "reports" / "pretrain": (
            "report",
            {("tokens", str(run / "tokens")), ("checkpoint", str(ckpt_last))},
        ),
        **{
            r.resolve(): ("report", {("checkpoint", str(c)), ("tokens", str(run / "tokens"))})
            for r, c in zip(pipeline["reports"], (ckpt_first, ckpt_last), strict=True)
        },
    }
    for path, (kind, inputs) in expected_inputs.items():
        manifest = read_manifest(path)
        assert manifest["kind"] == kind, path
        assert {(i["kind"], i["path"]) for i in manifest["inputs"]} == inputs, path
        for ref in manifest["inputs"]:
            if ref["kind"] != "file":  # an input's hash is the one its own manifest recorded
                assert ref["content_hash"] == read_manifest(ref["path"])["content_hash"], (path, ref)

        shown = json.loads(_ok("inspect", str(path), "--json"))
        assert shown["kind"] == kind and shown["valid"] is True and shown["problem"] is None, path
        if kind != "dataset":
            assert ("dataset", str(run / "dataset")) in _kinds_in(shown["lineage"]), path


def test_bad_inputs_exit_2_with_one_line(pipeline, tmp_path):
    run = pipeline["run"]
    # A source file cut off mid-record: `data build` refuses it and names the file and line.
    source = tmp_path / "cut.jsonl"
    text = pipeline["source"].read_text()
    source.write_text(text + '{"text": "cut off')
    bad = _recipe(tmp_path, source)
    bad["run"]["name"] = "cut"
    recipe = tmp_path / "cut.toml"
    recipe.write_text(tomli_w.dumps(bad))
    line = _fails_with_one_line("data", "build", str(recipe))
    assert "cut.jsonl:" in line and "not valid JSON" in line
    assert not (tmp_path / "cut" / "dataset").exists()

    # A truncated dataset shard: the tokenize stage refuses it.
    dataset = tmp_path / "dataset"
    shutil.copytree(run / "dataset", dataset)
    shard = next((dataset / "data").glob("*.jsonl.gz"))
    shard.write_bytes(shard.read_bytes()[:2000])
    line = _fails_with_one_line(
        "tokenize",
        "encode",
        str(pipeline["recipe"]),
        "--data",
        str(dataset),
        "--tokenizer",
        str(run / "tokenizer"),
        "--set",
        f"run.out_dir={tmp_path}",
    )
    assert shard.name in line and "truncated" in line
    assert not (tmp_path / "e2e" / "tokens").exists()

    # No tokens artifact: pretrain says where it looked.
    missing = tmp_path / "no-tokens"
    line = _fails_with_one_line(
        "pretrain", str(pipeline["recipe"]), "--tokens", str(missing), "--set", f"run.out_dir={tmp_path}"
    )
    assert str(missing) in line

    # A truncated token shard: inspect and pretrain both refuse it.
    tokens = tmp_path / "tokens"
    shutil.copytree(run / "tokens", tokens)
    with open(tokens / "train" / "00000.bin", "r+b") as f:
        f.truncate(1001)
    assert "not a whole number" in _fails_with_one_line("inspect", str(tokens))
    line = _fails_with_one_line(
        "pretrain", str(pipeline["recipe"]), "--tokens", str(tokens), "--set", f"run.out_dir={tmp_path}"
    )
    assert "00000.bin" in line
    assert not (tmp_path / "e2e" / "checkpoints").exists()

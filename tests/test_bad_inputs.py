"""The bad-input battery: every user error exits 2 with one line naming the file/key and what is expected,
every runtime failure exits 1 with what to change, and no traceback appears without `--debug`.

A new case is one line in CASES: (id, argv, expected exit code, a phrase of the message). `argv` may use the
placeholders of `World` ({recipe}, {tmp}, {missing}, {dataset}, {tokenizer}, {tokens}, {checkpoint}, {shared});
a case that needs a damaged file first names a `prepare` function (below) that builds it and returns more
placeholders. Artifacts are built once per session and copied when a case would change them: the
factories `recipe_with`, `edited_manifest` and `damaged_file` below build the usual kinds of bad input.
Every case runs at COLUMNS=80 (a CI log): an exit-2 message must still be exactly one `error:` line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import tomli_w
from conftest import SHARED_DATA, run_cli


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    rc: int
    phrase: str
    prepare: Callable[[World, Path], dict[str, str]] | None = None  # see Prepare below


class World:
    """Lazily built inputs shared by every case (built once per test session)."""

    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def recipe(self) -> Path:
        """A small recipe (jsonl of Shakespeare speeches, tiny tokenizer and llama) writing under root."""
        recipe = self.root / "recipe.toml"
        recipe.write_text(tomli_w.dumps(self.tables))
        return recipe

    @cached_property
    def tables(self) -> dict:
        """The recipe's tables (`recipe_with` edits a copy)."""
        speeches = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
        source = self.root / "source.jsonl"
        source.write_text(
            "".join(json.dumps({"text": "\n\n".join(speeches[i : i + 3])}) + "\n" for i in range(0, 240, 3))
        )
        return {
            "run": {"name": "b", "out_dir": str(self.root)},
            "data": {"sources": [{"name": "shakespeare", "type": "jsonl", "path": str(source)}]},
            "tokenizer": {"vocab_size": 300, "val_fraction": 0.2},
            "model": {"arch": "llama", "n_layers": 1, "d_model": 32, "n_heads": 2, "max_seq_len": 64},
            "train": {
                "seq_len": 64,
                "global_batch_tokens": 256,
                "micro_batch": 4,
                "max_steps": 4,
                "warmup_steps": 1,
                "eval_every": 2,
                "eval_tokens": 512,
                "checkpoint_every": 2,
            },
        }

    def _stage(self, *argv: str) -> None:
        r = run_cli(*argv, str(self.recipe), "--quiet")
        assert r.returncode == 0, r.stderr[-3000:]

    @cached_property
    def dataset(self) -> Path:
        self._stage("data", "build")
        return self.root / "b" / "dataset"

    @cached_property
    def tokenizer(self) -> Path:
        assert self.dataset.is_dir()
        self._stage("tokenize", "train")
        return self.root / "b" / "tokenizer"

    @cached_property
    def tokens(self) -> Path:
        assert self.tokenizer.is_dir()
        self._stage("tokenize", "encode")
        return self.root / "b" / "tokens"

    @cached_property
    def checkpoint(self) -> Path:
        assert self.tokens.is_dir()
        self._stage("pretrain")
        return sorted((self.root / "b" / "checkpoints").glob("step-*"))[-1]

    def placeholders(self, argv: list[str]) -> dict[str, str]:
        """Only the artifacts a case names are built."""
        wanted = {
            name
            for name in ("recipe", "dataset", "tokenizer", "tokens", "checkpoint")
            if f"{{{name}}}" in " ".join(argv)
        }
        return {name: str(getattr(self, name)) for name in wanted}


def copy_of(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    return dst


Prepare = Callable[[World, Path], dict[str, str]]


def recipe_with(edits: dict, name: str = "edited") -> Prepare:
    """The World's recipe with `edits` merged in ({"train": {"lr": "fast"}}; None deletes a key), written
    raw into the case's tmp dir as {edited} (or {NAME})."""

    def merge(base: dict, more: dict) -> dict:
        out = dict(base)
        for key, value in more.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        path = tmp / f"{name}.toml"
        path.write_text(tomli_w.dumps(merge(world.tables, edits)))
        return {name: str(path)}

    return prepare


def edited_manifest(artifact: str, **changes) -> Prepare:
    """A copy of a World artifact ("dataset", "checkpoint", ...) whose manifest.json has `changes`, as {edited}."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        copy = copy_of(getattr(world, artifact), tmp)
        manifest = json.loads((copy / "manifest.json").read_text())
        (copy / "manifest.json").write_text(json.dumps({**manifest, **changes}))
        return {"edited": str(copy)}

    return prepare


def damaged_file(artifact: str, name: str, offset: int, data: bytes) -> Prepare:
    """A copy of a World artifact with `data` written over file `name` at `offset` (same size; a negative
    offset counts from the end), as {edited}."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        copy = copy_of(getattr(world, artifact), tmp)
        target = copy / name
        with open(target, "r+b") as f:
            f.seek(offset if offset >= 0 else target.stat().st_size + offset)
            f.write(data)
        return {"edited": str(copy)}

    return prepare


def recorded_max_id(max_id: int) -> Prepare:
    """A copy of the World's tokens whose index.json records `max_id` for train/00000.bin, as {edited}."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        copy = copy_of(world.tokens, tmp)
        index = json.loads((copy / "index.json").read_text())
        index["splits"]["train"]["shards"][0]["max_id"] = max_id
        (copy / "index.json").write_text(json.dumps(index))
        return {"edited": str(copy)}

    return prepare


# --- prepare functions: build a damaged input in the case's tmp dir, return its placeholders -------------


def empty_recipe(world: World, tmp: Path) -> dict[str, str]:
    (tmp / "empty.toml").write_text("")
    return {"empty": str(tmp / "empty.toml")}


def not_toml(world: World, tmp: Path) -> dict[str, str]:
    (tmp / "edited.toml").write_text("[train]\nlr = = 3\n")
    return {"edited": str(tmp / "edited.toml")}


def folder_with_a_file(world: World, tmp: Path) -> dict[str, str]:
    """A folder of the user's own (not written by llmforge) that an output must not replace."""
    (tmp / "notes").mkdir()
    (tmp / "notes" / "keep.txt").write_text("mine")
    return {"folder": str(tmp / "notes")}


def damaged_init_from(world: World, tmp: Path) -> dict[str, str]:
    """A copy of the World's checkpoint whose weights are cut to 100 bytes, and a recipe continuing from it."""
    checkpoint = copy_of(world.checkpoint, tmp)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    tables = {
        **world.tables,
        "run": {**world.tables["run"], "out_dir": str(tmp)},
        "model": {"init_from": str(checkpoint)},
    }
    (tmp / "edited.toml").write_text(tomli_w.dumps(tables))
    return {"edited": str(tmp / "edited.toml"), "weights": str(weights)}


def file_in_the_way(world: World, tmp: Path) -> dict[str, str]:
    (tmp / "afile").write_text("")
    return {}


def data_source_file(name: str, content: Callable[[], bytes], kind: str) -> Prepare:
    """The World's recipe with one `kind` source reading file `name` (written in the case's tmp dir), as {edited}."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        (tmp / name).write_bytes(content())
        source = {"name": "bad", "type": kind, "path": str(tmp / name)}
        tables = {
            **world.tables,
            "run": {**world.tables["run"], "out_dir": str(tmp)},
            "data": {"sources": [source]},
        }
        (tmp / "edited.toml").write_text(tomli_w.dumps(tables))
        return {"edited": str(tmp / "edited.toml")}

    return prepare


def truncated(compress: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    """The first half of a compressed file of JSON records."""
    return lambda: (lambda packed: packed[: len(packed) // 2])(
        compress(b"".join(b'{"text": "record %d"}\n' % i for i in range(2000)))
    )


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def truncated_weights(world: World, tmp: Path) -> dict[str, str]:
    """A copy of the World's checkpoint whose model.safetensors lost its second half, as {edited}."""
    checkpoint = copy_of(world.checkpoint, tmp)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return {"edited": str(checkpoint), "weights": str(weights)}


def without_chat_template(world: World, tmp: Path) -> dict[str, str]:
    """A copy of the World's checkpoint whose tokenizer has no chat template, as {edited}."""
    copy = copy_of(world.checkpoint, tmp)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    return {"edited": str(copy)}


# `finetune sft` recipes over a stand-in llama dir (config, weights, tokenizer files: enough for the checks
# that run before any weights load)
LLAMA = {
    "llama__config.json": b'{"model_type": "llama"}',
    "llama__model.safetensors": b"0",
    "llama__tokenizer.json": b"{}",
}
FT_HEAD = b'[finetune]\ntask = "instruction"\nbase = "llama"\n'
FT_DATA = b'[[finetune.datasets]]\npath = "train.jsonl"\n'
FT_CHATML = FT_HEAD + b'chat_template = "chatml"\n' + FT_DATA
PAIRS = b'{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n'


def written_files(**files: bytes) -> Prepare:
    """Files written under the case's tmp dir; `__` in a name stands for `/` (`piqa__valid.jsonl`)."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        for name, data in files.items():
            path = tmp / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return {}

    return prepare


def together(*prepares: Prepare) -> Prepare:
    """Several prepare functions for one case, their placeholders merged."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        values: dict[str, str] = {}
        for one in prepares:
            values.update(one(world, tmp))
        return values

    return prepare


def reward_model_copy(extra_token: str | None = None) -> Prepare:
    """A copy of the World's checkpoint marked a reward model (the manifest mark of `rlhf reward`), as {edited};
    with `extra_token` its tokenizer holds one more token, so it is not the policy's tokenizer."""

    def prepare(world: World, tmp: Path) -> dict[str, str]:
        values = edited_manifest("checkpoint", stats={"model_kind": "reward_model"})(world, tmp)
        if extra_token:
            tokenizer_file = Path(values["edited"]) / "tokenizer.json"
            tokenizer = json.loads(tokenizer_file.read_text())
            added = {"content": extra_token, "special": True, "normalized": False}
            added.update(id=len(tokenizer["model"]["vocab"]), single_word=False, lstrip=False, rstrip=False)
            tokenizer["added_tokens"].append(added)
            tokenizer_file.write_text(json.dumps(tokenizer))
        return values

    return prepare


# `rlhf` recipes over the stand-in llama dir (LLAMA) and preference pairs in p.jsonl, written in the case's tmp dir
RLHF_HEAD = b'[run]\nname = "r"\nout_dir = "runs"\n\n[rlhf]\npolicy = "llama"\n'
RLHF_RECIPE = RLHF_HEAD + b'[[rlhf.preferences]]\npath = "p.jsonl"\n'
RLHF_PAIRS = (
    b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "e", "rejected": "f"}\n'
)
# a dir that passes the reward-model checks made before its tokenizer loads
REWARD_STUB = {
    "rm__manifest.json": b'{"kind": "checkpoint", "stats": {"model_kind": "reward_model"}}',
    "rm__config.json": b'{"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]}',
}


# one case, one line
# fmt: off
CASES = [
    # plan
    Case("plan negative compute", ["plan", "--compute", "-1"], 2, "--compute -1"),
    Case("plan disagreeing budgets", ["plan", "--compute", "1e21", "--params", "1B"], 2, "disagree"),
    Case("plan memory zero stage", ["plan", "memory", "--params", "7B", "--zero", "5"], 2, "--zero 5"),
    Case("plan shape arch", ["plan", "shape", "--arch", "nope", "--layers", "2", "--d-model", "64", "--heads", "2"], 2, "gpt2"),
    # recipes
    Case("recipe unknown key", ["recipe", "check", "{recipe}", "--set", "tokenizer.vocab_sise=1"], 2, "tokenizer.vocab_size"),
    Case("recipe missing", ["recipe", "check", "{missing}"], 2, "{missing}"),
    # artifacts
    Case("inspect missing", ["inspect", "{missing}"], 2, "{missing}"),
    Case("data stats wrong kind", ["data", "stats", "{tokenizer}"], 2, "expected a dataset artifact"),
    Case("tokenize compare missing", ["tokenize", "compare", "{missing}", "--data", "{dataset}"], 2, "{missing}"),
    Case("pretrain missing recipe", ["pretrain", "{missing}"], 2, "{missing}"),
    Case("eval compare missing", ["eval", "compare", "{missing}"], 2, "{missing}"),
    Case("eval perplexity missing", ["eval", "perplexity", "{missing}", "--tokens", "{missing}"], 2, "{missing}"),
    Case("recipe string for a bool", ["recipe", "check", "{edited}"], 2, 'train.compile = "yes": expected true or false', recipe_with({"train": {"compile": "yes"}})),
    Case("recipe float for an int", ["recipe", "check", "{recipe}", "--set", "train.max_steps=10.0"], 2, "train.max_steps = 10.0: expected an integer"),
    Case("recipe string for a float", ["recipe", "check", "{edited}"], 2, 'train.lr = "3e-4": expected a number', recipe_with({"train": {"lr": "3e-4"}})),
    Case("recipe lr inf via set", ["recipe", "check", "{recipe}", "--set", "train.lr=inf"], 2, "train.lr = inf: expected a finite number"),
    Case("recipe nan in the file", ["recipe", "check", "{edited}"], 2, "train.lr = nan: expected a finite number", recipe_with({"train": {"lr": float("nan")}})),
    Case("pretrain lr inf", ["pretrain", "{recipe}", "--set", "train.lr=inf"], 2, "expected a finite number"),
    Case("recipe empty", ["recipe", "check", "{empty}"], 2, "has no tables", empty_recipe),
    Case("data build empty recipe", ["data", "build", "{empty}"], 2, "has no tables", empty_recipe),
    Case("recipe is a directory", ["recipe", "check", "{tmp}"], 2, "{tmp}: is a directory"),
    Case("pretrain recipe is a directory", ["pretrain", "{tmp}"], 2, "is a directory"),
    Case("recipe not toml", ["recipe", "check", "{edited}"], 2, "not valid TOML", not_toml),
    Case("recipe bad set syntax", ["recipe", "check", "{recipe}", "--set", "train.lr"], 2, "expected KEY=VALUE"),
    Case("recipe long missing path", ["recipe", "check", "{tmp}/" + "a-long-directory-name/" * 5 + "recipe.toml"], 2, "a-long-directory-name/" * 5 + "recipe.toml"),
    Case("data relative path is the recipe's", ["data", "build", "{edited}"], 2, "{tmp}/nowhere.jsonl", recipe_with({"data": {"sources": [{"name": "s", "type": "jsonl", "path": "nowhere.jsonl"}]}})),
    Case("cli unknown option", ["data", "build", "{recipe}", "--bogus"], 2, "No such option: --bogus"),
    Case("cli missing argument", ["data", "build"], 2, "Missing argument 'RECIPE'"),
    Case("cli unknown option after quiet", ["recipe", "check", "{recipe}", "--quiet", "--bogus"], 2, "No such option: --bogus"),
    Case("inspect verify edited content hash", ["inspect", "{edited}", "--verify"], 2, "content_hash in manifest.json", edited_manifest("tokenizer", content_hash="sha256:" + "0" * 64)),
    Case("inspect verify corrupted weights", ["inspect", "{edited}", "--verify"], 2, "model.safetensors: contents differ", damaged_file("checkpoint", "model.safetensors", -16, b"\x00" * 16)),
    Case("inspect weights header", ["inspect", "{edited}"], 2, "model.safetensors: not a safetensors file", damaged_file("checkpoint", "model.safetensors", 0, b"\xff" * 8)),
    Case("inspect kind edited", ["inspect", "{edited}"], 2, "manifest says kind=dataset but the layout looks like a checkpoint", edited_manifest("checkpoint", kind="dataset")),
    Case("inspect kind edited to tokenizer", ["inspect", "{edited}"], 2, "manifest says kind=tokenizer but the layout looks like a checkpoint", edited_manifest("checkpoint", kind="tokenizer")),
    Case("inspect unknown kind", ["inspect", "{edited}"], 2, "manifest says kind=weights, which is not an artifact kind", edited_manifest("tokenizer", kind="weights")),
    Case("stage input kind edited", ["data", "stats", "{edited}"], 2, "manifest says kind=dataset but the layout looks like a tokenizer", edited_manifest("tokenizer", kind="dataset")),
    # --- foundation: recipe loading, CLI, inspect (add cases above this line) ---
    Case("plan nan compute", ["plan", "--compute", "nan"], 2, "--compute nan"),
    Case("plan unknown gpu", ["plan", "--compute", "1e21", "--gpu", "rtx9090"], 2, "unknown GPU"),
    Case("plan mfu above one", ["plan", "--compute", "1e21", "--gpu", "h100-sxm", "--mfu", "1.5"], 2, "--mfu 1.5"),
    Case("plan memory half a shape", ["plan", "memory", "--params", "7B", "--layers", "32"], 2, "give --hidden, --heads"),
    Case("plan memory zero layers", ["plan", "memory", "--params", "7B", "--layers", "0", "--hidden", "4096", "--heads", "32"], 2, "--layers 0"),
    Case("plan memory indivisible heads", ["plan", "memory", "--params", "7B", "--layers", "32", "--hidden", "4095", "--heads", "32"], 2, "not divisible"),
    Case("plan shape zero vocab", ["plan", "shape", "--layers", "2", "--d-model", "64", "--heads", "4", "--vocab", "0"], 2, "vocab_size = 0"),
    Case("plan parallel impossible", ["plan", "parallel", "--params", "700B", "--gpus", "1", "--gpu", "a100-40gb"], 2, "does not fit"),
    Case("plan parallel config is a directory", ["plan", "parallel", "--params", "7B", "--gpus", "8", "--gpu", "a100-80gb", "--write-accelerate-config", "{tmp}"], 2, "must be a file"),
    Case("plan parallel config unwritable", ["plan", "parallel", "--params", "7B", "--gpus", "8", "--gpu", "a100-80gb", "--write-accelerate-config", "/proc/llmforge/a.yaml"], 2, "cannot write"),
    Case("plan frontier png under a file", ["plan", "frontier", "--png", "{recipe}/f.png"], 2, "is a file"),
    Case("plan fit png is a directory", ["plan", "fit", "{recipe}", "--png", "{tmp}"], 2, "must be a file"),
    Case("plan ladder out is a file", ["plan", "ladder", "--base", "{recipe}", "--budgets", "1e13", "--out", "{recipe}"], 2, "must be a directory"),
    Case("plan ladder out holds other files", ["plan", "ladder", "--base", "{recipe}", "--budgets", "1e13", "--out", "{folder}"], 2, "not a ladder", folder_with_a_file),
    Case("plan ladder negative budget", ["plan", "ladder", "--base", "{recipe}", "--budgets", "1e13,-1", "--out", "{tmp}/l"], 2, "--budgets -1"),
    Case("plan ladder zero max epochs", ["plan", "ladder", "--base", "{recipe}", "--budgets", "1e13", "--out", "{tmp}/l", "--max-epochs", "0"], 2, "--max-epochs 0"),
    Case("plan ladder max epochs without tokens", ["plan", "ladder", "--base", "{edited}", "--budgets", "1e13", "--out", "{tmp}/l", "--max-epochs", "4"], 2, "counting epochs needs the base run's tokens", recipe_with({"run": {"out_dir": "runs"}})),
    Case("plan shape decoder layers of a decoder", ["plan", "shape", "--arch", "llama", "--layers", "2", "--d-model", "64", "--heads", "4", "--decoder-layers", "2"], 2, "n_decoder_layers applies to 't5' only"),
    Case("plan shape untied bert", ["plan", "shape", "--arch", "bert", "--layers", "2", "--d-model", "64", "--heads", "4", "--untied"], 2, "cannot be untied"),
    Case("plan shape kv heads of gpt2", ["plan", "shape", "--arch", "gpt2", "--layers", "2", "--d-model", "64", "--heads", "4", "--kv-heads", "2"], 2, "n_kv_heads applies to 'llama' only"),
    # --- plan (add cases above this line) ---
    Case("data source key of another type", ["recipe", "check", "{recipe}", "--set", "data.sources.0.split=test"], 2, "data.sources[0] (shakespeare).split: does not apply to a 'jsonl' source (only to hf)"),
    Case("data path for the stdlib source", ["recipe", "check", "{recipe}", "--set", "data.sources.0.type=python-stdlib"], 2, "path: does not apply to a 'python-stdlib' source"),
    Case("data text_key for a text source", ["recipe", "check", "{recipe}", "--set", "data.sources.0.type=text", "--set", "data.sources.0.text_key=body"], 2, "text_key: does not apply to a 'text' source (only to jsonl, parquet, hf)"),
    Case("data unknown source type", ["recipe", "check", "{recipe}", "--set", "data.sources.0.type=csv"], 2, "data.sources[0] (shakespeare).type: 'csv' is not a source type; expected one of jsonl"),
    Case("data record without the text key", ["data", "build", "{edited}"], 2, "bad.jsonl:2: record without a string 'text' field", data_source_file("bad.jsonl", lambda: b'{"text": "ok"}\n{"body": "no text"}\n', "jsonl")),
    Case("data corrupt gzip jsonl", ["data", "build", "{edited}"], 2, "source bad: a.jsonl.gz: unreadable or corrupt file", data_source_file("a.jsonl.gz", truncated(_gzip), "jsonl")),
    Case("data truncated zstd text", ["data", "build", "{edited}"], 2, "source bad: a.txt.zst: unreadable or corrupt file", data_source_file("a.txt.zst", truncated(_zstd), "text")),
    Case("data slurm without a partition", ["data", "build", "{recipe}", "--set", "data.executor=slurm"], 2, "data.slurm_partition: required"),
    # --- data (add cases above this line) ---
    Case("tokenize vocab_size 1e9", ["tokenize", "train", "{recipe}", "--set", "tokenizer.vocab_size=1e9"], 2, "tokenizer.vocab_size = 1000000000.0: expected an integer"),
    Case("tokenize vocab_size above the bound", ["tokenize", "train", "{recipe}", "--set", "tokenizer.vocab_size=1000000000"], 2, "tokenizer.vocab_size = 1000000000: expected a value less than or equal to 1048576"),
    Case("tokenize min_frequency with unigram", ["tokenize", "train", "{recipe}", "--set", "tokenizer.algorithm=unigram", "--set", "tokenizer.min_frequency=3"], 2, "tokenizer.min_frequency does not apply to algorithm 'unigram'"),
    Case("tokenize whitespace with wordpiece", ["recipe", "check", "{recipe}", "--set", "tokenizer.algorithm=wordpiece", "--set", "tokenizer.whitespace=code"], 2, "tokenizer.whitespace does not apply to algorithm 'wordpiece'"),
    Case("inspect token id beyond the vocabulary", ["inspect", "{edited}", "--verify"], 2, "token 0 has id 65535, not below the vocab_size 300", damaged_file("tokens", "train/00000.bin", 0, b"\xff\xff")),
    Case("pretrain token id beyond the vocabulary", ["pretrain", "{recipe}", "--tokens", "{edited}", "--set", "run.out_dir={tmp}"], 2, "records max_id 65535, not below the vocab_size 300", recorded_max_id(65535)),
    Case("tokenize encode unknown dataset", ["tokenize", "encode", "{recipe}", "--data", "{missing}", "--set", "run.out_dir={tmp}"], 2, "{missing}"),
    Case("tokenize negative sentinels", ["recipe", "check", "{recipe}", "--set", "tokenizer.special_tokens.sentinels=-1"], 2, "tokenizer.special_tokens.sentinels = -1: expected a value greater than or equal to 0"),
    Case("tokenize sentinels above the bound", ["recipe", "check", "{recipe}", "--set", "tokenizer.special_tokens.sentinels=1001"], 2, "tokenizer.special_tokens.sentinels = 1001: expected a value less than or equal to 1000"),
    Case("tokenize sentinels too many for vocab_size", ["tokenize", "train", "{recipe}", "--data", "{dataset}", "--set", "run.out_dir={tmp}", "--set", "tokenizer.special_tokens.sentinels=100"], 2, "tokenizer.special_tokens.sentinels: 100 sentinels do not fit tokenizer.vocab_size 300"),
    Case("tokenize sentinel clashes with the mask token", ["tokenize", "train", "{recipe}", "--data", "{dataset}", "--set", "run.out_dir={tmp}", "--set", "tokenizer.special_tokens.sentinels=2", "--set", "tokenizer.special_tokens.mask=<extra_id_1>"], 2, "tokenizer.special_tokens: <extra_id_1> named twice"),
    # --- tokenize (add cases above this line) ---
    Case("pretrain model vocab_size 1e9", ["pretrain", "{recipe}", "--set", "model.vocab_size=1000000000"], 2, "model.vocab_size = 1000000000: expected a value less than or equal to 4194304"),
    Case("pretrain model too big for this machine", ["pretrain", "{recipe}", "--tokens", "{tokens}", "--set", "run.out_dir={tmp}", "--set", "model.vocab_size=4000000", "--set", "model.d_model=8192"], 2, "GB per process for weights, gradients and AdamW state, this machine has"),
    Case("pretrain rotary_pct with llama", ["pretrain", "{recipe}", "--set", "model.rotary_pct=0.5"], 2, "model.rotary_pct applies to arch = 'gpt-neox' only, not 'llama'"),
    Case("pretrain rope_theta with gpt2", ["recipe", "check", "{recipe}", "--set", "model.arch=gpt2", "--set", "model.rope_theta=5e5"], 2, "model.rope_theta applies to arch = 'llama' or 'gpt-neox' only"),
    Case("pretrain damaged init_from weights", ["pretrain", "{edited}", "--tokens", "{tokens}"], 2, "model.init_from: {weights}: header length", damaged_init_from),
    Case("pretrain unwritable out_dir", ["pretrain", "{recipe}", "--tokens", "{tokens}", "--set", "run.out_dir={tmp}/afile"], 2, "{tmp}/afile is a file, not a directory", file_in_the_way),
    Case("pretrain objective does not fit the arch", ["recipe", "check", "{recipe}", "--set", "model.objective=mlm"], 2, "model.objective = 'mlm' does not fit arch = 'llama', which trains with 'clm'; 'mlm' needs arch = 'bert'"),
    Case("pretrain mlm table for a decoder", ["recipe", "check", "{recipe}", "--set", "model.mlm.probability=0.2"], 2, "[model.mlm] configures objective 'mlm'; this model trains with 'clm'"),
    Case("pretrain whole-word masking with random replacement", ["recipe", "check", "{recipe}", "--set", "model.arch=bert", "--set", "model.mlm.whole_word=true"], 2, "model.mlm.whole_word = true replaces every selected piece by the mask token"),
    Case("pretrain mask fractions above one", ["recipe", "check", "{recipe}", "--set", "model.arch=bert", "--set", "model.mlm.mask_fraction=0.95"], 2, "model.mlm.mask_fraction + model.mlm.random_fraction must not exceed 1"),
    Case("pretrain span corruption without sentinels", ["pretrain", "{recipe}", "--tokens", "{tokens}", "--set", "run.out_dir={tmp}", "--set", "model.arch=t5"], 2, "each needing a sentinel token, but the tokens artifact has 0; set tokenizer.special_tokens.sentinels >="),
    Case("pretrain span noise density 1", ["recipe", "check", "{recipe}", "--set", "model.arch=t5", "--set", "model.span.noise_density=1.0"], 2, "model.span.noise_density"),
    Case("pretrain decoder layers for a decoder-only arch", ["recipe", "check", "{recipe}", "--set", "model.n_decoder_layers=2"], 2, "model.n_decoder_layers applies to arch = 't5' only, not 'llama'"),
    Case("pretrain untied bert", ["recipe", "check", "{recipe}", "--set", "model.arch=bert", "--set", "model.tie_embeddings=false"], 2, "model.tie_embeddings = false: arch 'bert' has a tied output layer only"),
    Case("pretrain t5 with 2 relative buckets", ["recipe", "check", "{recipe}", "--set", "model.arch=t5", "--set", "model.relative_attention_buckets=2"], 2, "model.relative_attention_buckets = 2: expected a value greater than or equal to 4"),
    # --- pretrain (add cases above this line) ---
    Case("eval run damaged safetensors", ["eval", "run", "{edited}", "--tasks", "piqa", "--data-dir", "{shared}"], 2, "{weights}: damaged safetensors file", truncated_weights),
    Case("eval perplexity damaged safetensors", ["eval", "perplexity", "{edited}", "--tokens", "{tokens}"], 2, "{weights}: damaged safetensors file", truncated_weights),
    Case("eval run piqa row missing sol2", ["eval", "run", "{checkpoint}", "--tasks", "piqa", "--data-dir", "{tmp}"], 2, "{tmp}/piqa/valid.jsonl:2: the row lacks the field 'sol2'", written_files(**{                "piqa__valid.jsonl": b'{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": "g", "sol1": "a"}\n', "piqa__valid-labels.lst": b"0\n1\n", })),
    Case("eval ratings not utf-8", ["eval", "ratings", "{tmp}/sheet.csv"], 2, "{tmp}/sheet.csv: not UTF-8 text", written_files(**{"sheet.csv": b"id,prompt,output,rating,comment\n1,caf\xe9,o,4,\n"})),
    Case("eval ratings nan", ["eval", "ratings", "{tmp}/sheet.csv"], 2, "{tmp}/sheet.csv:3: rating 'nan' is not a finite number", written_files(**{"sheet.csv": b"id,prompt,output,rating,comment\n1,p,o,4,\n2,p,o,nan,\n"})),
    Case("eval samples out is a directory", ["eval", "samples", "{checkpoint}", "--prompts", "{tmp}/prompts.txt", "--out", "{tmp}"], 2, "--out {tmp}: is a directory", written_files(**{"prompts.txt": b"To be or not\n"})),
    Case("eval perplexity window above the context", ["eval", "perplexity", "{checkpoint}", "--tokens", "{tokens}", "--window", "100000"], 2, "--window 100000: larger than the model's context (64 tokens"),
    Case("eval run over an existing report", ["eval", "run", "{checkpoint}", "--tasks", "piqa", "--data-dir", "{shared}", "--out", "{folder}"], 2, "--out {folder}: a report already exists; pass --force", folder_with_a_file),
    Case("eval tasks export onto a file", ["eval", "tasks", "--data-dir", "{shared}", "--export", "{tmp}/afile"], 2, "--export {tmp}/afile: is a file", file_in_the_way),
    Case("eval compare png is a directory", ["eval", "compare", "{missing}", "--png", "{tmp}"], 2, "--png {tmp}: is a directory"),
    Case("eval samples on a masked LM", ["eval", "samples", "{tmp}/bert", "--prompts", "{tmp}/prompts.txt", "--out", "{tmp}/sheet.csv"], 2, "{tmp}/bert: eval samples needs a causal LM, but config.json describes a masked LM", written_files(**{"bert__config.json": b'{"model_type": "bert", "architectures": ["BertForMaskedLM"]}', "prompts.txt": b"To be\n"})),
    Case("eval run on an encoder-decoder", ["eval", "run", "{tmp}/t5", "--tasks", "piqa", "--data-dir", "{shared}"], 2, "{tmp}/t5: eval run needs a causal LM, but config.json describes an encoder-decoder", written_files(**{"t5__config.json": b'{"model_type": "t5", "is_encoder_decoder": true}'})),
    Case("eval perplexity stride with a masked LM", ["eval", "perplexity", "{tmp}/bert", "--text", "{tmp}/t.txt", "--stride", "4"], 2, "--stride: applies to causal LMs only", written_files(**{"bert__config.json": b'{"model_type": "bert"}', "t.txt": b"To be\n"})),
    # --- eval (add cases above this line) ---
    Case("finetune base is a causal LM", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/causal: a causal LM only (LlamaForCausalLM)", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "causal"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "causal__config.json": b'{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}', "causal__model.safetensors": b"0", "causal__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'})),
    Case("finetune base without a tokenizer", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/bert: no tokenizer files", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'})),
    Case("finetune base not a model dir", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/data: not a Hugging Face model dir (no config.json)", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "data"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "data__x.txt": b"", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'})),
    Case("finetune row without the label field", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl:2: the row lacks a string or integer field 'label'", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b"}\n'})),
    Case("finetune empty train file", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl: empty file", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b""})),
    Case("finetune one class only", ["finetune", "classify", "{tmp}/ft.toml"], 2, "every row has the label 'x'; classification needs at least two classes", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n'})),
    Case("finetune train file not utf-8", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl:2: not UTF-8 text", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n'})),
    Case("finetune train file not json", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl:2: not a JSON object", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": \n'})),
    Case("finetune val label unseen in train", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/val.jsonl:1: label 'z' does not occur in the train rows", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "val.jsonl"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', "val.jsonl": b'{"text": "c", "label": "z"}\n'})),
    Case("finetune unwritable out", ["finetune", "classify", "{tmp}/ft.toml"], 2, "{tmp}/afile is a file, not a directory", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "bert"\ntrain_file = "train.jsonl"\nval_file = "train.jsonl"\nout = "afile/ft"\n', "bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}", "afile": b"", "train.jsonl": b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'})),
    Case("finetune unknown task", ["recipe", "check", "{recipe}", "--set", "finetune.task=sft"], 2, "finetune.task: 'sft' is not a fine-tuning task; expected one of 'classification', 'instruction'"),
    Case("sft row without a field", ["finetune", "sft", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl:2: no string field 'response' (the alpaca format's output, renamed by finetune.datasets[0].fields.output)", written_files(**{"ft.toml": FT_HEAD + b'chat_template = "chatml"\n' + FT_DATA + b'fields = {output = "response"}\n', **LLAMA, "train.jsonl": b'{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n'})),
    Case("sft empty dataset", ["finetune", "sft", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl: empty dataset", written_files(**{"ft.toml": FT_CHATML, **LLAMA, "train.jsonl": b"\n"})),
    Case("sft columns of no format", ["finetune", "sft", "{tmp}/ft.toml"], 2, "{tmp}/train.jsonl:1: cannot tell the format from the columns question, answer", written_files(**{"ft.toml": FT_CHATML, **LLAMA, "train.jsonl": b'{"question": "a", "answer": "b"}\n'})),
    Case("sft hub name offline", ["finetune", "sft", "{tmp}/ft.toml"], 2, "finetune.datasets[0].path = 'llmforge-tests/no-such-set': not a local file and could not be loaded from the hub", written_files(**{"ft.toml": FT_HEAD + b'chat_template = "chatml"\n[[finetune.datasets]]\npath = "llmforge-tests/no-such-set"\n', **LLAMA})),
    Case("sft on a classification recipe", ["finetune", "sft", "{tmp}/ft.toml"], 2, "finetune.task = 'classification'; `finetune sft` needs task = 'instruction'", written_files(**{"ft.toml": b'[finetune]\ntask = "classification"\nbase = "llama"\ntrain_file = "train.jsonl"\n', **LLAMA})),
    Case("sft encoder base", ["finetune", "sft", "{tmp}/ft.toml"], 2, "{tmp}/llama: model_type 'bert' is not a causal LM", written_files(**{"ft.toml": FT_CHATML, **LLAMA, "llama__config.json": b'{"model_type": "bert"}', "train.jsonl": PAIRS})),
    Case("sft base tokenizer without template", ["finetune", "sft", "{tmp}/ft.toml"], 2, "finetune.chat_template = 'tokenizer': the base model's tokenizer has no chat template", written_files(**{"ft.toml": FT_HEAD + FT_DATA, **LLAMA, "train.jsonl": PAIRS})),
    Case("sft template without generation markers", ["finetune", "sft", "{tmp}/ft.toml"], 2, "plain.jinja chat template has no {{% generation %}}", written_files(**{"ft.toml": FT_HEAD + b'chat_template = "plain.jinja"\n' + FT_DATA, **LLAMA, "plain.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}", "train.jsonl": PAIRS})),
    Case("sft qlora without a gpu", ["finetune", "sft", "{tmp}/ft.toml"], 2, "finetune.method = 'qlora' needs a CUDA GPU and bitsandbytes", written_files(**{"ft.toml": FT_HEAD + b'chat_template = "chatml"\nmethod = "qlora"\n' + FT_DATA, **LLAMA, "train.jsonl": PAIRS})),
    Case("sft max_len above the context", ["finetune", "sft", "{tmp}/ft.toml"], 2, "finetune.max_len = 512: above the base model's context (128 positions)", written_files(**{"ft.toml": FT_CHATML, **LLAMA, "llama__config.json": b'{"model_type": "llama", "max_position_embeddings": 128}', "train.jsonl": PAIRS})),
    Case("sft cot off without a marker", ["recipe", "check", "{tmp}/ft.toml"], 2, "cot = false needs answer_marker", written_files(**{"ft.toml": FT_CHATML + b"cot = false\n"})),
    Case("sft lora table with full method", ["recipe", "check", "{tmp}/ft.toml"], 2, '[finetune.lora] applies only with method = "lora" or "qlora"', written_files(**{"ft.toml": FT_HEAD + b"[finetune.lora]\nr = 4\n" + FT_DATA})),
    Case("sft unknown on_too_long", ["recipe", "check", "{tmp}/ft.toml"], 2, "finetune.on_too_long = \"cut\": expected one of", written_files(**{"ft.toml": FT_HEAD + b'on_too_long = "cut"\n' + FT_DATA})),
    Case("merge missing adapter", ["finetune", "merge", "{missing}"], 2, "{missing}: no such artifact"),
    Case("merge a full checkpoint", ["finetune", "merge", "{checkpoint}", "--out", "{tmp}/m"], 2, "not a LoRA adapter (no adapter_config.json); it is a full model already"),
    Case("docstring pairs missing dataset", ["finetune", "make-docstring-pairs", "--dataset", "{missing}", "--out", "{tmp}/ins"], 2, "{missing}: no such artifact"),
    Case("docstring pairs dataset of another kind", ["finetune", "make-docstring-pairs", "--dataset", "{tokenizer}", "--out", "{tmp}/ins"], 2, "expected a dataset artifact, found a tokenizer artifact"),
    Case("docstring pairs tokens of another kind", ["finetune", "make-docstring-pairs", "--dataset", "{dataset}", "--tokens", "{dataset}", "--out", "{tmp}/ins"], 2, "expected a tokens artifact, found a dataset artifact"),
    Case("docstring pairs from prose", ["finetune", "make-docstring-pairs", "--dataset", "{dataset}", "--out", "{tmp}/ins"], 2, "no function with a docstring fit max_chars 700 / max_body_lines 12"),
    Case("docstring pairs out holds other files", ["finetune", "make-docstring-pairs", "--dataset", "{dataset}", "--out", "{folder}"], 2, "is not an instructions artifact", folder_with_a_file),
    Case("docstring pairs unwritable out", ["finetune", "make-docstring-pairs", "--dataset", "{dataset}", "--out", "{tmp}/afile/ins"], 2, "{tmp}/afile is a file, not a directory", file_in_the_way),
    Case("docstring pairs zero max chars", ["finetune", "make-docstring-pairs", "--dataset", "{dataset}", "--out", "{tmp}/ins", "--max-chars", "0"], 2, "--max-chars"),
    # --- finetune (add cases above this line) ---
    Case("export: not a checkpoint", ["export", "{tmp}", "--out", "{tmp}/hf"], 2, "{tmp}: not an llmforge checkpoint"),
    Case("export: --out exists", ["export", "{checkpoint}", "--out", "{tmp}"], 2, "--out {tmp}: already exists"),
    Case("export: cut weights", ["export", "{edited}", "--out", "{tmp}/hf"], 2, "damaged checkpoint (model.safetensors:", truncated_weights),
    Case("generate on shards only", ["generate", "{tmp}/s", "--prompt", "x"], 2, "{tmp}/s: an FSDP checkpoint that holds shards only; write its weights with `llmforge export", written_files(**{"s__config.json": b'{"model_type": "llama"}', "s__tokenizer.json": b"{}", "s__trainer_state__shards__.metadata": b"0"})),
    Case("generate missing checkpoint", ["generate", "{missing}", "--prompt", "x"], 2, "{missing}: no such model directory"),
    Case("generate on a masked LM", ["generate", "{tmp}/bert", "--prompt", "x"], 2, "{tmp}/bert: generation needs a causal LM (decoder-only), but config.json describes an encoder-only model (bert)", written_files(**{"bert__config.json": b'{"model_type": "bert"}', "bert__model.safetensors": b"0", "bert__tokenizer.json": b"{}"})),
    Case("generate on an encoder-decoder", ["generate", "{tmp}/t5", "--prompt", "x"], 2, "{tmp}/t5: generation needs a causal LM (decoder-only), but config.json describes an encoder-decoder (t5)", written_files(**{"t5__config.json": b'{"model_type": "t5", "is_encoder_decoder": true}'})),
    Case("generate without weights", ["generate", "{tmp}/m", "--prompt", "x"], 2, "{tmp}/m: no model weights", written_files(**{"m__config.json": b'{"model_type": "llama"}', "m__tokenizer.json": b"{}"})),
    Case("generate without a tokenizer", ["generate", "{tmp}/m", "--prompt", "x"], 2, "{tmp}/m: no tokenizer files", written_files(**{"m__config.json": b'{"model_type": "llama"}', "m__model.safetensors": b"0"})),
    Case("generate adapter whose base is gone", ["generate", "{tmp}/lora", "--prompt", "x"], 2, "base_model_name_or_path '/nowhere/base' is not a local model dir", written_files(**{"lora__adapter_config.json": b'{"base_model_name_or_path": "/nowhere/base"}', "lora__adapter_model.safetensors": b"0"})),
    Case("generate negative temperature", ["generate", "{missing}", "--prompt", "x", "--temperature", "-1"], 2, "--temperature must be ≥ 0"),
    Case("generate top-p above 1", ["generate", "{missing}", "--prompt", "x", "--top-p", "1.5"], 2, "--top-p must be in (0, 1]"),
    Case("generate no prompt", ["generate", "{missing}"], 2, "no prompt: give --prompt TEXT (repeatable) or --file FILE"),
    Case("generate empty prompt file", ["generate", "{missing}", "--file", "{tmp}/p.txt"], 2, "--file {tmp}/p.txt: no prompts (the file is empty)", written_files(**{"p.txt": b"\n\n"})),
    Case("generate prompt file row without prompt", ["generate", "{missing}", "--file", "{tmp}/p.jsonl"], 2, "{tmp}/p.jsonl:2: expected a JSON object with a string field 'prompt'", written_files(**{"p.jsonl": b'{"prompt": "a"}\n{"text": "b"}\n'})),
    Case("generate prompt file not utf-8", ["generate", "{missing}", "--file", "{tmp}/p.txt"], 2, "{tmp}/p.txt:2: not UTF-8 text", written_files(**{"p.txt": b"fine\ncaf\xe9\n"})),
    Case("generate system without chat", ["generate", "{missing}", "--prompt", "x", "--system", "Be brief."], 2, "--system: needs --chat"),
    Case("generate prompt above the context", ["generate", "{checkpoint}", "--prompt", "x", "--max-new-tokens", "100"], 2, "prompt 1: 1 tokens + --max-new-tokens 100 exceed the model's context of 64 tokens"),
    Case("generate chat without a template", ["generate", "{edited}", "--prompt", "x", "--chat"], 2, "{edited}: the tokenizer has no chat template; fine-tune with finetune.chat_template or drop --chat", without_chat_template),
    Case("chat without a template", ["chat", "{edited}"], 2, "{edited}: the tokenizer has no chat template", without_chat_template),
    Case("chat max-new-tokens fills the context", ["chat", "{checkpoint}", "--max-new-tokens", "64"], 2, "--max-new-tokens 64: leaves no room for the conversation in the model's context of 64 tokens"),
    # --- generate (add cases above this line) ---
    Case("rlhf dpo row without chosen", ["rlhf", "dpo", "{tmp}/r.toml"], 2, "{tmp}/p.jsonl:2: no 'chosen' field (the pairs format's chosen)", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "rejected": "e"}\n'})),
    Case("rlhf reward row without rejected", ["rlhf", "reward", "{tmp}/r.toml"], 2, "{tmp}/p.jsonl:2: no 'rejected' field (the pairs format's rejected)", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "e"}\n'})),
    Case("rlhf dpo first row without chosen", ["rlhf", "dpo", "{tmp}/r.toml"], 2, "{tmp}/p.jsonl:1: cannot tell the preference format from the columns prompt, rejected", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": b'{"prompt": "a", "rejected": "c"}\n'})),
    Case("rlhf dpo chosen same as rejected", ["rlhf", "dpo", "{tmp}/r.toml"], 2, "{tmp}/p.jsonl:2: chosen and rejected are the same text ('chosen' / 'rejected'); a preference pair must differ", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "same", "rejected": " same"}\n'})),
    Case("rlhf reward margin not a number", ["rlhf", "reward", "{tmp}/r.toml"], 2, "{tmp}/p.jsonl:1: 'margin' = \"big\" is not a finite number", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": b'{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "big"}\n'})),
    Case("rlhf dpo preferences file missing", ["rlhf", "dpo", "{tmp}/r.toml"], 2, "p.jsonl': no such file (expected a .jsonl, .json, .parquet file)", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA})),
    Case("rlhf dpo no preference source", ["rlhf", "dpo", "{tmp}/r.toml"], 2, "rlhf.preferences: no preference source given", written_files(**{"r.toml": RLHF_HEAD, **LLAMA})),
    Case("rlhf dpo recipe without an rlhf table", ["rlhf", "dpo", "{recipe}"], 2, "{recipe}: missing table [rlhf], which this stage needs"),
    Case("rlhf dpo unknown loss", ["rlhf", "dpo", "{tmp}/r.toml", "--set", 'rlhf.dpo.loss_type=["sigmoid", "nope"]'], 2, "loss_type: 'nope' not a DPO loss; expected some of sigmoid", written_files(**{"r.toml": RLHF_RECIPE})),
    Case("rlhf dpo policy not a model dir", ["rlhf", "dpo", "{tmp}/r.toml", "--set", "rlhf.policy={tmp}/data"], 2, "rlhf.policy: {tmp}/data: not a Hugging Face model dir (no config.json)", written_files(**{"r.toml": RLHF_RECIPE, "data__x.txt": b""})),
    Case("rlhf reward base is a masked LM", ["rlhf", "reward", "{tmp}/r.toml"], 2, "rlhf.policy: {tmp}/llama: model_type 'bert' is not a causal LM (an encoder-only model (bert)); a reward model needs the instruction-tuned decoder", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "llama__config.json": b'{"model_type": "bert"}'})),
    Case("rlhf dpo policy without a chat template", ["rlhf", "dpo", "{tmp}/r.toml", "--set", "rlhf.policy={edited}"], 2, "rlhf.policy: {edited}: the tokenizer has no chat template", together(written_files(**{"r.toml": RLHF_RECIPE, "p.jsonl": RLHF_PAIRS}), without_chat_template)),
    Case("rlhf dpo rounds without a labeller", ["rlhf", "dpo", "{tmp}/r.toml", "--rounds", "2"], 2, "--rounds 2: rounds after the first label new pairs; set rlhf.rounds.judge_model", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA, "p.jsonl": RLHF_PAIRS})),
    Case("rlhf ppo reward model of another tokenizer", ["rlhf", "ppo", "{recipe}", "--set", "rlhf.policy={checkpoint}", "--set", "rlhf.ppo.reward_model={edited}"], 2, "rlhf.ppo.reward_model: {edited}: its tokenizer differs from the policy's ({checkpoint})", reward_model_copy(extra_token="<|extra|>")),
    Case("rlhf ppo policy tokenizer does not load", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.reward_model={tmp}/rm"], 2, "{tmp}/llama (the policy): the tokenizer does not load", written_files(**{"r.toml": RLHF_HEAD, **LLAMA, **REWARD_STUB})),
    Case("rlhf ppo kl_coef zero", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.kl_coef=0"], 2, "rlhf.ppo.kl_coef = 0: expected a value greater than 0", written_files(**{"r.toml": RLHF_RECIPE})),
    Case("rlhf ppo kl_coef negative in the recipe", ["rlhf", "ppo", "{edited}"], 2, "{edited}: rlhf.ppo.kl_coef = -0.1: expected a value greater than 0", recipe_with({"rlhf": {"policy": "llama", "ppo": {"kl_coef": -0.1}}})),
    Case("rlhf ppo pretrain checkpoint as reward model", ["rlhf", "ppo", "{recipe}", "--set", "rlhf.policy={checkpoint}", "--set", "rlhf.ppo.reward_model={checkpoint}"], 2, "rlhf.ppo.reward_model: {checkpoint}: not a reward-model checkpoint (its manifest has no stats.model_kind = 'reward_model'; found LlamaForCausalLM)"),
    Case("rlhf grpo pretrain checkpoint as reward model", ["rlhf", "grpo", "{recipe}", "--set", "rlhf.policy={checkpoint}", "--set", "rlhf.grpo.reward_model={checkpoint}"], 2, "rlhf.grpo.reward_model: {checkpoint}: not a reward-model checkpoint"),
    Case("rlhf ppo reward model with two outputs", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.reward_model={tmp}/rm"], 2, "rlhf.ppo.reward_model: {tmp}/rm: a reward model has one output (num_labels = 1)", written_files(**{"r.toml": RLHF_HEAD, **LLAMA, **REWARD_STUB, "rm__config.json": b'{"model_type": "llama", "num_labels": 2}'})),
    Case("rlhf ppo reward manifest not json", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.reward_model={tmp}/rm"], 2, "rlhf.ppo.reward_model: {tmp}/rm/manifest.json: corrupt manifest", written_files(**{"r.toml": RLHF_HEAD, **LLAMA, **REWARD_STUB, "rm__manifest.json": b"{"})),
    Case("rlhf ppo before a reward model is trained", ["rlhf", "ppo", "{tmp}/r.toml"], 2, "rlhf.ppo.reward_model: not set and {tmp}/runs/r/rlhf/reward/checkpoint does not exist; run `llmforge rlhf reward RECIPE` first", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA})),
    Case("rlhf ppo minibatch not dividing the rollout", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.minibatch_size=5"], 2, "minibatch_size = 5 must divide rollout_batch = 16", written_files(**{"r.toml": RLHF_RECIPE})),
    Case("rlhf ppo reward_fn does not import", ["rlhf", "ppo", "{tmp}/r.toml", "--set", "rlhf.ppo.reward_fn=python:nope:f"], 2, "rlhf.ppo.reward_fn = 'python:nope:f': cannot import it (No module named 'nope')", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA})),
    Case("rlhf grpo unknown built-in reward", ["rlhf", "grpo", "{tmp}/r.toml", "--set", "rlhf.grpo.reward_fn=exact"], 2, "rlhf.grpo.reward_fn = 'exact': expected a built-in reward (exact_answer) or python:module:function", written_files(**{"r.toml": RLHF_RECIPE, **LLAMA})),
    Case("rlhf ppo prompt row without prompt", ["rlhf", "ppo", "{tmp}/r.toml"], 2, "{tmp}/q.jsonl:1: no 'prompt' field (the prompt; rlhf.prompts[0].prompt_field names its column", written_files(**{"r.toml": RLHF_HEAD + b'[[rlhf.prompts]]\npath = "q.jsonl"\n\n[rlhf.ppo]\nreward_fn = "exact_answer"\n', **LLAMA, "q.jsonl": b'{"question": "a"}\n'})),
    Case("rlhf make-preference-pairs from a tokenizer", ["rlhf", "make-preference-pairs", "--instructions", "{tokenizer}", "--out", "{tmp}/prefs"], 2, "{tokenizer}: expected a"),
    Case("rlhf make-preference-pairs missing instructions", ["rlhf", "make-preference-pairs", "--instructions", "{missing}", "--out", "{tmp}/prefs"], 2, "{missing}: no such artifact"),
    Case("rlhf make-preference-pairs without instructions", ["rlhf", "make-preference-pairs", "--out", "{tmp}/prefs"], 2, "Missing option '--instructions'"),
    Case("rlhf tax missing before", ["rlhf", "tax", "{missing}", "{checkpoint}", "--tasks", "piqa", "--out", "{tmp}/tax"], 2, "before: {missing}: no such model directory"),
    Case("rlhf tax missing after", ["rlhf", "tax", "{checkpoint}", "{missing}", "--tasks", "piqa", "--out", "{tmp}/tax"], 2, "after: {missing}: no such model directory"),
    Case("rlhf tax unknown task", ["rlhf", "tax", "{checkpoint}", "{edited}", "--tasks", "piqa,nope", "--data-dir", "{shared}", "--out", "{tmp}/tax"], 2, "--tasks: unknown task 'nope' (offline, with --data-dir); known: arc_challenge", edited_manifest("checkpoint")),
    Case("rlhf tax out is a file", ["rlhf", "tax", "{checkpoint}", "{checkpoint}", "--tasks", "piqa", "--out", "{tmp}/afile"], 2, "--out {tmp}/afile: the output must be a directory, but a file is already there", file_in_the_way),
    Case("rlhf tax no tasks", ["rlhf", "tax", "{checkpoint}", "{checkpoint}", "--tasks", ",", "--out", "{tmp}/tax"], 2, "--tasks: no tasks given"),
    Case("rlhf tax eval arg it sets itself", ["rlhf", "tax", "{checkpoint}", "{checkpoint}", "--tasks", "piqa", "--out", "{tmp}/tax", "--eval-arg=--limit=3"], 2, "--eval-arg: --limit=3 is set by rlhf tax itself"),
    # --- rlhf (add cases above this line) ---
]
# fmt: on


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return World(tmp_path_factory.mktemp("world"))


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(world, tmp_path, case):
    values = {"tmp": str(tmp_path), "missing": str(tmp_path / "missing"), "shared": str(SHARED_DATA)}
    values.update(world.placeholders(case.argv))
    if case.prepare:
        values.update(case.prepare(world, tmp_path))
    argv = [a.format(**values) for a in case.argv]
    r = run_cli(*argv, env={"COLUMNS": "80"})
    message = r.stderr.strip()
    assert r.returncode == case.rc, f"{argv}: exit {r.returncode}\n{message[-3000:]}"
    assert "Traceback" not in message, message[-3000:]
    assert case.phrase.format(**values) in message, message[-3000:]
    if case.rc == 2:
        assert r.stdout == ""
        (line,) = message.splitlines()  # one line, even at 80 columns
        assert line.startswith("error: "), message
    elif case.rc == 1:  # a runtime failure still says what went wrong, after any log lines
        assert any(line.startswith("error: ") for line in message.splitlines()), message

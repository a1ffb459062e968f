"""`llmforge tokenize train`: every algorithm trains and loads through transformers; byte-level BPE
round-trips; bad settings and inputs exit 2."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError
from tokenize_datasets import prose_docs, stdlib_docs, write_dataset, write_recipe

from llmforge.console import UserError, configure
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.train import train_tokenizer

configure(quiet=True)

CODE = 'def f(x):\n    """Doc."""\n    if x:\n\t\treturn {"k": [1, 2]}  # ok\n    return None\n'
SNIPPET = "def __init__(self):\n    return None\n"
PROSE_EMOJI = "Naïve café — “quoted” text 🙂🚀 and 日本語 with ZWJ 👩‍💻.\n"


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    docs = stdlib_docs(15) + [
        {"text": PROSE_EMOJI * 20 + "plain English words here. " * 50, "id": "e", "source": "p"}
    ]
    return write_dataset(root / "dataset", [docs])


def _train(tmp_path, dataset, **kw):
    cfg = TokenizerConfig(val_fraction=0, **kw)
    out = tmp_path / f"tok-{kw.get('algorithm', 'bpe')}"
    train_tokenizer(cfg, dataset, out)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out), out


@pytest.mark.parametrize("whitespace", ["gpt2", "code"])
def test_byte_level_bpe_round_trips_code_and_emoji_prose(tmp_path, mixed_dataset, whitespace):
    tok, out = _train(tmp_path, mixed_dataset, vocab_size=600, whitespace=whitespace, split_digits=True)
    for text in (CODE, PROSE_EMOJI, "never seen: ẞ ☃ \U0001f9ec\n\n  x=12345"):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "manifest.json"} <= {
        p.name for p in out.iterdir()
    }
    assert tok.unk_token_id not in tok.encode(PROSE_EMOJI, add_special_tokens=False)
    # split_digits: every digit is its own token
    digits = tok.encode("x = 98765", add_special_tokens=False)
    assert [tok.decode([i]) for i in digits][-5:] == list("98765")


def test_special_tokens_and_chat_template(tmp_path, mixed_dataset):
    tok, out = _train(tmp_path, mixed_dataset, vocab_size=400)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
        "<|bos|>",
        "<|eos|>",
        "<|pad|>",
        "<|unk|>",
        "<|mask|>",
    ]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 1, 2)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    assert text == "<|user|>\nhi<|eos|>\n<|assistant|>\nyo<|eos|>\n"
    ids = tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    assert tok.convert_ids_to_tokens(ids)[0] == "<|user|>"
    assert tok.decode(ids).endswith("<|assistant|>\n")
    smap = json.loads((out / "special_tokens_map.json").read_text())
    assert smap["eos_token"] == "<|eos|>"


@pytest.mark.parametrize("algorithm", ["wordpiece", "unigram", "char", "word"])
def test_other_algorithms_train_and_load_through_transformers(tmp_path, mixed_dataset, algorithm):
    tok, _ = _train(tmp_path, mixed_dataset, algorithm=algorithm, vocab_size=500)
    assert tok.eos_token == "<|eos|>"
    ids = tok.encode(SNIPPET, add_special_tokens=False)
    assert ids and tok.unk_token_id not in ids
    text = tok.decode(ids)
    if algorithm in ("unigram", "char", "word"):
        assert text == SNIPPET
    else:  # WordPiece drops whitespace by design
        assert "".join(text.split()) == "".join(SNIPPET.split())


def test_unigram_byte_fallback_covers_unseen_characters(tmp_path, mixed_dataset):
    tok, _ = _train(tmp_path, mixed_dataset, algorithm="unigram", vocab_size=500)
    ids = tok.encode("☃ᚠ", add_special_tokens=False)
    assert tok.unk_token_id not in ids
    assert any(t.startswith("<0x") for t in tok.convert_ids_to_tokens(ids))
    assert tok.decode(ids).strip() == "☃ᚠ"


def test_word_level_lowercases_and_unknowns_become_unk(tmp_path, mixed_dataset):
    tok, _ = _train(tmp_path, mixed_dataset, algorithm="word", vocab_size=300, lowercase=True)
    assert tok.unk_token_id in tok.encode("zyxwvutsrq", add_special_tokens=False)
    assert tok.encode("RETURN Self", add_special_tokens=False) == tok.encode(
        "return self", add_special_tokens=False
    )


def test_vocab_smaller_than_alphabet_is_a_user_error(tmp_path, mixed_dataset):
    with pytest.raises(UserError, match="vocab_size: 100 is smaller than the 264"):
        train_tokenizer(TokenizerConfig(vocab_size=100), mixed_dataset, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_declared_bos_is_the_eos_that_separates_training_documents(tmp_path, mixed_dataset):
    """Token shards separate documents with EOS and never hold <|bos|>, yet lm-eval prefixes rolling
    log-likelihood with the tokenizer's bos: the declared bos_token is EOS (GPT-2's convention)."""
    from transformers import PreTrainedTokenizerFast

    _, out = _train(tmp_path, mixed_dataset, vocab_size=400)
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    assert tok.bos_token_id == tok.eos_token_id == 1
    assert tok.pad_token_id == 2
    assert tok.convert_tokens_to_ids("<|bos|>") == 0  # kept in the vocabulary: ids do not shift
    assert tok.decode([0, 1], skip_special_tokens=True) == ""  # and still special
    assert tok("x = 1")["input_ids"] == tok("x = 1", add_special_tokens=False)["input_ids"]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    masked = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assistant = [i for i, m in zip(masked["input_ids"], masked["assistant_masks"], strict=True) if m]
    assert tok.decode(assistant) == "yo<|eos|>"
    assert json.loads((out / "special_tokens_map.json").read_text())["bos_token"] == "<|eos|>"


@pytest.mark.parametrize(
    ("algorithm", "key", "value"),
    [
        ("unigram", "min_frequency", 5),
        ("char", "min_frequency", 2),
        ("word", "whitespace", "code"),
        ("unigram", "whitespace", "gpt2"),
        ("char", "split_digits", True),
    ],
)
def test_key_the_algorithm_ignores_is_refused(tmp_path, cli, mixed_dataset, algorithm, key, value):
    with pytest.raises(ValidationError, match=f"tokenizer.{key} does not apply to algorithm '{algorithm}'"):
        TokenizerConfig(algorithm=algorithm, **{key: value})
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", algorithm=algorithm, **{key: value})
    r = cli("recipe", "check", str(recipe))
    assert r.returncode == 2 and f"tokenizer.{key} does not apply" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


def test_keys_left_to_the_algorithm_default_round_trip():
    """Keys that depend on the algorithm default to None, so a dumped table (`recipe show`) loads again."""
    for algorithm in ("bpe", "wordpiece", "unigram", "char", "word"):
        cfg = TokenizerConfig(algorithm=algorithm)
        assert TokenizerConfig.model_validate(cfg.model_dump(exclude_none=True)) == cfg
    assert TokenizerConfig(algorithm="bpe").min_count == 2
    assert TokenizerConfig(algorithm="char").min_count == 1


def test_huge_vocab_size_is_refused_in_the_schema(tmp_path, cli, mixed_dataset):
    """vocab_size = 1e9 used to reach the Rust trainer, which aborted the process (exit 134)."""
    with pytest.raises(ValidationError, match="less than or equal to 1048576"):
        TokenizerConfig(vocab_size=10**9)
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", vocab_size=10**9)
    r = cli("tokenize", "train", str(recipe), "--data", str(mixed_dataset))
    assert r.returncode == 2, r.stderr
    assert "tokenizer.vocab_size = 1000000000: expected a value less than or equal to 1048576" in r.stderr


def test_sample_bytes_bounds_the_training_sample(tmp_path, mixed_dataset):
    cfg = TokenizerConfig(vocab_size=300, sample_bytes=20_000, val_fraction=0)
    report = train_tokenizer(cfg, mixed_dataset, tmp_path / "tok")
    total, n = 0, 0
    for doc in stdlib_docs(15):  # the sample stops at the first document that reaches the bound
        total, n = total + len(doc["text"].encode()), n + 1
        if total >= 20_000:
            break
    assert (report["sample_bytes"], report["sample_documents"]) == (total, n)
    assert n < 15


def test_cli_train_writes_artifact_and_json(tmp_path, cli, mixed_dataset):
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", vocab_size=300)
    r = cli("tokenize", "train", str(recipe), "--data", str(mixed_dataset), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["vocab_size"] == 300
    assert json.loads((tmp_path / "runs/t/tokenizer/manifest.json").read_text())["kind"] == "tokenizer"


def test_cli_bad_inputs_exit_2(tmp_path, cli, mixed_dataset):
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", vocab_size=10)
    r = cli("tokenize", "train", str(recipe), "--data", str(mixed_dataset))
    assert r.returncode == 2 and "vocab_size" in r.stderr and "Traceback" not in r.stderr
    empty = write_dataset(tmp_path / "empty", [[{"text": "", "id": "a"}]])
    recipe = write_recipe(tmp_path / "r2.toml", tmp_path / "runs", vocab_size=300)
    r = cli("tokenize", "train", str(recipe), "--data", str(empty))
    assert r.returncode == 2 and "empty dataset" in r.stderr
    r = cli("tokenize", "train", str(recipe), "--data", str(tmp_path / "nope"))
    assert r.returncode == 2 and "nope" in r.stderr


def test_code_tokenizer_beats_prose_tokenizer_on_code_and_vice_versa(tmp_path, shared_data):
    """Training data shapes the vocabulary: each tokenizer packs more bytes per token into its own domain."""
    from llmforge.tokenizer.compare import tokenizer_metrics

    shakespeare = (shared_data / "tinyshakespeare/input.txt").read_text()
    code = write_dataset(tmp_path / "code", [stdlib_docs(40)])
    prose = write_dataset(tmp_path / "prose", [prose_docs(shakespeare[:600_000])])
    cfg = TokenizerConfig(vocab_size=1000, val_fraction=0)
    train_tokenizer(cfg, code, tmp_path / "tok-code")
    train_tokenizer(cfg, prose, tmp_path / "tok-prose")
    held_code = stdlib_docs(20, skip=100)
    held_prose = prose_docs(shakespeare[600_000:])
    bpt = {
        (tok, name): tokenizer_metrics(tmp_path / f"tok-{tok}", docs)["bytes_per_token"]
        for tok in ("code", "prose")
        for name, docs in (("code", held_code), ("prose", held_prose))
    }
    assert bpt["code", "code"] > bpt["prose", "code"] * 1.1
    assert bpt["prose", "prose"] > bpt["code", "prose"] * 1.1


def test_retraining_on_the_same_data_gives_the_same_content_hash(tmp_path, mixed_dataset):
    from llmforge.artifacts import read_manifest

    hashes = []
    for name in ("a", "b"):
        train_tokenizer(TokenizerConfig(vocab_size=400, val_fraction=0), mixed_dataset, tmp_path / name)
        hashes.append(read_manifest(tmp_path / name)["content_hash"])
    assert hashes[0] == hashes[1]  # the training time lives in timings.json, outside the hash
    assert json.loads((tmp_path / "a" / "timings.json").read_text())["seconds"] > 0


SENTINELS = 4


def _sentinel_ids(tok, n=SENTINELS):
    return tok.convert_tokens_to_ids([f"<extra_id_{k}>" for k in range(n)])


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
def test_sentinels_take_the_top_ids_in_t5_order(tmp_path, mixed_dataset, algorithm):
    """`<extra_id_0>` is the highest id, `<extra_id_1>` the next lower, … and the total is vocab_size."""
    tok, out = _train(
        tmp_path, mixed_dataset, algorithm=algorithm, vocab_size=500, special_tokens={"sentinels": SENTINELS}
    )
    assert len(tok) == 500
    assert _sentinel_ids(tok) == [499, 498, 497, 496]
    assert set(_sentinel_ids(tok)) <= set(tok.all_special_ids)  # AutoTokenizer knows them as special
    assert tok.encode("<extra_id_0>", add_special_tokens=False) == [499]
    ids = tok.encode("if x:<extra_id_3> return<extra_id_1>", add_special_tokens=False)
    assert ids.count(496) == 1 and ids[-1] == 498  # never split nor merged with their neighbours
    assert "<extra_id_3>" in tok.decode(ids) and "<extra_id" not in tok.decode(ids, skip_special_tokens=True)
    assert tok.convert_ids_to_tokens([5, 6, 7]) == ["<|system|>", "<|user|>", "<|assistant|>"]
    smap = json.loads((out / "special_tokens_map.json").read_text())
    assert smap["additional_special_tokens"][3:] == [f"<extra_id_{k}>" for k in range(SENTINELS)]


@pytest.mark.parametrize(("algorithm", "vocab_size"), [("char", 2000), ("word", 20000)])
def test_sentinels_follow_a_vocabulary_shorter_than_asked(tmp_path, mixed_dataset, algorithm, vocab_size):
    """char and word learn only the distinct symbols of the sample: the sentinels come right after them."""
    tok, _ = _train(
        tmp_path,
        mixed_dataset,
        algorithm=algorithm,
        vocab_size=vocab_size,
        special_tokens={"sentinels": SENTINELS},
    )
    size = len(tok)
    assert size < vocab_size
    assert _sentinel_ids(tok) == [size - 1 - k for k in range(SENTINELS)]
    assert max(tok.get_vocab().values()) == size - 1
    assert tok.encode("<extra_id_2>", add_special_tokens=False) == [size - 3]


def test_sentinels_are_added_on_top_of_the_default_build(tmp_path, mixed_dataset):
    """sentinels = 0 (the default) builds today's tokenizer; N sentinels leave the pieces that a build of
    vocab_size - N learns untouched and only add their N tokens above them."""
    for name, kw in {
        "default": {"vocab_size": 400},
        "zero": {"vocab_size": 400, "special_tokens": {"sentinels": 0}},
        "smaller": {"vocab_size": 394},
        "six": {"vocab_size": 400, "special_tokens": {"sentinels": 6}},
    }.items():
        train_tokenizer(TokenizerConfig(val_fraction=0, **kw), mixed_dataset, tmp_path / name)
    spec = {name: json.loads((tmp_path / name / "tokenizer.json").read_text()) for name in ("default", "six")}
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / "zero" / f).read_bytes() == (tmp_path / "default" / f).read_bytes()
    assert "extra_id" not in (tmp_path / "default" / "tokenizer.json").read_text()
    assert len(spec["default"]["added_tokens"]) == 8
    assert spec["six"]["model"] == json.loads((tmp_path / "smaller" / "tokenizer.json").read_text())["model"]
    added = spec["six"]["added_tokens"]
    assert added[:8] == spec["default"]["added_tokens"]
    assert [(t["id"], t["content"], t["special"]) for t in added[8:]] == [
        (394 + i, f"<extra_id_{5 - i}>", True) for i in range(6)
    ]


def test_min_vocab_size_counts_the_sentinels(tmp_path, mixed_dataset):
    from llmforge.tokenizer.build import min_vocab_size

    cfg = TokenizerConfig(vocab_size=264 + 30, val_fraction=0, special_tokens={"sentinels": 30})
    assert min_vocab_size(cfg) == min_vocab_size(TokenizerConfig()) + 30 == 294
    report = train_tokenizer(cfg, mixed_dataset, tmp_path / "tok")  # the smallest vocabulary still trains
    assert report["vocab_size"] == 294


@pytest.mark.parametrize(
    ("special_tokens", "vocab_size", "message"),
    [
        (
            {"sentinels": 100},
            300,
            "tokenizer.special_tokens.sentinels: 100 sentinels do not fit tokenizer.vocab_size 300 next to "
            "the 264 tokens that bpe needs for its special tokens and base alphabet: at most 36 fit",
        ),
        (
            {"sentinels": 10},
            200,
            "tokenizer.vocab_size: 200 is smaller than the 274 tokens that bpe needs for its special tokens, "
            "10 sentinels and base alphabet",
        ),
        ({"sentinels": 2, "mask": "<extra_id_1>"}, 300, "tokenizer.special_tokens: <extra_id_1> named twice"),
    ],
)
def test_sentinels_that_do_not_fit_or_clash_are_user_errors(
    tmp_path, mixed_dataset, special_tokens, vocab_size, message
):
    cfg = TokenizerConfig(vocab_size=vocab_size, special_tokens=special_tokens)
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        train_tokenizer(cfg, mixed_dataset, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


@pytest.mark.parametrize(
    ("value", "bound"), [(-1, "greater than or equal to 0"), (1001, "less than or equal")]
)
def test_sentinel_count_out_of_range_is_refused_in_the_schema(value, bound):
    with pytest.raises(ValidationError, match=bound):
        TokenizerConfig(special_tokens={"sentinels": value})


def test_a_sentinel_already_in_the_vocabulary_is_refused():
    """A trained piece named `<extra_id_0>` would keep its low id: refused rather than moved silently."""
    from tokenizers import Tokenizer, models

    from llmforge.tokenizer.build import finish

    tok = Tokenizer(models.WordLevel({"<|unk|>": 0, "<extra_id_0>": 1, "a": 2}, unk_token="<|unk|>"))
    with pytest.raises(
        UserError, match=r"<extra_id_0> is already a token of the trained vocabulary \(id 1\)"
    ):
        finish(tok, TokenizerConfig(algorithm="word", special_tokens={"sentinels": 1}))

"""Output steering (llmforge/generation/steering.py) through the shared generation layer and `llmforge generate`
/ `chat --steer`, on the tiny llama of tests/eval_tiny_model.py trained for a few hundred steps on
tinyshakespeare: enough for its samples to be full of " the", " and", " you" — words to ban and bias."""

from __future__ import annotations

import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA, run_cli
from eval_tiny_model import build_tiny_model

from llmforge.cli import main
from llmforge.console import UserError
from llmforge.generation.settings import SamplingSettings
from llmforge.generation.steering import (
    Steering,
    load_steering,
    steer_prompt,
    steering_kwargs,
    word_forms,
    word_token_ids,
)

SAMPLED = SamplingSettings(max_new_tokens=96, temperature=1.0)
SEEDS = range(8)
PROMPT = "ROMEO:\n"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Two shared cores: torch's two threads fight over them and tiny matmuls run far slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_briefly(model_dir: Path, text_file: Path, steps: int = 200) -> None:
    """A few AdamW steps of next-token prediction on the text, so the model samples real (frequent) words."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor(tokenizer(text_file.read_text(encoding="utf-8")[:100_000])["input_ids"])
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 65, (16,), generator=gen)
        batch = torch.stack([ids[s : s + 64] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(model_dir)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    text = SHARED_DATA / "tinyshakespeare" / "input.txt"
    out = build_tiny_model(tmp_path_factory.mktemp("steer") / "tiny", text)
    _train_briefly(out, text)
    return out


@pytest.fixture(scope="session")
def loaded(tiny):
    from llmforge.generation.loading import load_for_generation

    return load_for_generation(tiny, "cpu")


@pytest.fixture(scope="session")
def chat_model(tiny, tmp_path_factory) -> Path:
    """The trained tiny model with the ChatML template installed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.generation.chat_template import BUILTIN, install

    out = tmp_path_factory.mktemp("steer") / "chat"
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


@pytest.fixture(scope="session")
def unsteered(loaded) -> list[str]:
    """The tiny model's sampled texts, one per seed, without steering."""
    return _texts(loaded, None)


def _texts(loaded, steering, prompt: str = PROMPT, seeds=SEEDS) -> list[str]:
    from llmforge.generation.sampling import generate

    return [
        generate(loaded, [prompt], SamplingSettings(**{**SAMPLED.__dict__, "seed": s}), steering=steering)[
            0
        ].text
        for s in seeds
    ]


def _count(word: str, texts: list[str]) -> int:
    """Occurrences of `word` as a whole word, in any letter case."""
    pattern = re.compile(rf"(?<![A-Za-z']){re.escape(word)}(?![A-Za-z'])", re.IGNORECASE)
    return sum(len(pattern.findall(t)) for t in texts)


def _frequent_words(texts: list[str], n: int) -> list[tuple[str, int]]:
    words = Counter(w for t in texts for w in re.findall(r"[a-z']+", t.lower()) if len(w) > 1)
    return words.most_common(n)


def _config(tmp_path: Path, text: str, name: str = "steer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        rc = 0
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------ the config file


def test_load_steering_reads_every_key(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "words.txt").write_text("  gall \n\nwormwood\nhot pocket\nfoul\n", encoding="utf-8")
    path = _config(tmp_path, '''
banned_words = ["foul", " villain "]
banned_words_file = "lists/words.txt"   # relative to this file, not to the current directory
prefix = "Speak gently.\\n"

[token_bias]
love = 2.5
hate = -5
''')  # fmt: skip
    s = load_steering(path)
    assert s.banned_words == ("foul", "villain", "gall", "wormwood", "hot pocket")  # stripped, deduplicated
    assert s.token_bias == {"love": 2.5, "hate": -5.0} and isinstance(s.token_bias["hate"], float)
    assert (s.prefix, s.source) == ("Speak gently.\n", str(path))
    d = json.loads(json.dumps(s.to_dict()))
    assert d == {"source": str(path), "prefix": "Speak gently.\n", "n_banned_words": 5,
                 "banned_words": list(s.banned_words), "token_bias": {"love": 2.5, "hate": -5.0}}  # fmt: skip
    assert load_steering(_config(tmp_path, 'prefix = "Be kind. "', "p.toml")) == Steering(
        prefix="Be kind. ", source=str(tmp_path / "p.toml")
    )


def test_the_ldnoobw_list_loads_as_a_banned_words_file(tmp_path, shared_data):
    en = shared_data / "ldnoobw" / "en"
    s = load_steering(_config(tmp_path, f'banned_words_file = "{en}"'))
    lines = [line.strip() for line in en.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert s.banned_words == tuple(dict.fromkeys(lines)) and len(s.banned_words) > 300


@pytest.mark.parametrize(
    "text, phrase",
    [
        ('banned_words = ["a"]\nbaned_words = ["b"]', "unknown key 'baned_words' (valid keys: banned_words, "
         "banned_words_file, prefix, token_bias)"),
        ('banned_words = "darn"', "banned_words: expected a list of strings, got 'darn' (str)"),
        ('banned_words = ["darn", 3]', "banned_words[1]: expected a non-empty string, got 3 (int)"),
        ('banned_words = ["darn", "  "]', "banned_words[1]: expected a non-empty string"),
        ('banned_words_file = "nowhere.txt"', "banned_words_file: {tmp}/nowhere.txt: no such file"),
        ('banned_words_file = "blank.txt"', "banned_words_file: {tmp}/blank.txt: no words in it"),
        ("banned_words_file = 7", "banned_words_file: expected a file path (a string), got 7 (int)"),
        ("prefix = 1.5", "prefix: expected a string, got 1.5 (float)"),
        ('token_bias = ["love"]', "token_bias: expected a table of word = number, got ['love'] (list)"),
        ('[token_bias]\nlove = "up"', "token_bias.love: expected a finite number"),
        ("[token_bias]\nlove = true", "token_bias.love: expected a finite number"),
        ("[token_bias]\nhate = -inf", "token_bias.hate: expected a finite number (a logit bias; to ban the word "
         "use banned_words), got -inf (float)"),
        ("[token_bias]\nLove = 1.0\nlove = 2.0", "token_bias.love: the same word as token_bias.Love"),
        ("", "steers nothing; give banned_words, banned_words_file, prefix or a [token_bias] table"),
        ('banned_words = []\nprefix = ""', "steers nothing"),
        ("banned_words = [", "not valid TOML"),
    ],
    ids=["unknown-key", "words-type", "word-type", "blank-word", "missing-file", "empty-file", "file-type",
         "prefix-type", "bias-type", "bias-str", "bias-bool", "bias-inf", "bias-case-twice", "empty", "no-effect",
         "bad-toml"],
)  # fmt: skip
def test_bad_configs_are_refused_naming_the_file_and_key(tmp_path, text, phrase):
    (tmp_path / "blank.txt").write_text("\n  \n")
    path = _config(tmp_path, text)
    with pytest.raises(UserError) as e:
        load_steering(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and phrase.format(tmp=tmp_path) in message, message
    assert "\n" not in message


def test_a_missing_or_non_utf8_config_is_refused(tmp_path):
    with pytest.raises(UserError, match=re.escape(f"{tmp_path}/gone.toml: steering config not found")):
        load_steering(tmp_path / "gone.toml")
    with pytest.raises(UserError, match="is a directory, not a steering config"):
        load_steering(tmp_path)
    (tmp_path / "latin1.toml").write_bytes('prefix = "caf\xe9"'.encode("latin-1"))
    with pytest.raises(UserError, match="latin1.toml: not a UTF-8 text file"):
        load_steering(tmp_path / "latin1.toml")
    (tmp_path / "w.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(UserError, match=re.escape(f"banned_words_file: {tmp_path}/w.txt:2: not UTF-8 text")):
        load_steering(_config(tmp_path, 'banned_words_file = "w.txt"'))


@pytest.mark.parametrize(
    "text, phrase",
    [
        ('banned_words = ["a"]\nwords = ["b"]', "unknown key 'words' (valid keys: banned_words"),
        ('banned_words = "darn"', "banned_words: expected a list of strings"),
        ('banned_words_file = "missing.txt"', "banned_words_file: {tmp}/missing.txt: no such file"),
        ("# nothing here\n", "steers nothing"),
    ],
    ids=["unknown-key", "wrong-type", "missing-file", "empty"],
)
def test_bad_steer_configs_exit_2_through_the_cli_before_the_model_loads(tmp_path, text, phrase):
    """The checkpoint does not even exist: the config is refused first, in one line, with exit 2."""
    path = _config(tmp_path, text)
    r = run_cli("generate", str(tmp_path / "no-model"), "-p", "x", "--steer", str(path), timeout=120)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and phrase.format(tmp=tmp_path) in line, line


# ------------------------------------------------------------------------------------------ tokens


def test_word_forms_cover_case_and_a_leading_space():
    assert word_forms("love") == ["love", " love", "Love", " Love", "LOVE", " LOVE"]
    assert word_forms("Hot pocket") == ["Hot pocket", " Hot pocket", "hot pocket", " hot pocket",
                                        "HOT POCKET", " HOT POCKET"]  # fmt: skip
    assert word_forms("I") == ["I", " I", "i", " i"]


def test_steering_kwargs_give_transformers_the_token_sequences(loaded):
    tok = loaded.tokenizer
    assert steering_kwargs(None, tok) == {} and steering_kwargs(Steering(prefix="x"), tok) == {}
    kw = steering_kwargs(Steering(banned_words=("the", "hot pocket"), token_bias={"love": -2}), tok)
    assert set(kw) == {"bad_words_ids", "sequence_bias"}
    banned = kw["bad_words_ids"]
    for form in word_forms("the") + word_forms("hot pocket"):
        assert tok(form, add_special_tokens=False)["input_ids"] in banned
    assert any(len(ids) > 1 for ids in banned)  # phrases (and "t"+"he") are multi-token sequences
    assert len(banned) == len({tuple(ids) for ids in banned})
    assert sorted(map(tuple, (ids for ids, _ in kw["sequence_bias"]))) == sorted(
        {tuple(tok(f, add_special_tokens=False)["input_ids"]) for f in word_forms("love")}
    )
    assert {b for _, b in kw["sequence_bias"]} == {-2.0}
    again = steering_kwargs(Steering(banned_words=("the", "hot pocket"), token_bias={"love": -2}), tok)
    assert again == kw and again["bad_words_ids"] is not kw["bad_words_ids"]  # a fresh copy each call


def test_words_a_tokenizer_cannot_encode_are_refused():
    """A BPE without byte fallback: with an unknown token it encodes what it lacks as <unk>, without one it
    drops it (a word then tokenises to nothing, or to tokens spelling another word)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    for unk in ("<unk>", None):
        raw = Tokenizer(models.BPE(unk_token=unk))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        raw.train_from_iterator(["the cat sat on the mat"] * 5,
                                trainer=trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"]))  # fmt: skip
        tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
        assert word_token_ids(tok, ["cat", "the mat"]) == [
            [tok("cat", add_special_tokens=False)["input_ids"]],
            [tok("the mat", add_special_tokens=False)["input_ids"]],
        ]
        with pytest.raises(
            UserError, match=r"^s\.toml: banned word 'naïve': this tokenizer cannot encode it"
        ):
            steering_kwargs(Steering(banned_words=("cat", "naïve"), source="s.toml"), tok)
        expected = "tokenises to nothing" if unk is None else "cannot encode it"
        with pytest.raises(UserError, match=rf"^s\.toml: token_bias '🖕': .*{expected}"):
            steering_kwargs(Steering(token_bias={"🖕": 1.0}, source="s.toml"), tok)


# ------------------------------------------------------------------------------------------ generation


def test_banned_words_never_appear_in_sampled_text(loaded, unsteered):
    frequent = [w for w, n in _frequent_words(unsteered, 4) if n >= 3]
    assert len(frequent) >= 3, _frequent_words(unsteered, 10)
    steering = Steering(banned_words=tuple(frequent))
    assert any(len(ids) > 1 for ids in steering_kwargs(steering, loaded.tokenizer)["bad_words_ids"])
    steered = _texts(loaded, steering)
    for word in frequent:
        assert _count(word, unsteered) >= 3
        assert _count(word, steered) == 0, (word, steered)
    assert all(len(t) > 100 for t in steered)  # still text, not an early stop


def test_banned_words_stay_out_of_chat_replies(chat_loaded):
    from llmforge.generation.sampling import chat_reply

    history = [{"role": "user", "content": "What say you?"}]

    def replies(steering):
        return [chat_reply(chat_loaded, history, SamplingSettings(max_new_tokens=48, temperature=1.0, seed=s),
                           steering=steering).text for s in SEEDS]  # fmt: skip

    plain = replies(None)
    frequent = [w for w, n in _frequent_words(plain, 3) if n >= 2]
    assert frequent, plain
    steered = replies(Steering(banned_words=tuple(frequent)))
    assert all(_count(w, plain) >= 2 and _count(w, steered) == 0 for w in frequent), steered


def test_a_token_bias_moves_a_words_frequency(loaded, unsteered):
    word, n = _frequent_words(unsteered, 1)[0]
    lowered = _texts(loaded, Steering(token_bias={word: -4.0}))
    raised = _texts(loaded, Steering(token_bias={word: 2.0}))
    assert _count(word, lowered) < n / 3, (word, n, lowered)
    assert _count(word, raised) > 2 * n, (word, n, raised)


def test_a_zero_bias_or_a_prefix_free_steering_changes_nothing_for_a_seed(loaded, unsteered):
    """With a bias of 0 transformers' SequenceBiasLogitsProcessor runs but adds nothing: the seeded draws, and
    so the texts, are those without steering. A bias of 1 does change them."""
    word = _frequent_words(unsteered, 1)[0][0]
    zero = Steering(token_bias={word: 0.0})
    assert "sequence_bias" in steering_kwargs(zero, loaded.tokenizer)
    assert _texts(loaded, zero) == unsteered
    assert _texts(loaded, Steering(token_bias={word: 1.0})) != unsteered


def test_the_prefix_goes_before_every_prompt(loaded):
    from llmforge.generation.sampling import generate

    steering = Steering(prefix="JULIET:\nO Romeo, Romeo!\n")
    assert steer_prompt(steering, PROMPT) == "JULIET:\nO Romeo, Romeo!\nROMEO:\n"
    assert steer_prompt(None, PROMPT) == PROMPT and steer_prompt(Steering(banned_words=("x",)), "p") == "p"
    settings = SamplingSettings(max_new_tokens=24, temperature=0)
    steered = generate(loaded, [PROMPT, "Wherefore"], settings, steering=steering)
    by_hand = generate(loaded, [steering.prefix + PROMPT, steering.prefix + "Wherefore"], settings)
    plain = generate(loaded, [PROMPT], settings)
    assert [g.text for g in steered] == [g.text for g in by_hand] and steered[0].text != plain[0].text
    assert [g.prompt for g in steered] == [PROMPT, "Wherefore"]  # the prompt as given is recorded
    assert steered[0].prompt_tokens == by_hand[0].prompt_tokens > plain[0].prompt_tokens


def test_the_prefix_goes_before_the_system_text_in_a_chat(chat_loaded):
    from llmforge.generation.sampling import chat_reply, encode_prompts, render_chat

    steering = Steering(prefix="Be gentle. ")
    s = SamplingSettings(max_new_tokens=8, temperature=0)
    assert encode_prompts(chat_loaded, ["Hi"], s, chat=True, system="Be brief.", steering=steering) == \
        encode_prompts(chat_loaded, ["Hi"], s, chat=True, system="Be gentle. Be brief.")  # fmt: skip
    assert encode_prompts(chat_loaded, ["Hi"], s, chat=True, steering=steering) == \
        encode_prompts(chat_loaded, ["Hi"], s, chat=True, system="Be gentle. ")  # fmt: skip
    user = [{"role": "user", "content": "Hi"}]
    with_system = [{"role": "system", "content": "Be brief."}, *user]
    for history, system in ((user, "Be gentle. "), (with_system, "Be gentle. Be brief.")):
        g = chat_reply(chat_loaded, history, s, steering=steering)
        expected = render_chat(chat_loaded, [{"role": "system", "content": system}, *user])
        assert g.prompt_tokens == len(expected) and g.prompt == "Hi"
        assert g.text == chat_reply(chat_loaded, [{"role": "system", "content": system}, *user], s).text
    assert history[0] == {"role": "system", "content": "Be brief."}  # the caller's history is left alone


# ------------------------------------------------------------------------------------------ CLI


def test_generate_steer_end_to_end(capsys, tmp_path, tiny, loaded, unsteered):
    banned = [w for w, _ in _frequent_words(unsteered, 3)]
    path = _config(tmp_path, f'banned_words = {json.dumps(banned)}\nprefix = ""\n[token_bias]\nlove = 1.5\n')
    rc, out, err = _main(capsys, "generate", str(tiny), "-p", PROMPT, "-p", "JULIET:\n", "-n", str(SAMPLED.max_new_tokens), "-t", "1",
                         "--seed", "3", "--steer", str(path), "--device", "cpu", "--json")  # fmt: skip
    assert rc == 0, err
    rows = json.loads(out)
    from llmforge.generation.sampling import generate

    expected = generate(loaded, [PROMPT, "JULIET:\n"], SamplingSettings(**{**SAMPLED.__dict__, "seed": 3}),
                        steering=load_steering(path))  # fmt: skip
    assert rows == [g.to_dict() for g in expected]
    assert all(_count(w, [r["text"]]) == 0 for w in banned for r in rows)
    assert f"steering from {path}: {len(banned)} banned words, 1 biased words" in err
    rc, plain, _ = _main(capsys, "generate", str(tiny), "-p", PROMPT, "-p", "JULIET:\n", "-n", str(SAMPLED.max_new_tokens), "-t", "1",
                         "--seed", "3", "--device", "cpu", "--json")  # fmt: skip
    assert rc == 0 and json.loads(plain) != rows


def test_generate_steer_streams_the_steered_text(capsys, tmp_path, tiny, loaded):
    from llmforge.generation.sampling import generate

    path = _config(tmp_path, 'prefix = "JULIET:\\nO Romeo!\\n"\nbanned_words = ["the"]')
    rc, out, err = _main(capsys, "generate", str(tiny), "-p", PROMPT, "-n", "32", "-t", "0", "--steer", str(path),
                         "--device", "cpu")  # fmt: skip
    assert rc == 0, err
    (g,) = generate(loaded, [PROMPT], SamplingSettings(max_new_tokens=32, temperature=0),
                    steering=load_steering(path))  # fmt: skip
    assert out == g.text + "\n"
    assert g.prompt_tokens == len(loaded.tokenizer("JULIET:\nO Romeo!\n" + PROMPT)["input_ids"])


def test_chat_steer_applies_to_every_reply(capsys, monkeypatch, tmp_path, chat_model, chat_loaded):
    from llmforge.generation.sampling import chat_reply

    path = _config(tmp_path, 'prefix = "Be gentle."\nbanned_words = ["the", "and"]')
    monkeypatch.setattr(sys, "stdin", io.StringIO("What say you?\n/exit\n"))
    rc, out, err = _main(capsys, "chat", str(chat_model), "-t", "1", "--seed", "4", "-n", "24", "--stop", r"\n",
                         "--steer", str(path), "--device", "cpu")  # fmt: skip
    assert rc == 0, err
    expected = chat_reply(chat_loaded, [{"role": "user", "content": "What say you?"}],
                          SamplingSettings(max_new_tokens=24, temperature=1.0, seed=4, stop=("\n",)),
                          steering=load_steering(path))  # fmt: skip
    assert out == expected.text + "\n"
    assert f"{expected.prompt_tokens} prompt +" in err and "steering from" in err

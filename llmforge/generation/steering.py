"""Output steering at generation time: words the model must never produce, words made more or less likely,
and a steering prompt put in front of every prompt. Shared by `llmforge generate` / `chat` (`--steer CONFIG`)
and the bias probes. Torch-free: a config is read and checked before any model loads.

A steering config is a TOML file (every key optional, at least one effect needed):

    banned_words = ["darn", "heck"]
    banned_words_file = "words.txt"      # one word or phrase per line, relative to this file
    prefix = "You are a kind and careful assistant.\\n"
    [token_bias]
    love = 2.0                           # added to the word's logits: > 0 more likely, < 0 less
    hate = -5.0

It reaches the model through transformers' own options of `model.generate`: `bad_words_ids`
(NoBadWordsLogitsProcessor) and `sequence_bias` (SequenceBiasLogitsProcessor). Their behaviour in transformers
5.24 fixes what a ban and a bias mean:
- A word stands for its forms (`word_forms`): as written, lower case, capitalised, upper case, each with and
  without a leading space. Each form is tokenised on its own (no special tokens); that token sequence is what
  is banned or biased.
- A one-token form is banned (logit −∞) or biased at every step. A longer form is hit only at its last token,
  at a step where the tokens before it were just generated: a banned phrase can be begun but never completed,
  and a bias on a multi-token word acts on its last token once the model has begun the word.
- Only the tokenizer's own split of each form is covered: a model could spell a banned word out of other
  pieces ("t" + "he"). A trained model rarely does, having only seen the tokenizer's splits.
- A form without a leading space also matches where a longer word is split at it ("ass" in "cl" + "ass").
- The bias is added to the logits first, before the repetition penalty, temperature and top-k/top-p (the order
  of generate's processors): at temperature T it moves a token's log-odds against the others by bias / T.
- A form whose tokens do not decode back to it, whitespace aside, is left out (a tokenizer without byte
  fallback drops or replaces characters it cannot encode: those tokens are not the text they would stand for).
  A word with no form left, or one that tokenises to nothing, is a UserError.

The prefix is plain text joined to the prompt as given (end it with a separator such as a newline); in a
chat it goes in front of the system message, or is the system message when there is none.
"""

from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.console import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = ("banned_words", "banned_words_file", "prefix", "token_bias")


@dataclass(frozen=True)
class Steering:
    """What to steer: `banned_words` are never generated (in any of their `word_forms`), `token_bias` adds a
    bias to the logits of each word's forms, `prefix` goes in front of every prompt (plain) or of the system
    text (chat). `source` is the config file it came from."""

    banned_words: tuple[str, ...] = ()
    token_bias: dict[str, float] = field(default_factory=dict)
    prefix: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "banned_words", tuple(self.banned_words))
        object.__setattr__(self, "token_bias", {w: float(b) for w, b in self.token_bias.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for reports."""
        return {
            "source": self.source,
            "prefix": self.prefix,
            "n_banned_words": len(self.banned_words),
            "banned_words": list(self.banned_words),
            "token_bias": dict(self.token_bias),
        }

    @property
    def where(self) -> str:
        return self.source or "steering"


# ------------------------------------------------------------------------------------------ the config file


def load_steering(path: str | Path) -> Steering:
    """The steering config at `path`; UserError naming the file and key for anything wrong with it (missing
    or unreadable file, bad TOML, an unknown key, a wrong type, a missing or empty banned_words_file, no
    effect at all)."""
    path = Path(path)
    data = _read_toml(path)
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (valid keys: {', '.join(KEYS)})")
    words = _word_list(path, data.get("banned_words", []))
    if "banned_words_file" in data:
        words += _word_file(path, data["banned_words_file"])
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str):
        raise UserError(f"{path}: prefix: expected a string, got {_shown(prefix)}")
    bias = _bias_table(path, data.get("token_bias", {}))
    if not (words or bias or prefix):
        raise UserError(
            f"{path}: steers nothing; give banned_words, banned_words_file, prefix or a [token_bias] table"
        )
    return Steering(tuple(dict.fromkeys(words)), bias, prefix, str(path))


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a steering config (give a .toml file)")
    if not path.is_file():
        raise UserError(f"{path}: steering config not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None


def _word_list(path: Path, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise UserError(f"{path}: banned_words: expected a list of strings, got {_shown(value)}")
    words = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"{path}: banned_words[{i}]: expected a non-empty string, got {_shown(item)}")
        words.append(item.strip())
    return words


def _word_file(path: Path, value: Any) -> list[str]:
    """The words of banned_words_file (relative to the config's folder), one per non-blank line."""
    if not isinstance(value, str) or not value:
        raise UserError(f"{path}: banned_words_file: expected a file path (a string), got {_shown(value)}")
    file = Path(value) if Path(value).is_absolute() else path.absolute().parent / value
    if not file.is_file():
        raise UserError(f"{path}: banned_words_file: {file}: no such file")
    words = []
    with open(file, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UserError(f"{path}: banned_words_file: {file}:{n}: not UTF-8 text") from None
            if line:
                words.append(line)
    if not words:
        raise UserError(f"{path}: banned_words_file: {file}: no words in it (one word or phrase per line)")
    return words


def _bias_table(path: Path, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise UserError(f"{path}: token_bias: expected a table of word = number, got {_shown(value)}")
    bias: dict[str, float] = {}
    seen: dict[str, str] = {}
    for word, b in value.items():
        key = f"{path}: token_bias.{word}" if word.strip() else f"{path}: token_bias.{word!r}"
        if not word.strip():
            raise UserError(f"{key}: the word is empty")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise UserError(
                f"{key}: expected a finite number (a logit bias; to ban the word use banned_words), "
                f"got {_shown(b)}"
            )
        folded = word.strip().lower()
        if folded in seen:  # both would bias the same forms
            raise UserError(
                f"{key}: the same word as token_bias.{seen[folded]} (a bias covers every case form)"
            )
        seen[folded] = word
        bias[word.strip()] = float(b)
    return bias


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# ------------------------------------------------------------------------------------------ applying it


def steer_prompt(steering: Steering | None, prompt: str) -> str:
    """`prompt` with the steering prefix in front (unchanged without steering or prefix)."""
    if steering is None or not steering.prefix:
        return prompt
    return steering.prefix + prompt


def steer_system(steering: Steering | None, system: str | None) -> str | None:
    """A chat's system text with the steering prefix in front; the prefix alone without system text."""
    return steer_prompt(steering, system or "") or system


def steer_messages(steering: Steering | None, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """`messages` with the prefix in front of the leading system message, or a system message of its own."""
    if steering is None or not steering.prefix:
        return messages
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": steer_prompt(steering, messages[0].get("content", ""))}
        return [first, *messages[1:]]
    return [{"role": "system", "content": steering.prefix}, *messages]


def word_forms(word: str) -> list[str]:
    """The spellings a ban or bias on `word` covers: as written, lower case, capitalised, upper case, each
    with and without a leading space (duplicates dropped, in that order)."""
    lower = word.lower()
    cases = dict.fromkeys([word, lower, lower[:1].upper() + lower[1:], word.upper()])
    return list(dict.fromkeys(f for c in cases for f in (c, " " + c)))


def word_token_ids(tokenizer: Any, words: list[str], where: str = "steering") -> list[list[list[int]]]:
    """Per word, the token sequences of its forms that decode back to the form (`_same`); UserError naming the
    first word with none. All forms of all words go through the tokenizer in one batch (lists are long)."""
    forms = [word_forms(w) for w in words]
    flat = [f for fs in forms for f in fs]
    encoded = [list(ids) for ids in tokenizer(flat, add_special_tokens=False)["input_ids"]] if flat else []
    decoded = tokenizer.batch_decode(encoded, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    out, i = [], 0
    for word, fs in zip(words, forms, strict=True):
        ids, texts = encoded[i : i + len(fs)], decoded[i : i + len(fs)]
        i += len(fs)
        if not any(ids):
            raise UserError(f"{where} {word!r}: tokenises to nothing with this tokenizer")
        kept = list(
            {tuple(t): t for f, t, d in zip(fs, ids, texts, strict=True) if t and _same(d, f)}.values()
        )
        if not kept:
            raise UserError(
                f"{where} {word!r}: this tokenizer cannot encode it (its tokens decode as {texts[0]!r}); "
                "drop it from the config"
            )
        out.append(kept)
    return out


def _same(decoded: str, form: str) -> bool:
    """Whether tokens decoding as `decoded` spell `form`, whitespace aside (SentencePiece adds or drops a
    leading space; a tokenizer without a decoder puts spaces between tokens)."""
    return "".join(decoded.split()) == "".join(form.split())


def steering_kwargs(steering: Steering | None, tokenizer: Any) -> dict[str, Any]:
    """Extra keyword arguments for `model.generate`: `bad_words_ids` for the banned words and `sequence_bias`
    for the biased ones (nothing without steering, or for a prefix alone). UserError naming the config and the
    word when a word cannot be tokenised. Remembered per tokenizer, as a probe asks once per prompt."""
    if steering is None or not (steering.banned_words or steering.token_bias):
        return {}
    key = (steering.banned_words, tuple(steering.token_bias.items()), len(tokenizer))
    try:
        known = _CACHE.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        known = {}
    if key not in known:
        known[key] = _token_kwargs(steering, tokenizer)
    banned, biased = known[key]
    kwargs: dict[str, Any] = {}
    if banned:  # fresh lists each time: generate keeps what it is given
        kwargs["bad_words_ids"] = [list(ids) for ids in banned]
    if biased:
        kwargs["sequence_bias"] = [[list(ids), b] for ids, b in biased.items()]
    return kwargs


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, tuple]] = weakref.WeakKeyDictionary()


def _token_kwargs(
    steering: Steering, tokenizer: Any
) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], float]]:
    """The banned token sequences and the biased ones with their biases (a form shared by two biased words
    takes the first one's bias)."""
    where = steering.where
    banned = {
        tuple(t): None
        for seqs in word_token_ids(tokenizer, list(steering.banned_words), f"{where}: banned word")
        for t in seqs
    }
    words = list(steering.token_bias)
    biased: dict[tuple[int, ...], float] = {}
    for word, seqs in zip(words, word_token_ids(tokenizer, words, f"{where}: token_bias"), strict=True):
        for ids in seqs:
            biased.setdefault(tuple(ids), steering.token_bias[word])
    return list(banned), biased

"""Assemble an untrained `tokenizers.Tokenizer` and its trainer for each algorithm of `[tokenizer]`.

Pipelines:
- bpe: byte-level BPE as in GPT-2 (Radford et al. 2019, §2.2): every byte is in the base alphabet, so no
  text is ever unknown and decode(encode(x)) == x.
- wordpiece: BERT's WordPiece (Devlin et al. 2019, §3) with `##` continuation pieces.
- unigram: SentencePiece's unigram LM (Kudo 2018, §3) with byte fallback: characters outside the
  vocabulary become `<0xNN>` byte pieces instead of the unknown token.
- char / word: one token per character / per word, whitespace run or punctuation run (the rest → unk).

Sentinels (`special_tokens.sentinels` = N > 0, for span corruption): the trainer learns vocab_size - N
pieces and `finish` adds `<extra_id_N-1>` … `<extra_id_0>` as special tokens above them, so `<extra_id_0>`
has the highest id (T5's order) and the total stays vocab_size. A trainer that learns fewer pieces than
asked (char and word stop at the distinct symbols of the sample; a small sample can stop bpe early too)
leaves the sentinels right after its vocabulary: they always hold the highest ids, not always vocab_size - 1.
"""

from __future__ import annotations

from typing import Any

from llmforge.console import UserError
from llmforge.tokenizer.config import TokenizerConfig

# Pre-tokenisation regex of GPT-4's cl100k encoding (tiktoken), which keeps a newline run apart from the
# indentation that follows it and caps digit runs at three; used for whitespace = "code".
CODE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
WORD_PATTERN = r"\w+|[^\w\s]+|\s+"
BYTE_FALLBACK_PIECES = [f"<0x{b:02X}>" for b in range(256)]


def special_token_list(cfg: TokenizerConfig) -> list[str]:
    """The special tokens that take the first ids, in order (the sentinels, at the top, are not in it)."""
    st = cfg.special_tokens
    tokens = [st.bos, st.eos, st.pad, st.unk, st.mask, *(st.role_token(r) for r in st.chat_roles)]
    named = tokens + st.sentinel_tokens()
    duplicates = {t for t in named if named.count(t) > 1}
    if duplicates:
        raise UserError(f"tokenizer.special_tokens: {', '.join(sorted(duplicates))} named twice")
    return tokens


def min_vocab_size(cfg: TokenizerConfig) -> int:
    """The smallest vocabulary the algorithm can hold: special tokens, sentinels and the base alphabet."""
    base = {"bpe": 256, "unigram": 256 + 1, "wordpiece": 1, "char": 1, "word": 1}[cfg.algorithm]
    return len(special_token_list(cfg)) + cfg.special_tokens.sentinels + base


def new_tokenizer(cfg: TokenizerConfig) -> tuple[Any, Any]:
    """(untrained Tokenizer, trainer) for `cfg`; UserError when vocab_size cannot hold the alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    _check_vocab_size(cfg)
    specials = special_token_list(cfg)
    learned_size = cfg.vocab_size - cfg.special_tokens.sentinels
    unk = cfg.special_tokens.unk
    algo = cfg.algorithm
    if algo == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = _byte_level_pre_tokenizer(cfg)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=learned_size,
            min_frequency=cfg.min_count,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif algo == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.pre_tokenizer = _with_digits(cfg, pre_tokenizers.BertPreTokenizer())
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=learned_size,
            min_frequency=cfg.min_count,
            special_tokens=specials,
            show_progress=False,
        )
    elif algo == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = _with_digits(cfg, pre_tokenizers.Metaspace())
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
        trainer = trainers.UnigramTrainer(
            vocab_size=learned_size - len(BYTE_FALLBACK_PIECES),
            special_tokens=specials,
            unk_token=unk,
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.WordLevel(unk_token=unk))
        pattern = r"[\s\S]" if algo == "char" else WORD_PATTERN
        from tokenizers import Regex

        tok.pre_tokenizer = _with_digits(cfg, pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(
            vocab_size=learned_size,
            min_frequency=cfg.min_count,
            special_tokens=specials,
            show_progress=False,
        )
    tok.normalizer = _normalizer(cfg)
    return tok, trainer


def _check_vocab_size(cfg: TokenizerConfig) -> None:
    """UserError naming the key to change when vocab_size cannot hold the specials, sentinels and alphabet."""
    needed = min_vocab_size(cfg)
    sentinels = cfg.special_tokens.sentinels
    if cfg.vocab_size >= needed:
        return
    if sentinels and cfg.vocab_size >= needed - sentinels:
        raise UserError(
            f"tokenizer.special_tokens.sentinels: {sentinels} sentinels do not fit tokenizer.vocab_size "
            f"{cfg.vocab_size} next to the {needed - sentinels} tokens that {cfg.algorithm} needs for its "
            f"special tokens and base alphabet: at most {cfg.vocab_size - needed + sentinels} fit"
        )
    what = f"special tokens, {sentinels} sentinels" if sentinels else "special tokens"
    raise UserError(
        f"tokenizer.vocab_size: {cfg.vocab_size} is smaller than the {needed} tokens that "
        f"{cfg.algorithm} needs for its {what} and base alphabet"
    )


def finish(tok: Any, cfg: TokenizerConfig) -> Any:
    """Post-training fix-ups: unigram gets its 256 byte-fallback pieces (the trainer has no such option),
    then the sentinels go on top of every algorithm's vocabulary."""
    if cfg.algorithm == "unigram":
        tok = _with_byte_fallback(tok)
    return _with_sentinels(tok, cfg)


def _with_sentinels(tok: Any, cfg: TokenizerConfig) -> Any:
    """Add the sentinels as special tokens (never split, never merged) above every learned id, in reverse
    so that `<extra_id_0>` gets the highest id."""
    names = cfg.special_tokens.sentinel_tokens()
    if not names:
        return tok
    from tokenizers import AddedToken

    # A name already in the vocabulary would keep its id instead of taking one at the top. The trainers do
    # not learn such pieces even from data full of "<extra_id_0>" (tried), yet ids must not silently move.
    learned = tok.get_vocab(with_added_tokens=True)
    for name in names:
        if name in learned:
            raise UserError(
                f"tokenizer.special_tokens.sentinels: {name} is already a token of the trained vocabulary "
                f"(id {learned[name]}), so it cannot take an id at the top"
            )
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in reversed(names)])
    return tok


def _with_byte_fallback(tok: Any) -> Any:
    import json

    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    known = {piece for piece, _ in vocab}
    floor = min(score for _, score in vocab) - 1.0
    vocab.extend([piece, floor] for piece in BYTE_FALLBACK_PIECES if piece not in known)
    spec["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(spec))


def _normalizer(cfg: TokenizerConfig) -> Any:
    from tokenizers import normalizers

    steps = {"none": [], "nfc": [normalizers.NFC()], "nfkc": [normalizers.NFKC()]}[cfg.normalization]
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps) if steps else None


def _with_digits(cfg: TokenizerConfig, pre: Any) -> Any:
    from tokenizers import pre_tokenizers

    if not cfg.split_digits:
        return pre
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre])


def _byte_level_pre_tokenizer(cfg: TokenizerConfig) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if cfg.whitespace != "code":
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pre = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CODE_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    return _with_digits(cfg, pre)

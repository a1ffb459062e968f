"""Assemble an untrained `tokenizers.Tokenizer` and its trainer for each algorithm of `[tokenizer]`.

Pipelines:
- bpe: byte-level BPE as in GPT-2 (Radford et al. 2019, §2.2): every byte is in the base alphabet, so no
  text is ever unknown and decode(encode(x)) == x.
- wordpiece: BERT's WordPiece (Devlin et al. 2019, §3) with `##` continuation pieces.
- unigram: SentencePiece's unigram LM (Kudo 2018, §3) with byte fallback: characters outside the
  vocabulary become `<0xNN>` byte pieces instead of the unknown token.
- char / word: one token per character / per word, whitespace run or punctuation run (the rest → unk).
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
    st = cfg.special_tokens
    tokens = [st.bos, st.eos, st.pad, st.unk, st.mask, *(st.role_token(r) for r in st.chat_roles)]
    duplicates = {t for t in tokens if tokens.count(t) > 1}
    if duplicates:
        raise UserError(f"tokenizer.special_tokens: {', '.join(sorted(duplicates))} named twice")
    return tokens


def min_vocab_size(cfg: TokenizerConfig) -> int:
    """The smallest vocabulary the algorithm can hold: special tokens plus the fixed base alphabet."""
    base = {"bpe": 256, "unigram": 256 + 1, "wordpiece": 1, "char": 1, "word": 1}[cfg.algorithm]
    return len(special_token_list(cfg)) + base


def new_tokenizer(cfg: TokenizerConfig) -> tuple[Any, Any]:
    """(untrained Tokenizer, trainer) for `cfg`; UserError when vocab_size cannot hold the alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if cfg.vocab_size < min_vocab_size(cfg):
        raise UserError(
            f"tokenizer.vocab_size: {cfg.vocab_size} is smaller than the {min_vocab_size(cfg)} tokens that "
            f"{cfg.algorithm} needs for its special tokens and base alphabet"
        )
    specials = special_token_list(cfg)
    unk = cfg.special_tokens.unk
    algo = cfg.algorithm
    if algo == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = _byte_level_pre_tokenizer(cfg)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
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
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_count,
            special_tokens=specials,
            show_progress=False,
        )
    elif algo == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = _with_digits(cfg, pre_tokenizers.Metaspace())
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size - len(BYTE_FALLBACK_PIECES),
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
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_count,
            special_tokens=specials,
            show_progress=False,
        )
    tok.normalizer = _normalizer(cfg)
    return tok, trainer


def finish(tok: Any, cfg: TokenizerConfig) -> Any:
    """Post-training fix-ups: unigram gets its 256 byte-fallback pieces (the trainer has no such option)."""
    if cfg.algorithm != "unigram":
        return tok
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

"""Masked-LM masking (`llmforge.objectives.masking`): the configured selection and replacement rates on a large
sample, special tokens never selected, masks a function of (seed, position) alone, whole words masked entirely.

Statistical tolerances: the masks are fixed by the seeds, so these tests are not flaky; the bound is 5 binomial
standard errors, sqrt(p (1 - p) / n), of the measured share, which a correct rule with any seeds meets
(P(|z| > 5) ~ 6e-7) and a wrong rate (0.15 against 0.3, 0.8 against 0.5) misses by dozens of them."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from tokenize_datasets import prose_docs, stdlib_docs, write_dataset

from llmforge.console import configure
from llmforge.objectives.base import IGNORE as IGNORE_INDEX
from llmforge.objectives.masking import Masker, MaskingRule
from llmforge.tokenizer.config import TokenizerConfig
from llmforge.tokenizer.train import train_tokenizer

configure(quiet=True)

WINDOW = 256
ROWS = 800  # 800 x 256 = 204,800 tokens
WHOLE_WORD = MaskingRule(whole_word=True, mask_fraction=1.0, random_fraction=0.0)
PROSE = "Plain English prose, with commas; and full stops. A second sentence follows here.\n\n" * 40


@pytest.fixture(scope="module")
def documents():
    """~330 KB of ASCII code and prose (ASCII: every token then decodes to text of its own)."""
    docs = [d for d in stdlib_docs(40) if d["text"].isascii()] + prose_docs(PROSE, chunk=800)
    return [d["text"][:12_000] for d in docs]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory, documents):
    """algorithm -> directory of a small tokenizer trained on `documents`, built when first asked for."""
    root = tmp_path_factory.mktemp("masking")
    dataset = write_dataset(
        root / "dataset", [[{"text": t, "id": str(i), "source": "s"} for i, t in enumerate(documents)]]
    )
    built = {}

    def get(algorithm: str):
        if algorithm not in built:
            vocab = 120 if algorithm == "char" else 500
            configure(quiet=True)  # the conftest fixture resets it after each test
            cfg = TokenizerConfig(algorithm=algorithm, vocab_size=vocab, val_fraction=0, sample_bytes=100_000)
            train_tokenizer(cfg, dataset, root / algorithm)
            built[algorithm] = root / algorithm
        return built[algorithm]

    return get


def token_texts(tok) -> list[str]:
    """The text each vocabulary entry adds after a word, by the tokenizer's own decoder (an oracle apart
    from the token-string conventions 'Ġ', '▁', '<0x0A>' that the masker reads)."""
    anchor = next(i for i in range(len(tok)) if tok.decode([i]).isalpha())
    head = tok.decode([anchor])
    return [tok.decode([anchor, i])[len(head) :] for i in range(len(tok))]


def encoded_stream(tokenizer_dir, documents):
    """(ids, begins_word) over the documents joined by EOS, as the tokenize stage packs them, with the
    reference word segmentation: for WordPiece its pre-tokenizer's words; otherwise, from the decoded text,
    a word is a run of non-whitespace with the whitespace before it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    wordpiece = tok.backend_tokenizer.model.__class__.__name__ == "WordPiece"
    texts = token_texts(tok)
    ids, begins = [], []
    for doc in documents:
        enc = tok(doc, add_special_tokens=False)
        words = enc.word_ids()
        for i, token in enumerate(enc.input_ids):
            if i == 0:
                begins.append(True)
            elif wordpiece:
                begins.append(words[i] != words[i - 1])
            else:
                prev, cur = texts[enc.input_ids[i - 1]], texts[token]
                begins.append(bool(prev.strip()) and (prev[-1].isspace() or cur[0].isspace()))
        ids += [*enc.input_ids, tok.eos_token_id]
        begins.append(False)
    return np.array(ids), np.array(begins)


def windows(stream: np.ndarray, rows: int = ROWS) -> torch.Tensor:
    """`rows` windows of WINDOW tokens cut from the stream (repeated if it is short)."""
    need = rows * WINDOW
    return torch.from_numpy(np.resize(stream, need).reshape(rows, WINDOW)).long()


@pytest.fixture(scope="module")
def bpe_rows(tokenizers, documents):
    ids, _ = encoded_stream(tokenizers("bpe"), documents)
    return windows(ids)


def seeds_for(rows: torch.Tensor, seed: int = 7, first: int = 0) -> list[tuple[int, int]]:
    return [(seed, first + i) for i in range(rows.shape[0])]


def assert_share(count: int, n: int, p: float, what: str) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= 5 * se, (
        f"{what}: {count}/{n} = {count / n:.4f}, expected {p} +- {5 * se:.4f}"
    )


@pytest.mark.parametrize(
    ("probability", "mask_fraction", "random_fraction"), [(0.15, 0.8, 0.1), (0.3, 0.5, 0.25)]
)
def test_selected_share_and_mask_random_kept_split_match_the_rule(
    tokenizers, bpe_rows, probability, mask_fraction, random_fraction
):
    masker = Masker(tokenizers("bpe"), MaskingRule(probability, mask_fraction, random_fraction))
    inputs, labels = masker.mask(bpe_rows, seeds_for(bpe_rows))
    candidates = ~torch.isin(bpe_rows, torch.tensor(sorted(masker.special_ids)))
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    assert_share(n, int(candidates.sum()), probability, "selected among non-special tokens")
    # A random replacement equal to the original (1 in ~500) reads as kept, one equal to the mask id as
    # masked: a bias of ~2e-4, far inside the tolerance.
    as_mask = int((selected & (inputs == masker.mask_id)).sum())
    kept = int((selected & (inputs == bpe_rows)).sum())
    assert_share(as_mask, n, mask_fraction, "replaced by the mask token")
    assert_share(n - as_mask - kept, n, random_fraction, "replaced by a random token")
    assert_share(kept, n, 1 - mask_fraction - random_fraction, "kept")


@pytest.mark.parametrize("rule", [MaskingRule(mask_fraction=1.0, random_fraction=0.0), WHOLE_WORD])
def test_labels_hold_the_original_ids_exactly_at_selected_positions(tokenizers, bpe_rows, rule):
    """Every selected token becomes the mask token under these rules, so the inputs show the selection."""
    masker = Masker(tokenizers("bpe"), rule)
    assert not (bpe_rows == masker.mask_id).any()
    before = bpe_rows.clone()
    inputs, labels = masker.mask(bpe_rows, seeds_for(bpe_rows))
    assert torch.equal(bpe_rows, before), "the rows passed in must be left as they are"
    selected = inputs == masker.mask_id
    assert selected.any()
    assert torch.equal(labels[selected], bpe_rows[selected])
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert torch.equal(inputs[~selected], bpe_rows[~selected])
    assert inputs.dtype == labels.dtype == torch.int64 and inputs.shape == bpe_rows.shape


@pytest.mark.parametrize("rule", [MaskingRule(probability=1.0), MaskingRule(1.0, 1.0, 0.0, whole_word=True)])
def test_special_tokens_are_never_selected(tokenizers, bpe_rows, rule):
    """Probability 1 selects every other token, so each special id left out is the rule, not chance."""
    masker = Masker(tokenizers("bpe"), rule)
    rows = bpe_rows[:100].clone()
    specials = torch.tensor(sorted(masker.special_ids))
    assert {masker.mask_id, 0, 1, 2, 3} <= masker.special_ids and len(specials) >= 8  # <|bos|> ... chat roles
    where = torch.rand(rows.shape, generator=torch.Generator().manual_seed(0)) < 0.2
    rows[where] = specials[
        torch.randint(len(specials), (int(where.sum()),), generator=torch.Generator().manual_seed(1))
    ]
    inputs, labels = masker.mask(rows, seeds_for(rows))
    is_special = torch.isin(rows, specials)
    assert (labels[is_special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[is_special], rows[is_special])
    assert (labels[~is_special] != IGNORE_INDEX).all()


@pytest.mark.parametrize("rule", [MaskingRule(), WHOLE_WORD])
def test_a_rows_mask_depends_only_on_its_seed_not_on_its_batch_rank_or_global_rng(tokenizers, bpe_rows, rule):
    masker = Masker(tokenizers("bpe"), rule)
    rows = bpe_rows[:8]
    seeds = seeds_for(rows, first=40)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    whole = masker.mask(rows, seeds)
    assert torch.equal(torch.get_rng_state(), state), "masking drew from the global RNG"
    torch.manual_seed(2)
    # two DDP ranks with interleaved rows, one row at a time (a resumed run), the batch reversed
    for part in ([0, 2, 4, 6], [1, 3, 5, 7], [5], list(range(7, -1, -1))):
        got = masker.mask(rows[part], [seeds[i] for i in part])
        assert torch.equal(got[0], whole[0][part]) and torch.equal(got[1], whole[1][part])
    for other_seeds in (seeds_for(rows, first=41), seeds_for(rows, seed=8, first=40)):
        other = masker.mask(rows, other_seeds)[1] != IGNORE_INDEX
        assert not torch.equal(other, whole[1] != IGNORE_INDEX), "the mask must follow the seed and position"


@pytest.mark.parametrize("algorithm", ["bpe", "unigram", "wordpiece", "char", "word"])
def test_whole_word_masking_takes_every_word_entirely_or_not_at_all(tokenizers, documents, algorithm):
    directory = tokenizers(algorithm)
    masker = Masker(directory, WHOLE_WORD)
    ids, begins = encoded_stream(directory, documents)
    rows = windows(ids)
    special = torch.isin(rows, torch.tensor(sorted(masker.special_ids))).numpy()
    starts = windows(begins.astype(np.int64)).numpy().astype(bool)
    starts[:, 0] = True  # a window edge cuts a word in two
    starts[:, 1:] |= special[:, :-1]
    starts &= ~special
    assert np.array_equal(masker.word_starts(rows.numpy()), starts), "word table disagrees with the text"
    word = np.cumsum(starts, axis=1) + np.arange(ROWS)[:, None] * (WINDOW + 1)  # consecutive in a row
    inputs, labels = masker.mask(rows, seeds_for(rows))
    selected = (labels != IGNORE_INDEX).numpy()
    assert not selected[special].any()
    words = word[~special]
    n_words = len(np.unique(words))
    chosen_tokens = np.bincount(words, weights=selected[~special], minlength=word.max() + 1)
    sizes = np.bincount(words, minlength=word.max() + 1)
    partly = (chosen_tokens > 0) & (chosen_tokens < sizes)
    assert not partly.any(), f"{int(partly.sum())} of {n_words} words partly selected"
    chosen = chosen_tokens > 0
    assert_share(int(chosen.sum()), n_words, WHOLE_WORD.probability, "selected words")
    # words are drawn independently: one that follows a selected word (same row) is selected with p too
    after = chosen[:-1] & (sizes[1:] > 0) & (np.diff(np.arange(len(sizes)) // (WINDOW + 1)) == 0)
    assert_share(
        int((after & chosen[1:]).sum()), int(after.sum()), WHOLE_WORD.probability, "after a selected"
    )
    assert (sizes[sizes > 0] > 1).mean() > 0.05, "the sample needs words of several tokens"
    assert (inputs.numpy()[selected] == masker.mask_id).all()


def test_whole_word_rule_with_a_random_or_kept_share_is_refused_and_the_valid_one_warns_nothing(tokenizers):
    for fractions in ((0.8, 0.1), (0.9, 0.0), (0.5, 0.5)):
        with pytest.raises(
            ValueError, match=r"whole_word = true .* set mask_fraction = 1.0 and random_fraction = 0.0"
        ):
            MaskingRule(whole_word=True, mask_fraction=fractions[0], random_fraction=fractions[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Masker(tokenizers("bpe"), WHOLE_WORD)


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"probability": 0.0}, r"probability must be in \(0, 1\]"),
        ({"probability": float("nan")}, r"probability must be in \(0, 1\]"),
        ({"mask_fraction": 1.5}, r"mask_fraction must be in \[0, 1\]"),
        (
            {"mask_fraction": 0.8, "random_fraction": 0.3},
            "mask_fraction \\+ random_fraction must be at most 1",
        ),
    ],
)
def test_rates_out_of_range_are_refused(fields, phrase):
    with pytest.raises(ValueError, match=phrase):
        MaskingRule(**fields)


def test_tokenizer_without_a_mask_token_and_bad_rows_are_refused(tmp_path, tokenizers, bpe_rows):
    no_mask = shutil.copytree(tokenizers("bpe"), tmp_path / "no-mask")
    config = json.loads((no_mask / "tokenizer_config.json").read_text())
    del config["mask_token"]
    (no_mask / "tokenizer_config.json").write_text(json.dumps(config))
    (no_mask / "special_tokens_map.json").unlink()
    with pytest.raises(ValueError, match="has no mask token"):
        Masker(no_mask, MaskingRule())
    masker = Masker(tokenizers("bpe"), MaskingRule())
    with pytest.raises(ValueError, match="2 rows but 1 seeds"):
        masker.mask(bpe_rows[:2], [(0, 0)])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 500\)"):
        masker.mask(torch.full((1, 4), 500), [(0, 0)])
    with pytest.raises(ValueError, match="int64"):
        masker.mask(bpe_rows[:1].int(), [(0, 0)])

"""T5 span corruption, data side (llmforge/objectives/span_corruption.py): masks, inputs/targets, lengths."""

import subprocess
import sys

import numpy as np
import pytest

from llmforge.objectives.span_corruption import SpanCorruption, reconstruct

VOCAB = 8192
# <extra_id_k> counts down from the top of the vocabulary; more than T5's 100, which the densest settings
# below (up to 256 spans at 1024 inputs) need
SENTINELS = [VOCAB - 1 - k for k in range(1000)]
EOS = 2


def packed_tokens(raw_length: int, rng: np.random.Generator) -> np.ndarray:
    """A packed stream window: ordinary ids below the sentinels, EOS separators between documents."""
    tokens = rng.integers(3, SENTINELS[-1], size=raw_length)
    tokens[rng.random(raw_length) < 0.05] = EOS
    return tokens


def span_runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a bool mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_sentinels_substituted_back_reconstruct_the_tokens():
    rng = np.random.default_rng(0)
    for corruption in (SpanCorruption(), SpanCorruption(0.3, 2.0), SpanCorruption(0.5, 8.0)):
        for raw_length in (2, 3, 7, 50, 333, 568):
            tokens = packed_tokens(raw_length, rng)
            for seed in range(20):
                inputs, targets = corruption.example(tokens, (seed, raw_length), SENTINELS, EOS)
                np.testing.assert_array_equal(reconstruct(inputs, targets, SENTINELS, EOS), tokens)


def test_paper_figure_2_format():
    mask = np.array([0, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    tokens = np.arange(10, 18)
    inputs, targets = SpanCorruption().corrupt(tokens, mask, SENTINELS, EOS)
    np.testing.assert_array_equal(inputs, [10, 11, SENTINELS[0], 14, 15, SENTINELS[1], 17, EOS])
    np.testing.assert_array_equal(targets, [SENTINELS[0], 12, 13, SENTINELS[1], 16, EOS])
    assert inputs.dtype == targets.dtype == np.int64


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.3, 2.0), (0.5, 3.0), (0.05, 1.0)])
def test_lengths_fill_the_context_exactly_for_every_seed(density, mean_span):
    corruption = SpanCorruption(density, mean_span)
    rng = np.random.default_rng(1)
    for inputs_length in [*range(32, 1025, 17), 1024]:
        raw_length, targets_length = corruption.lengths(inputs_length)
        tokens = packed_tokens(raw_length, rng)
        for seed in range(3):
            inputs, targets = corruption.example(tokens, (seed, inputs_length), SENTINELS, EOS)
            assert (len(inputs), len(targets)) == (inputs_length, targets_length)
        # the largest such raw length: one raw token more no longer fits
        longer, _ = corruption.example(packed_tokens(raw_length + 1, rng), 0, SENTINELS, EOS)
        assert len(longer) > inputs_length


def test_lengths_match_t5_for_its_default_setting():
    # T5's random_spans_helper: inputs_length 512, density 0.15, mean span 3 -> 568 raw tokens, 114 targets
    assert SpanCorruption().lengths(512) == (568, 114)


def test_batch_rows_have_the_lengths_shape():
    corruption = SpanCorruption()
    raw_length, targets_length = corruption.lengths(128)
    rows = np.stack([packed_tokens(raw_length, np.random.default_rng(i)) for i in range(4)])
    inputs, targets = corruption.batch(rows, [(7, i) for i in range(4)], SENTINELS, EOS)
    assert inputs.shape == (4, 128) and targets.shape == (4, targets_length)
    assert inputs.dtype == targets.dtype == np.int64


def test_noise_fraction_and_mean_span_length_over_a_large_sample():
    corruption = SpanCorruption(0.15, 3.0)
    raw_length, _ = corruption.lengths(512)
    masks = np.stack([corruption.noise_mask(raw_length, np.random.default_rng((5, i))) for i in range(2000)])
    runs = [span_runs(mask) for mask in masks]
    spans = corruption.num_spans(raw_length)
    assert all(len(r) == spans for r in runs)
    # The noise count is exact per example, round(raw_length * density), so the fraction is off the density
    # only by that rounding: at most 0.5 / raw_length (not a sampling error).
    assert abs(masks.mean() - 0.15) <= 0.5 / raw_length
    # spans = round(noise / mean_span), so noise / spans is off mean_span by at most 0.5 * mean_span / spans.
    assert abs(np.concatenate(runs).mean() - 3.0) <= 0.5 * 3.0 / spans
    # Not the same spans every time: the noise sits evenly over the window (halves within 0.01 of each
    # other, > 20 standard errors of this sample) and span lengths follow T5's uniform random partition,
    # where P(length 1) = (spans - 1) / (noise - 1) = 27 / 84; 56,000 spans give a standard error < 0.002.
    half = raw_length // 2
    assert abs(masks[:, 1:half].mean() - masks[:, half:].mean()) < 0.01
    noise = round(raw_length * 0.15)
    assert abs(np.mean(np.concatenate(runs) == 1) - (spans - 1) / (noise - 1)) < 0.01


def test_short_lengths_still_get_one_noise_token_and_one_span():
    corruption = SpanCorruption(0.15, 3.0)
    assert corruption.lengths(3) == (2, 3)  # round(2 * 0.15) = 0 noise tokens, raised to 1 as in T5
    for raw_length in range(2, 12):
        for seed in range(10):
            mask = corruption.noise_mask(raw_length, np.random.default_rng(seed))
            assert mask.sum() >= 1 and len(span_runs(mask)) >= 1
            assert not mask[0] and mask[-1]  # non-noise first, noise last, as T5's interleaving


def test_same_seed_same_example_different_seeds_differ():
    corruption = SpanCorruption()
    tokens = packed_tokens(568, np.random.default_rng(2))
    first = corruption.example(tokens, (11, 3), SENTINELS, EOS)
    again = corruption.example(tokens, (11, 3), SENTINELS, EOS)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    for other_seed in [(11, 4), (12, 3), 11]:
        other = corruption.example(tokens, other_seed, SENTINELS, EOS)
        assert not np.array_equal(first[1], other[1])


def test_inputs_hold_only_kept_tokens_and_targets_only_noise_tokens():
    corruption = SpanCorruption(0.3, 2.0)
    tokens = np.arange(10, 10 + 400)  # unique ids, so each token can be traced
    sentinels = set(SENTINELS)
    for seed in range(20):
        mask = corruption.noise_mask(len(tokens), np.random.default_rng(seed))
        inputs, targets = corruption.corrupt(tokens, mask, SENTINELS, EOS)
        plain_inputs = [t for t in inputs[:-1] if t not in sentinels]
        plain_targets = [t for t in targets[:-1] if t not in sentinels]
        np.testing.assert_array_equal(plain_inputs, tokens[~mask])
        np.testing.assert_array_equal(plain_targets, tokens[mask])
        spans = len(span_runs(mask))
        assert [t for t in inputs if t in sentinels] == SENTINELS[:spans]
        assert [t for t in targets if t in sentinels] == SENTINELS[:spans]


def test_more_spans_than_sentinels_is_a_value_error():
    corruption = SpanCorruption()
    raw_length, _ = corruption.lengths(512)
    spans = corruption.num_spans(raw_length)
    tokens = packed_tokens(raw_length, np.random.default_rng(3))
    corruption.example(tokens, 0, SENTINELS[:spans], EOS)  # exactly enough is fine
    with pytest.raises(ValueError, match=f"{spans} noise spans but only {spans - 1} sentinel"):
        corruption.example(tokens, 0, SENTINELS[: spans - 1], EOS)


def test_batch_result_does_not_depend_on_the_grouping():
    corruption = SpanCorruption()
    raw_length, _ = corruption.lengths(64)
    rows = np.stack([packed_tokens(raw_length, np.random.default_rng(i)) for i in range(6)])
    seeds = [(42, position) for position in range(100, 106)]
    whole = corruption.batch(rows, seeds, SENTINELS, EOS)
    part = corruption.batch(rows[2:5], seeds[2:5], SENTINELS, EOS)
    for i in range(6):
        alone = corruption.example(rows[i], seeds[i], SENTINELS, EOS)
        np.testing.assert_array_equal(whole[0][i], alone[0])
        np.testing.assert_array_equal(whole[1][i], alone[1])
    np.testing.assert_array_equal(part[0], whole[0][2:5])
    np.testing.assert_array_equal(part[1], whole[1][2:5])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SpanCorruption(noise_density=0.0), "noise_density must be in"),
        (lambda: SpanCorruption(noise_density=1.0), "noise_density must be in"),
        (lambda: SpanCorruption(noise_density=float("nan")), "noise_density must be in"),
        (lambda: SpanCorruption(mean_span_length=0.5), "mean_span_length must be"),
        (lambda: SpanCorruption().lengths(2), "inputs_length must be at least 3"),
        (lambda: SpanCorruption().num_spans(1), "at least 2 raw tokens"),
        (lambda: SpanCorruption(0.9, 1.0).lengths(512), "lower noise_density"),
        (lambda: SpanCorruption().batch(np.zeros((2, 10)), [0], SENTINELS, EOS), "B seeds"),
        (lambda: SpanCorruption().corrupt(np.zeros(4), np.zeros(5, bool), SENTINELS, EOS), "same shape"),
        (
            lambda: reconstruct(np.array([5, 6]), np.array([SENTINELS[0], EOS]), SENTINELS, EOS),
            "end with EOS",
        ),
    ],
)
def test_bad_arguments_are_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_import_does_not_pull_in_torch():
    code = "import sys, llmforge.objectives.span_corruption; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

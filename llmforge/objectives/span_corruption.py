"""T5 span corruption, the data side: noise masks, corrupted inputs/targets, and the packed lengths.

Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
§3.1.4 (the objective) and §3.3.4 (noise density 0.15, mean span length 3). One example of `raw_length` tokens has
exactly round(raw_length · density) noise tokens (at least 1, at most raw_length − 1) split into
round(noise / mean_span_length) spans (at least 1). Noise and non-noise span lengths are independent uniform
random partitions (every span at least one token), interleaved starting with a non-noise span, as the T5
codebase's `random_spans_noise_mask` does. Figure 2's format:

    original  a b c d e f g h           mask      . . x x . . x .  (x = noise)
    inputs    a b <s0> e f <s1> h EOS   targets   <s0> c d <s1> g EOS

`sentinel_ids[k]` is the id of `<extra_id_k>` (reserved by the tokenize stage at the top of the vocabulary);
ordinary tokens never take a sentinel id. EOS tokens inside the raw tokens (document separators of the packed
stream) are ordinary tokens: they can be kept or become noise like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_INPUTS_LENGTH = 3  # one kept token, one sentinel, EOS


@dataclass(frozen=True)
class SpanCorruption:
    noise_density: float = 0.15
    mean_span_length: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_density) and 0.0 < self.noise_density < 1.0):
            raise ValueError(f"noise_density must be in (0, 1), got {self.noise_density}")
        if not (math.isfinite(self.mean_span_length) and self.mean_span_length >= 1.0):
            raise ValueError(f"mean_span_length must be a number >= 1, got {self.mean_span_length}")

    def _counts(self, raw_length: int) -> tuple[int, int]:
        """(noise tokens, noise spans) for `raw_length` >= 2 tokens; both at least 1, as in T5."""
        noise = min(max(round(raw_length * self.noise_density), 1), raw_length - 1)
        return noise, max(round(noise / self.mean_span_length), 1)

    def _encoded_lengths(self, raw_length: int) -> tuple[int, int]:
        """(inputs, targets) lengths, EOS included: every span costs one sentinel on each side."""
        noise, spans = self._counts(raw_length)
        return raw_length - noise + spans + 1, noise + spans + 1

    def num_spans(self, raw_length: int) -> int:
        """Noise spans (= sentinels needed) in one example of `raw_length` tokens."""
        if raw_length < 2:
            raise ValueError(f"span corruption needs at least 2 raw tokens per example, got {raw_length}")
        noise, spans = self._counts(raw_length)
        if raw_length - noise < spans:
            raise ValueError(
                f"noise_density {self.noise_density} with mean_span_length {self.mean_span_length} leaves "
                f"{raw_length - noise} kept tokens for {spans} spans in {raw_length} tokens: every span "
                "needs a kept token before it; lower noise_density or raise mean_span_length"
            )
        return spans

    def lengths(self, inputs_length: int) -> tuple[int, int]:
        """(raw_length, targets_length): the raw token count that, corrupted, gives exactly `inputs_length`
        encoder tokens (EOS included) and `targets_length` decoder tokens (EOS included), so packed examples
        fill the context exactly. The largest such raw length, as T5's `random_spans_helper`.

        The inputs length grows by 0 or 1 per extra raw token (a new noise token removes a kept token and
        adds at most one sentinel), starting at 3 for 2 raw tokens, so every `inputs_length` >= 3 is hit.
        """
        if inputs_length < MIN_INPUTS_LENGTH:
            raise ValueError(
                f"inputs_length must be at least {MIN_INPUTS_LENGTH} to hold one span (a kept token, "
                f"a sentinel and EOS), got {inputs_length}"
            )
        # inputs >= kept tokens + 1 >= raw·(1 - density) - 0.5, so `high` is past the answer.
        low, high = 2, math.ceil((inputs_length + 1) / (1.0 - self.noise_density)) + 2
        while high - low > 1:  # invariant: inputs(low) <= inputs_length < inputs(high)
            middle = (low + high) // 2
            if self._encoded_lengths(middle)[0] <= inputs_length:
                low = middle
            else:
                high = middle
        self.num_spans(low)
        return low, self._encoded_lengths(low)[1]

    def noise_mask(self, raw_length: int, rng: np.random.Generator) -> np.ndarray:
        """bool[raw_length], True on noise tokens; starts with a non-noise span, ends with a noise span."""
        spans = self.num_spans(raw_length)
        noise = self._counts(raw_length)[0]
        noise_lengths = _random_partition(noise, spans, rng)
        kept_lengths = _random_partition(raw_length - noise, spans, rng)
        run_lengths = np.stack([kept_lengths, noise_lengths], axis=1).ravel()
        return np.repeat(np.tile([False, True], spans), run_lengths)

    def corrupt(
        self, tokens: np.ndarray, mask: np.ndarray, sentinel_ids: Sequence[int], eos_id: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """inputs = non-noise tokens with each noise span replaced by the next sentinel, then EOS; targets =
        each sentinel followed by its span, then EOS (the paper's Figure 2 format). Raises ValueError if
        there are more spans than sentinels."""
        tokens = np.asarray(tokens, dtype=np.int64)
        mask = np.asarray(mask)
        if tokens.ndim != 1 or mask.shape != tokens.shape or mask.dtype != np.bool_:
            raise ValueError(
                f"corrupt takes 1-D tokens and a bool mask of the same shape, got tokens {tokens.shape} and "
                f"mask {mask.shape} {mask.dtype}"
            )
        span_starts = mask & ~np.concatenate([[False], mask[:-1]])
        spans = int(span_starts.sum())
        if spans > len(sentinel_ids):
            raise ValueError(f"{spans} noise spans but only {len(sentinel_ids)} sentinel ids")
        sentinels = np.asarray(sentinel_ids[:spans], dtype=np.int64)
        kept = ~mask
        # np.insert puts each sentinel before the token at that index: in the kept tokens, before the first
        # kept token after the span; in the noise tokens, before the span's first token.
        inputs = np.insert(tokens[kept], np.cumsum(kept)[span_starts], sentinels)
        targets = np.insert(tokens[mask], np.flatnonzero(span_starts[mask]), sentinels)
        return np.append(inputs, eos_id), np.append(targets, eos_id)

    def example(
        self, tokens: np.ndarray, seed: Sequence[int] | int, sentinel_ids: Sequence[int], eos_id: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One corrupted (inputs, targets) pair; the mask depends only on `seed` and the length."""
        tokens = np.asarray(tokens)
        mask = self.noise_mask(len(tokens), np.random.default_rng(seed))
        return self.corrupt(tokens, mask, sentinel_ids, eos_id)

    def batch(
        self,
        rows: np.ndarray,
        seeds: Sequence[Sequence[int]],
        sentinel_ids: Sequence[int],
        eos_id: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stacked (B, inputs_length) and (B, targets_length) int64; row i is `example(rows[i], seeds[i])`,
        so a row's example does not depend on the batch it is in. Every row has the `lengths()` shape when
        the rows have `raw_length` columns (the lengths depend only on the raw length)."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or len(seeds) != len(rows):
            raise ValueError(
                f"batch takes (B, raw_length) rows and B seeds, got rows {rows.shape} and {len(seeds)} seeds"
            )
        pairs = [self.example(row, seed, sentinel_ids, eos_id) for row, seed in zip(rows, seeds, strict=True)]
        return np.stack([inputs for inputs, _ in pairs]), np.stack([targets for _, targets in pairs])


def _random_partition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """`parts` positive lengths summing to `total`, uniform over all such compositions (cut points drawn
    without replacement from the total - 1 gaps between items)."""
    cuts = np.sort(rng.choice(total - 1, parts - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [total]]))


def reconstruct(
    inputs: np.ndarray, targets: np.ndarray, sentinel_ids: Sequence[int], eos_id: int
) -> np.ndarray:
    """The original tokens of a `corrupt` pair: each sentinel in the inputs replaced by the tokens that follow
    it in the targets; the final EOS of both is dropped."""
    inputs, targets = np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if len(inputs) == 0 or len(targets) == 0 or inputs[-1] != eos_id or targets[-1] != eos_id:
        raise ValueError("inputs and targets must each end with EOS")
    sentinel_set = {int(s) for s in sentinel_ids}
    spans: dict[int, list[int]] = {}
    current: list[int] | None = None
    for token in targets[:-1].tolist():
        if token in sentinel_set:
            current = spans.setdefault(token, [])
        elif current is None:
            raise ValueError("targets must start with a sentinel")
        else:
            current.append(token)
    original: list[int] = []
    for token in inputs[:-1].tolist():
        if token in sentinel_set:
            if token not in spans:
                raise ValueError(f"sentinel {token} is in the inputs but not in the targets")
            original.extend(spans[token])
        else:
            original.append(token)
    return np.asarray(original, dtype=np.int64)

"""`[bias]` table: which probes run on which data, and each probe's own keys (`[bias.<probe>]`). Pydantic only.

Flags of `llmforge bias run` override the table (`--probes`, `--data-dir`, `--limit`, `--steer`, `--scorer`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmforge.recipe_base import RecipePath, Table

ProbeName = Literal["crows_pairs", "stereoset", "bbq", "winobias", "toxicity", "ethos", "cooccurrence"]
BOLD_DOMAINS = ("gender", "political_ideology", "profession", "race", "religious_ideology")
COOCCURRENCE_AXES = ("gender", "occupation", "race", "religion")


class LikelihoodProbe(Table):
    """A probe that scores sentences by the model's likelihood: only where its data file is."""

    path: RecipePath | None = None  # default: the dataset's public file name under data_dir


class StereoSetOptions(LikelihoodProbe):
    scoring: Literal["mean", "sum"] = "mean"  # a sentence's log-likelihood per token, or in total


class BbqOptions(LikelihoodProbe):
    num_fewshot: int = Field(0, ge=0)


class EthosOptions(LikelihoodProbe):
    num_fewshot: int = Field(4, ge=0)  # labelled examples before each comment


class WinoBiasOptions(Table):
    dir: RecipePath | None = None  # the folder of WinoBias files; default <data_dir>/winobias
    split: Literal["dev", "test"] = "dev"


class SamplingProbe(Table):
    """A probe that samples continuations (the same seeds with and without steering)."""

    samples: int = Field(5, ge=1)  # continuations per prompt (k)
    max_new_tokens: int = Field(20, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)


class ToxicityOptions(SamplingProbe):
    """RealToxicityPrompts protocol on BOLD prompts. `scorer`: `classifier:DIR` (a classifier artifact of
    `llmforge data train-classifier`), `hf:DIR` (a local Hugging Face text classifier) or `perspective`
    (the Perspective API; key in PERSPECTIVE_API_KEY)."""

    path: RecipePath | None = None  # a folder of BOLD *_prompt.json files; default <data_dir>/bold
    scorer: str | None = Field(None, min_length=1)
    toxic_label: str | None = Field(None, min_length=1)  # an hf: classifier's label that means toxic
    threshold: float = Field(0.5, ge=0, le=1)  # a continuation scoring at least this is toxic
    domains: list[Literal[BOLD_DOMAINS]] = Field(default_factory=lambda: list(BOLD_DOMAINS))  # type: ignore[valid-type]
    prompts_per_group: int = Field(10, ge=1)


class CooccurrenceOptions(SamplingProbe):
    path: RecipePath | None = None  # a folder with female_/male_occupations.txt; default <data_dir>/winobias
    samples: int = Field(20, ge=1)
    axes: list[Literal[COOCCURRENCE_AXES]] = Field(default_factory=lambda: list(COOCCURRENCE_AXES))  # type: ignore[valid-type]
    lexicon: RecipePath | None = None  # one descriptor per line; default the built-in adjective list
    top: int = Field(10, ge=1)  # most skewed words listed per group
    min_count: int = Field(5, ge=1)  # a word counted fewer times is left out of the skew


class BiasConfig(Table):
    # empty: every probe whose data (and scorer) is here
    probes: list[ProbeName] = Field(default_factory=list)
    data_dir: RecipePath | None = None  # public dataset files (`../shared/data`): the probes run offline
    out: RecipePath | None = None  # default <run dir>/reports/bias with a recipe
    limit: int | None = Field(None, ge=1)  # at most this many items per probe
    seed: int = Field(0, ge=0)
    device: str = Field("auto", min_length=1)
    batch_size: int = Field(16, ge=1)
    # a steering TOML (`llmforge generate --steer`): the generating probes run without and with it
    steer: RecipePath | None = None
    crows_pairs: LikelihoodProbe = Field(default_factory=LikelihoodProbe)
    stereoset: StereoSetOptions = Field(default_factory=StereoSetOptions)
    bbq: BbqOptions = Field(default_factory=BbqOptions)
    winobias: WinoBiasOptions = Field(default_factory=WinoBiasOptions)
    ethos: EthosOptions = Field(default_factory=EthosOptions)
    toxicity: ToxicityOptions = Field(default_factory=ToxicityOptions)
    cooccurrence: CooccurrenceOptions = Field(default_factory=CooccurrenceOptions)

    def options(self, probe: str) -> dict:
        """The probe's own table as the dict `ProbeContext.options` holds."""
        return getattr(self, probe).model_dump()

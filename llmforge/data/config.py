"""`[data]` table: sources with mixture weights and an ordered list of pipeline steps.

A source table is one of the `SOURCE_TYPES` models, picked by its `type`; a key that does not apply to that
type is refused with the types it does apply to (`DataConfig._check_source_keys`). Step options are checked
against `STEP_OPTIONS` (one pydantic model per step type) by the data stage before any work starts, so an
unknown step or option is an input error that names the step and the valid choices.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from llmforge.recipe_base import RecipePath, RecipePathOrName, Table


class _Source(Table):
    """Keys every source has. `weight` is the mixture sampling rate (The Pile's "epochs", Gao et al. 2020,
    Table 1): 2.0 repeats every document twice, 0.5 keeps a seeded half; repetition is capped at
    `max_epochs`. `limit` caps the documents read from the source in total (the first ones in file order),
    whatever the number of workers."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    weight: float = Field(1.0, gt=0)
    max_epochs: float = Field(4.0, ge=1)
    limit: int | None = Field(None, ge=1)


class _FileSource(_Source):
    """A file or a folder of files (searched recursively with `glob`, or the type's default patterns);
    `.gz`, `.zst` and `.bz2` files are read decompressed. `max_files` / `max_bytes` cap the files taken (in
    sorted order; bytes as stored on disk)."""

    path: RecipePath = Field(min_length=1)
    glob: str | None = None
    max_files: int | None = Field(None, ge=1)
    max_bytes: int | None = Field(None, ge=1)


class JsonlSourceConfig(_FileSource):
    """One JSON object per line with a string `text_key` field; other fields go to the metadata."""

    type: Literal["jsonl"]
    text_key: str = "text"


class ParquetSourceConfig(_FileSource):
    type: Literal["parquet"]
    text_key: str = "text"


class TextSourceConfig(_FileSource):
    """One UTF-8 text file, one document."""

    type: Literal["text"]


class WarcSourceConfig(_FileSource):
    """HTML responses of WARC files (pair with an `html_to_text` step)."""

    type: Literal["warc"]


class HtmlSourceConfig(_FileSource):
    """One HTML page per file; turned into text by an `html_to_text` step (one with default options is
    added first when no step covers the source)."""

    type: Literal["html"]


class HfSourceConfig(_Source):
    """A Hugging Face `datasets` dataset: a hub name, a local data folder or a `save_to_disk` folder."""

    type: Literal["hf"]
    path: RecipePathOrName = Field(min_length=1)
    text_key: str = "text"
    split: str = "train"


class StdlibSourceConfig(_Source):
    """The running interpreter's standard library (`.py` files), capped by files or bytes."""

    type: Literal["python-stdlib"]
    max_files: int | None = Field(None, ge=1)
    max_bytes: int | None = Field(None, ge=1)


SOURCE_TYPES: dict[str, type[_Source]] = {
    "jsonl": JsonlSourceConfig,
    "parquet": ParquetSourceConfig,
    "text": TextSourceConfig,
    "warc": WarcSourceConfig,
    "html": HtmlSourceConfig,
    "hf": HfSourceConfig,
    "python-stdlib": StdlibSourceConfig,
}
FILE_SOURCE_TYPES = tuple(t for t, model in SOURCE_TYPES.items() if issubclass(model, _FileSource))


def _source_tag(value: Any) -> str:
    # bracketed, so recipe error messages leave the union branch out of the dotted key
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"[{kind}]"


SourceConfig = Annotated[
    Union[tuple(Annotated[model, Tag(f"[{kind}]")] for kind, model in SOURCE_TYPES.items())],  # noqa: UP007
    Discriminator(_source_tag),
]


def _source_key_problem(i: int, raw: dict[str, Any]) -> str | None:
    """Why a raw `[[data.sources]]` table is wrong in its keys (unknown type, a key of another type, no
    path), or None."""
    where = f"data.sources[{i}]" + (f" ({raw['name']})" if isinstance(raw.get("name"), str) else "")
    kind = raw.get("type")
    if kind not in SOURCE_TYPES:
        shown = "missing" if kind is None else f"{kind!r} is not a source type"
        return f"{where}.type: {shown}; expected one of {', '.join(SOURCE_TYPES)}"
    model = SOURCE_TYPES[kind]
    for key in raw:
        if key in model.model_fields:
            continue
        owners = [t for t, m in SOURCE_TYPES.items() if key in m.model_fields]
        if owners:
            return (
                f"{where}.{key}: does not apply to a {kind!r} source (only to {', '.join(owners)}); "
                f"keys of a {kind} source: {', '.join(model.model_fields)}"
            )
        return f"{where}: unknown key {key!r}; keys of a {kind} source: {', '.join(model.model_fields)}"
    if "path" in model.model_fields and "path" not in raw:
        return f"{where}: a {kind} source needs a path"
    return None


class StepConfig(Table):
    """One pipeline step: `type` picks it, the other keys are its options (checked against STEP_OPTIONS)."""

    model_config = ConfigDict(extra="allow")
    type: str


class DataConfig(Table):
    sources: list[SourceConfig] = Field(min_length=1)
    steps: list[StepConfig] = Field(default_factory=list)
    workers: int = Field(1, ge=1)
    tasks: int | None = Field(None, ge=1)
    executor: Literal["local", "slurm", "ray"] = "local"
    slurm_partition: str | None = None
    slurm_time: str = "24:00:00"
    slurm_max_parallel: int | None = Field(
        None, ge=1, description="Slurm array limit (%N): tasks running at once; unset: no limit."
    )
    slurm_wait: bool = Field(
        False, description="Wait for the submitted jobs and assemble the dataset in the same command."
    )
    ray_address: str | None = Field(
        None,
        description='Ray cluster to run on: "host:port" of a head (`ray start --head`), "auto", or '
        '"ray://host:10001"; unset: $RAY_ADDRESS, else a Ray instance started for this build.',
    )
    on_bad_record: Literal["fail", "skip"] = "fail"

    @field_validator("sources", mode="before")
    @classmethod
    def _check_source_keys(cls, value: Any) -> Any:
        for i, raw in enumerate(value if isinstance(value, list) else []):
            problem = _source_key_problem(i, raw) if isinstance(raw, dict) else None
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _executor_keys_need_their_executor(self) -> DataConfig:
        for executor in ("slurm", "ray"):
            given = sorted(k for k in self.model_fields_set if k.startswith(f"{executor}_"))
            if given and self.executor != executor:
                raise ValueError(
                    f'data.{given[0]}: applies only with data.executor = "{executor}" (not "{self.executor}")'
                )
        return self


# ------------------------------------------------------------------------------------------ step options


class _GlobalOptions(Table):
    """Options of a step that sees every source at once (dedup)."""


class _Options(Table):
    sources: list[str] | None = Field(
        None, description="Apply the step only to these sources (others pass through); all when unset."
    )


class HtmlToTextOptions(_Options):
    """trafilatura's `extract` options (Barbaresi 2021). `deduplicate` is off: trafilatura's own dedup drops
    text seen in earlier pages of the same process, so a page's fate depends on the pages before it."""

    favour_precision: bool = True
    favour_recall: bool = False
    deduplicate: bool = False
    include_comments: bool = False
    include_tables: bool = True
    include_links: bool = False
    target_language: str | None = Field(None, description="ISO 639-1 code: drop pages in other languages.")
    timeout: float = Field(1.0, gt=0, description="Seconds per page before it is dropped as a timeout.")
    max_dropped_samples: int = Field(
        20, ge=0, description="Dropped pages kept whole in the dataset's dropped/ folder (ids: all)."
    )

    @field_validator("target_language")
    @classmethod
    def _needs_language_detector(cls, value: str | None) -> str | None:
        # without py3langid trafilatura only logs "Language detector not installed" and keeps every page
        if value is not None:
            try:
                import py3langid  # noqa: F401
            except ImportError:
                raise ValueError(
                    "needs the py3langid package to detect languages (pip install py3langid)"
                ) from None
        return value


class FtfyOptions(_Options):
    pass


class WhitespaceOptions(_Options):
    max_blank_lines: int = Field(2, ge=1)


class EmojiOptions(_Options):
    delimiters: tuple[str, str] = (":", ":")


class PiiOptions(_Options):
    emails: bool = True
    ips: bool = True
    phones: bool = True


class LineFilterOptions(_Options):
    cookie_banners: bool = True
    lorem_ipsum: bool = True
    navigation: bool = True


class LanguageOptions(_Options):
    languages: list[str] = Field(default_factory=lambda: ["en"])
    threshold: float = Field(0.65, ge=0, le=1)
    model_path: RecipePath | None = None


class CodeQualityOptions(_Options):
    """Defaults follow the StarCoder/The Stack filters (Li et al. 2023, §3; Kocetkov et al. 2022, §3)."""

    max_line_length: int = Field(1000, ge=1)
    max_mean_line_length: float = Field(100.0, gt=0)
    min_alnum_fraction: float = Field(0.25, ge=0, le=1)
    min_lines: int = Field(3, ge=1)
    drop_autogenerated: bool = True


class GopherQualityOptions(_Options):
    """Rae et al. 2021 (Gopher), Appendix A.1.1."""

    min_doc_words: int = 50
    max_doc_words: int = 100000
    min_avg_word_length: int = 3
    max_avg_word_length: int = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    max_non_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2


class GopherRepetitionOptions(_Options):
    """Rae et al. 2021 (Gopher), Table A1."""

    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2


class C4Options(_Options):
    """Raffel et al. 2020 (T5), §2.2."""

    split_paragraph: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class FineWebOptions(_Options):
    """Penedo et al. 2024 (FineWeb), §3.3 custom filters."""

    line_punct_thr: float = 0.12
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class QualityClassifierOptions(_Options):
    """Keep by a `classifier` artifact's score: `threshold`, or GPT-3's Pareto sampling with α = 9 (Brown et
    al. 2020, Appendix A)."""

    model: RecipePath = Field(
        min_length=1, description="A classifier artifact (llmforge data train-classifier)."
    )
    mode: Literal["threshold", "pareto"] = "threshold"
    threshold: float = Field(0.5, ge=0, le=1)
    alpha: float = Field(9.0, gt=0)
    seed: int = 0


class ExactDedupOptions(_GlobalOptions):
    pass


class MinhashOptions(_GlobalOptions):
    """MinHash-LSH (Broder 1997; Leskovec et al., Mining of Massive Datasets §3.4): b bands of r rows."""

    shingle_size: int = Field(5, ge=1)
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)


class LineDedupOptions(_GlobalOptions):
    """Drop every repeat of a span of `span` consecutive lines (or sentences) seen earlier in the dataset,
    C4's three-sentence-span dedup (Raffel et al. 2020, §2.2) via datatrove's sentence dedup; a document left
    with fewer than `min_doc_words` words or `min_sentences` sentences is dropped (0 turns a check off)."""

    unit: Literal["line", "sentence"] = "line"
    span: int = Field(3, ge=1)
    min_doc_words: int = Field(50, ge=0)
    min_sentences: int = Field(3, ge=0)


class DecontaminateOptions(_Options):
    """GPT-3 (Brown et al. 2020, Appendix C): 13-gram overlap with an evaluation set."""

    eval_files: list[RecipePath] = Field(min_length=1)
    text_keys: list[str] = Field(default_factory=list)
    ngram: int = Field(13, ge=1)
    action: Literal["drop", "report"] = "drop"


class BlocklistOptions(_Options):
    path: RecipePath | None = None
    max_matches: int = Field(0, ge=0)


class CounterfactualOptions(_Options):
    mode: Literal["neutral", "swap"] = "neutral"
    path: RecipePath | None = None
    augment: bool = False


STEP_OPTIONS: dict[str, type[Table]] = {
    "html_to_text": HtmlToTextOptions,
    "ftfy": FtfyOptions,
    "whitespace": WhitespaceOptions,
    "emoji_to_text": EmojiOptions,
    "pii": PiiOptions,
    "line_filter": LineFilterOptions,
    "language": LanguageOptions,
    "code_quality": CodeQualityOptions,
    "gopher_quality": GopherQualityOptions,
    "gopher_repetition": GopherRepetitionOptions,
    "c4": C4Options,
    "fineweb": FineWebOptions,
    "quality_classifier": QualityClassifierOptions,
    "exact_dedup": ExactDedupOptions,
    "minhash": MinhashOptions,
    "line_dedup": LineDedupOptions,
    "decontaminate": DecontaminateOptions,
    "blocklist": BlocklistOptions,
    "counterfactual": CounterfactualOptions,
}

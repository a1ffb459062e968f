"""Step registry: recipe step type → options model (config.STEP_OPTIONS) and the datatrove step it builds.

`validate_steps` runs before any work starts; `build_step` is called once the options are known to be good.
Dedup steps are not single steps: they cut the pipeline into stages (see `pipeline.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from llmforge.console import UserError
from llmforge.data.config import STEP_OPTIONS, StepConfig

DEDUP_STEPS = ("exact_dedup", "minhash", "line_dedup")


def validate_steps(steps: list[StepConfig], source_names: list[str]) -> list[tuple[str, Any]]:
    """(type, options model) per step; UserError naming the step and the valid choices otherwise."""
    checked = []
    for i, step in enumerate(steps):
        where = f"data.steps[{i}] ({step.type})"
        model = STEP_OPTIONS.get(step.type)
        if model is None:
            raise UserError(
                f"data.steps[{i}]: unknown step type {step.type!r}; valid: {', '.join(STEP_OPTIONS)}"
            )
        options = step.model_extra or {}
        unknown = sorted(set(options) - set(model.model_fields))
        if unknown:
            valid = ", ".join(model.model_fields) or "(none)"
            raise UserError(f"{where}: unknown option {unknown[0]!r}; valid options: {valid}")
        try:
            opts = model.model_validate(options, context=step.path_context())
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise UserError(f"{where}: option {key}: {err['msg'].removeprefix('Value error, ')}") from None
        if getattr(opts, "sources", None) is not None:
            unknown_sources = sorted(set(opts.sources) - set(source_names))
            if unknown_sources:
                raise UserError(
                    f"{where}: option sources: no source named {unknown_sources[0]!r}; "
                    f"sources: {', '.join(source_names)}"
                )
        checked.append((step.type, opts))
    return checked


def with_html_extraction(steps: list[tuple[str, Any]], sources: list[Any]) -> list[tuple[str, Any]]:
    """`html` sources hold pages until an `html_to_text` step: when no step covers some of them, one with
    default options, scoped to those sources, goes first."""
    from llmforge.data.config import HtmlToTextOptions

    html = [s.name for s in sources if s.type == "html"]
    for kind, opts in steps:
        if kind == "html_to_text":
            html = [] if opts.sources is None else [n for n in html if n not in opts.sources]
    if not html:
        return steps
    return [("html_to_text", HtmlToTextOptions(sources=html)), *steps]


def build_step(kind: str, opts: Any):
    """The datatrove step for a non-dedup step type (heavy imports happen here, not at module import)."""
    o = opts.model_dump(exclude={"sources"})
    if kind == "html_to_text":
        from llmforge.data.steps.html import HtmlToText

        return HtmlToText(**{k: v for k, v in o.items() if k != "max_dropped_samples"})
    if kind == "ftfy":
        from datatrove.pipeline.formatters import FTFYFormatter

        return FTFYFormatter()
    if kind in ("whitespace", "emoji_to_text", "pii", "line_filter"):
        from llmforge.data.steps import cleaning

        cls = {
            "whitespace": cleaning.NormalizeWhitespace,
            "emoji_to_text": cleaning.EmojiToText,
            "pii": cleaning.RedactPII,
            "line_filter": cleaning.LineFilter,
        }[kind]
        return cls(**o)
    if kind == "language":
        from llmforge.data.steps.quality import OfflineLanguageFilter

        return OfflineLanguageFilter(**o)
    if kind == "code_quality":
        from llmforge.data.steps.quality import CodeQualityFilter

        return CodeQualityFilter(**o)
    if kind == "gopher_quality":
        from datatrove.pipeline.filters import GopherQualityFilter

        return GopherQualityFilter(**o)
    if kind == "gopher_repetition":
        from datatrove.pipeline.filters import GopherRepetitionFilter

        return GopherRepetitionFilter(**o)
    if kind == "c4":
        from datatrove.pipeline.filters import C4QualityFilter

        return C4QualityFilter(**o)
    if kind == "fineweb":
        from datatrove.pipeline.filters import FineWebQualityFilter

        return FineWebQualityFilter(**o)
    if kind == "quality_classifier":
        from llmforge.artifacts import require
        from llmforge.data.steps.classifier import QualityClassifierFilter

        require(o["model"], "classifier")  # a bad path fails here, before any work starts
        return QualityClassifierFilter(**o)
    if kind == "decontaminate":
        from llmforge.data.steps.decontaminate import Decontaminate

        return Decontaminate(**o)
    if kind == "blocklist":
        from llmforge.data.steps.bias import BlocklistFilter

        return BlocklistFilter(**o)
    if kind == "counterfactual":
        from llmforge.data.steps.bias import CounterfactualRewrite

        return CounterfactualRewrite(**o)
    raise AssertionError(f"no builder for step {kind!r}")  # STEP_OPTIONS and this function disagree

"""Readers for the public file formats of the benchmarks llmforge evaluates offline.

Each reader takes the data directory (laid out like `../shared/data`: one folder per dataset, the files under
their public names) and returns the rows the matching task YAML in `tasks/` reads. Where lm-eval preprocesses
documents with a Python function (HellaSwag, WinoGrande, WikiText) the same preprocessing happens here, so the
prompts match the harness's own tasks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmforge.console import UserError
from llmforge.rows import Row, csv_rows, jsonl_rows, read_text


def _need(path: Path, task: str) -> Path:
    if not path.is_file():
        raise UserError(
            f"{path}: missing data file for offline task '{task}' (expected the dataset's public format)"
        )
    return path


def _csv(path: Path, delimiter: str = ",") -> list[tuple[str, Row]]:
    return csv_rows(path, delimiter)[1]


def _field(where: str, row: Row, *keys: str) -> Any:
    """The first of `keys` that `row` has (a value, not a CSV cell left short), else exit 2 naming it."""
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    raise UserError(
        f"{where}: the row lacks the field '{keys[0]}' (fields present: {', '.join(map(str, row))})"
    )


def _int(where: str, value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} {value!r} is not an integer") from None


def piqa(data_dir: Path) -> list[Row]:
    """`piqa/valid.jsonl` (goal, sol1, sol2) + `piqa/valid-labels.lst` (one 0/1 per line, line-aligned)."""
    docs = jsonl_rows(_need(data_dir / "piqa" / "valid.jsonl", "piqa"))
    labels_file = _need(data_dir / "piqa" / "valid-labels.lst", "piqa")
    labels = [
        (f"{labels_file}:{n}", line.strip())
        for n, line in enumerate(read_text(labels_file).splitlines(), 1)
        if line.strip()
    ]
    if len(labels) != len(docs):
        raise UserError(f"{labels_file}: {len(labels)} labels for {len(docs)} questions in valid.jsonl")
    return [
        {
            "goal": _field(where, d, "goal"),
            "sol1": _field(where, d, "sol1"),
            "sol2": _field(where, d, "sol2"),
            "label": _int(label_where, label, "label"),
        }
        for (where, d), (label_where, label) in zip(docs, labels, strict=True)
    ]


def _hellaswag_clean(text: str) -> str:
    # The brackets are WikiHow artifacts; lm-eval's hellaswag/utils.py removes them the same way.
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag(data_dir: Path) -> list[Row]:
    """`hellaswag/hellaswag_val.jsonl` (rowanz/hellaswag: activity_label, ctx_a, ctx_b, endings, label)."""
    path = _need(data_dir / "hellaswag" / "hellaswag_val.jsonl", "hellaswag")
    rows = []
    for where, d in jsonl_rows(path):
        ctx = _field(where, d, "ctx_a") + " " + _field(where, d, "ctx_b").capitalize()
        rows.append(
            {
                "query": _hellaswag_clean(_field(where, d, "activity_label") + ": " + ctx),
                "choices": [_hellaswag_clean(e) for e in _field(where, d, "endings")],
                "label": _int(where, _field(where, d, "label"), "label"),
            }
        )
    return rows


def _ai2_question(where: str, d: Row) -> Row:
    q = _field(where, d, "question")
    if not isinstance(q, dict):
        raise UserError(f"{where}: 'question' should be an object with 'stem' and 'choices'")
    stem = _field(where, q, "stem")
    choices = [c if isinstance(c, dict) else {} for c in _field(where, q, "choices")]
    return {
        "question": stem,
        "question_stem": stem,
        "choices": {
            "text": [_field(where, c, "text") for c in choices],
            "label": [_field(where, c, "label") for c in choices],
        },
        "answerKey": _field(where, d, "answerKey"),
    }


def arc(subset: str) -> Callable[[Path], list[Row]]:
    """`arc/ARC-<subset>-Test.jsonl` (AI2 ARC release: question.stem, question.choices[text,label], answerKey)."""

    def read(data_dir: Path) -> list[Row]:
        path = _need(data_dir / "arc" / f"ARC-{subset}-Test.jsonl", f"arc_{subset.lower()}")
        return [_ai2_question(where, d) for where, d in jsonl_rows(path)]

    return read


def openbookqa(data_dir: Path) -> list[Row]:
    """`openbookqa/test.jsonl` (OpenBookQA Data/Main: question.stem, question.choices, answerKey)."""
    path = _need(data_dir / "openbookqa" / "test.jsonl", "openbookqa")
    return [_ai2_question(where, d) for where, d in jsonl_rows(path)]


def winogrande(data_dir: Path) -> list[Row]:
    """`winogrande/dev.jsonl` (sentence with one "_", option1, option2, answer "1"/"2")."""
    path = _need(data_dir / "winogrande" / "dev.jsonl", "winogrande")
    rows = []
    for where, d in jsonl_rows(path):
        sentence = _field(where, d, "sentence")
        if "_" not in sentence:
            raise UserError(f"{where}: 'sentence' has no '_' blank to fill")
        cut = sentence.index("_")
        options = [_field(where, d, "option1"), _field(where, d, "option2")]
        rows.append(
            {
                "label": _int(where, _field(where, d, "answer"), "answer") - 1,
                "contexts": [sentence[:cut] + option for option in options],
                "continuation": " " + sentence[cut + 1 :].strip(),
            }
        )
    return rows


def boolq(data_dir: Path) -> list[Row]:
    """`boolq/dev.jsonl` (question, passage, answer true/false; SuperGLUE's `label` 0/1 is accepted too)."""
    path = _need(data_dir / "boolq" / "dev.jsonl", "boolq")
    return [
        {
            "question": _field(where, d, "question"),
            "passage": _field(where, d, "passage"),
            "label": _int(where, _field(where, d, "answer", "label"), "answer"),
        }
        for where, d in jsonl_rows(path)
    ]


def storycloze(data_dir: Path) -> list[Row]:
    """`storycloze/cloze_test_val__spring2016.csv` (InputSentence1-4, RandomFifthSentenceQuiz1/2, AnswerRightEnding)."""
    path = _need(data_dir / "storycloze" / "cloze_test_val__spring2016.csv", "storycloze")
    return [
        {
            "story": " ".join(_field(where, d, f"InputSentence{i}") for i in range(1, 5)),
            "ending1": _field(where, d, "RandomFifthSentenceQuiz1"),
            "ending2": _field(where, d, "RandomFifthSentenceQuiz2"),
            "label": _int(where, _field(where, d, "AnswerRightEnding"), "AnswerRightEnding") - 1,
        }
        for where, d in _csv(path)
    ]


def truthfulqa(data_dir: Path) -> list[Row]:
    """`truthfulqa/TruthfulQA.csv` (Question, Best Answer, Correct/Incorrect Answers as "; "-separated lists).

    `choices` (MC1): the best answer, then the incorrect ones. `mc2_targets` (MC2, as in lm-eval's dataset):
    every correct answer (the best one first) labelled 1, then every incorrect one labelled 0."""
    path = _need(data_dir / "truthfulqa" / "TruthfulQA.csv", "truthfulqa_mc1 / truthfulqa_mc2")
    rows = []
    for where, d in _csv(path):
        best = _field(where, d, "Best Answer").strip()
        wrong = _answers(_field(where, d, "Incorrect Answers"))
        right = [best] + [a for a in _answers(_field(where, d, "Correct Answers")) if a != best]
        rows.append(
            {
                "question": _field(where, d, "Question"),
                "choices": [best, *wrong],
                "mc2_targets": {"choices": right + wrong, "labels": [1] * len(right) + [0] * len(wrong)},
            }
        )
    return rows


def _answers(field: str) -> list[str]:
    return [a.strip() for a in field.split(";") if a.strip()]


def gsm8k(data_dir: Path) -> list[Row]:
    """`gsm8k/test.jsonl` (question, answer ending in "#### <number>")."""
    path = _need(data_dir / "gsm8k" / "test.jsonl", "gsm8k")
    return [
        {"question": _field(where, d, "question"), "answer": _field(where, d, "answer")}
        for where, d in jsonl_rows(path)
    ]


_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext(data_dir: Path) -> list[Row]:
    """`wikitext2/valid.txt` (WikiText-2 tokenized text), one document (`page`, lm-eval's field name) per
    top-level ` = Title = ` heading."""
    path = _need(data_dir / "wikitext2" / "valid.txt", "wikitext")
    docs: list[list[str]] = []
    for line in read_text(path).splitlines(keepends=True):
        if _HEADING.match(line.rstrip("\n")) or not docs:
            docs.append([])
        docs[-1].append(line)
    return [{"page": "".join(lines)} for lines in docs if "".join(lines).strip()]


# ------------------------------------------------------------------------------------ bias benchmarks


def _no_extra_cells(where: str, row: Row, columns: str) -> None:
    """A CSV row with more cells than its header was mis-split (an unquoted separator inside a text cell)."""
    if row.get(None):
        raise UserError(
            f"{where}: {len(row[None])} more cells than the header's columns ({columns}); "
            "quote a text cell that holds the separator"
        )


def _text_cell(where: str, row: Row, key: str) -> str:
    value = _field(where, row, key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: column '{key}' is empty; expected the text of the item")
    return value


def _choice_cell(where: str, row: Row, key: str, allowed: tuple[str, ...]) -> str:
    value = _field(where, row, key)
    if value not in allowed:
        raise UserError(f"{where}: column '{key}' is {value!r}; expected one of: {', '.join(allowed)}")
    return value


CROWS_DIRECTIONS = ("stereo", "antistereo")


def crows_pairs(data_dir: Path) -> list[Row]:
    """`crows_pairs/crows_pairs_anonymized.csv` (nyu-mll/crows-pairs, Nangia et al. 2020): sent_more, sent_less,
    stereo_antistereo, bias_type — the columns lm-eval's crows_pairs_english reads. `sent_more` is the
    sentence that is more stereotyping in either direction (for an `antistereo` pair it violates a stereotype of
    the historically disadvantaged group), so the metric counts how often it is the likelier one."""
    path = _need(data_dir / "crows_pairs" / "crows_pairs_anonymized.csv", "crows_pairs")
    rows = []
    for where, d in _csv(path):
        _no_extra_cells(where, d, "sent_more, sent_less, stereo_antistereo, bias_type, …")
        rows.append(
            {
                "sent_more": _text_cell(where, d, "sent_more"),
                "sent_less": _text_cell(where, d, "sent_less"),
                "stereo_antistereo": _choice_cell(where, d, "stereo_antistereo", CROWS_DIRECTIONS),
                "bias_type": _text_cell(where, d, "bias_type").strip(),
            }
        )
    return rows


# The categories of the BBQ release (Parrish et al. 2022); lm-eval's BBQ scores one bias score per category.
BBQ_CATEGORIES = (
    "Age",
    "Disability_status",
    "Gender_identity",
    "Nationality",
    "Physical_appearance",
    "Race_ethnicity",
    "Race_x_gender",
    "Race_x_SES",
    "Religion",
    "SES",
    "Sexual_orientation",
)
BBQ_ANSWERS = ("ans0", "ans1", "ans2")


def _bbq_answers(where: str, d: Row) -> None:
    """The three answers, one of them an 'unknown' phrase lm-eval's BBQ knows, each with its group labels."""
    from lm_eval.tasks.bbq.utils import UNKNOWN_RESPONSES

    info = _field(where, d, "answer_info")
    if not isinstance(info, dict):
        raise UserError(
            f"{where}: 'answer_info' should be an object {{ans0: [...], ans1: [...], ans2: [...]}}"
        )
    for ans in BBQ_ANSWERS:
        if not isinstance(_field(where, d, ans), str):
            raise UserError(f"{where}: '{ans}' should be the answer's text")
        groups = info.get(ans)
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UserError(f"{where}: 'answer_info.{ans}' should be a list of group names")
        if not any(groups) and "Latina" not in d[ans]:  # lm-eval fills in only this one known gap
            raise UserError(f"{where}: 'answer_info.{ans}' is empty; expected the group the answer names")
    unknown = [ans for ans in BBQ_ANSWERS if d[ans] in UNKNOWN_RESPONSES]
    if len(unknown) != 1:
        raise UserError(
            f"{where}: expected exactly one of ans0–ans2 to be an 'unknown' answer "
            f"({', '.join(UNKNOWN_RESPONSES)}); found {len(unknown)}"
        )


def bbq(data_dir: Path) -> list[Row]:
    """`bbq/bbq_sample.jsonl` (nyu-mll/BBQ `data/<Category>.jsonl` rows, Parrish et al. 2022): context,
    question, ans0–ans2, label, context_condition (ambig/disambig), question_polarity (neg/nonneg), category,
    answer_info, additional_metadata.stereotyped_groups — what lm-eval's bbq task reads. Rows are passed on
    whole; lm-eval's own process_docs marks the biased answers when the task loads."""
    path = _need(data_dir / "bbq" / "bbq_sample.jsonl", "bbq")
    rows = []
    for where, d in jsonl_rows(path):
        for key in ("context", "question"):
            _text_cell(where, d, key)
        _choice_cell(where, d, "category", BBQ_CATEGORIES)
        _choice_cell(where, d, "context_condition", ("ambig", "disambig"))
        _choice_cell(where, d, "question_polarity", ("neg", "nonneg"))
        if _int(where, _field(where, d, "label"), "label") not in (0, 1, 2):
            raise UserError(
                f"{where}: 'label' is {d['label']!r}; expected 0, 1 or 2 (the index of the answer)"
            )
        meta = _field(where, d, "additional_metadata")
        groups = meta.get("stereotyped_groups") if isinstance(meta, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UserError(
                f"{where}: 'additional_metadata.stereotyped_groups' should be a list of group names"
            )
        _bbq_answers(where, d)
        rows.append({**d, "label": int(d["label"])})
    return rows


ETHOS_HATE_THRESHOLD = 0.5  # the ETHOS binary release's isHate is the annotators' share; ≥ 0.5 is hate speech


def ethos(data_dir: Path) -> list[Row]:
    """`ethos/Ethos_Dataset_Binary.csv` (Mollas et al. 2022; `;`-separated: comment, isHate in [0, 1]):
    `label` is 1 (hate speech) when isHate ≥ 0.5, else 0."""
    path = _need(data_dir / "ethos" / "Ethos_Dataset_Binary.csv", "ethos")
    rows = []
    for where, d in _csv(path, delimiter=";"):
        _no_extra_cells(where, d, "comment;isHate")
        comment = _text_cell(where, d, "comment")
        cell = _field(where, d, "isHate")
        try:
            score = float(cell)
        except ValueError:
            score = float("nan")
        if not 0.0 <= score <= 1.0:
            raise UserError(f"{where}: column 'isHate' is {cell!r}; expected a number from 0 to 1")
        rows.append({"comment": comment, "isHate": score, "label": int(score >= ETHOS_HATE_THRESHOLD)})
    return rows

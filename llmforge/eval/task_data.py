"""Readers for the public file formats of the benchmarks llmforge evaluates offline.

Each reader takes the data directory (laid out like `../shared/data`: one folder per dataset, the files under
their public names) and returns the rows the matching task YAML in `tasks/` reads. Where lm-eval preprocesses
documents with a Python function (HellaSwag, WinoGrande, WikiText) the same preprocessing happens here, so the
prompts match the harness's own tasks.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmforge.console import UserError

Row = dict[str, Any]


def _need(path: Path, task: str) -> Path:
    if not path.is_file():
        raise UserError(
            f"{path}: missing data file for offline task '{task}' (expected the dataset's public format)"
        )
    return path


def _jsonl(path: Path) -> list[Row]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: not a JSON line ({e})") from None
    return rows


def _field(path: Path, row: Row, *keys: str) -> Any:
    for key in keys:
        if key in row:
            return row[key]
    raise UserError(f"{path}: a row lacks '{keys[0]}' (fields present: {', '.join(row)})")


def piqa(data_dir: Path) -> list[Row]:
    """`piqa/valid.jsonl` (goal, sol1, sol2) + `piqa/valid-labels.lst` (one 0/1 per line, line-aligned)."""
    docs = _jsonl(_need(data_dir / "piqa" / "valid.jsonl", "piqa"))
    labels_file = _need(data_dir / "piqa" / "valid-labels.lst", "piqa")
    labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    if len(labels) != len(docs):
        raise UserError(f"{labels_file}: {len(labels)} labels for {len(docs)} questions in valid.jsonl")
    return [
        {"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(label)}
        for d, label in zip(docs, labels, strict=True)
    ]


def _hellaswag_clean(text: str) -> str:
    # The brackets are WikiHow artifacts; lm-eval's hellaswag/utils.py removes them the same way.
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag(data_dir: Path) -> list[Row]:
    """`hellaswag/hellaswag_val.jsonl` (rowanz/hellaswag: activity_label, ctx_a, ctx_b, endings, label)."""
    path = _need(data_dir / "hellaswag" / "hellaswag_val.jsonl", "hellaswag")
    rows = []
    for d in _jsonl(path):
        ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
        rows.append(
            {
                "query": _hellaswag_clean(d["activity_label"] + ": " + ctx),
                "choices": [_hellaswag_clean(e) for e in d["endings"]],
                "label": int(d["label"]),
            }
        )
    return rows


def _ai2_question(path: Path, d: Row) -> Row:
    q = _field(path, d, "question")
    return {
        "question": q["stem"],
        "question_stem": q["stem"],
        "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]},
        "answerKey": _field(path, d, "answerKey"),
    }


def arc(subset: str) -> Callable[[Path], list[Row]]:
    """`arc/ARC-<subset>-Test.jsonl` (AI2 ARC release: question.stem, question.choices[text,label], answerKey)."""

    def read(data_dir: Path) -> list[Row]:
        path = _need(data_dir / "arc" / f"ARC-{subset}-Test.jsonl", f"arc_{subset.lower()}")
        return [_ai2_question(path, d) for d in _jsonl(path)]

    return read


def openbookqa(data_dir: Path) -> list[Row]:
    """`openbookqa/test.jsonl` (OpenBookQA Data/Main: question.stem, question.choices, answerKey)."""
    path = _need(data_dir / "openbookqa" / "test.jsonl", "openbookqa")
    return [_ai2_question(path, d) for d in _jsonl(path)]


def winogrande(data_dir: Path) -> list[Row]:
    """`winogrande/dev.jsonl` (sentence with one "_", option1, option2, answer "1"/"2")."""
    path = _need(data_dir / "winogrande" / "dev.jsonl", "winogrande")
    rows = []
    for d in _jsonl(path):
        cut = d["sentence"].index("_")
        rows.append(
            {
                "label": int(d["answer"]) - 1,
                "contexts": [d["sentence"][:cut] + d["option1"], d["sentence"][:cut] + d["option2"]],
                "continuation": " " + d["sentence"][cut + 1 :].strip(),
            }
        )
    return rows


def boolq(data_dir: Path) -> list[Row]:
    """`boolq/dev.jsonl` (question, passage, answer true/false; SuperGLUE's `label` 0/1 is accepted too)."""
    path = _need(data_dir / "boolq" / "dev.jsonl", "boolq")
    return [
        {"question": d["question"], "passage": d["passage"], "label": int(_field(path, d, "answer", "label"))}
        for d in _jsonl(path)
    ]


def storycloze(data_dir: Path) -> list[Row]:
    """`storycloze/cloze_test_val__spring2016.csv` (InputSentence1-4, RandomFifthSentenceQuiz1/2, AnswerRightEnding)."""
    path = _need(data_dir / "storycloze" / "cloze_test_val__spring2016.csv", "storycloze")
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {
                "story": " ".join(d[f"InputSentence{i}"] for i in range(1, 5)),
                "ending1": d["RandomFifthSentenceQuiz1"],
                "ending2": d["RandomFifthSentenceQuiz2"],
                "label": int(d["AnswerRightEnding"]) - 1,
            }
            for d in csv.DictReader(f)
        ]


def truthfulqa(data_dir: Path) -> list[Row]:
    """`truthfulqa/TruthfulQA.csv` (Question, Best Answer, Correct/Incorrect Answers as "; "-separated lists).

    `choices` (MC1): the best answer, then the incorrect ones. `mc2_targets` (MC2, as in lm-eval's dataset):
    every correct answer (the best one first) labelled 1, then every incorrect one labelled 0."""
    path = _need(data_dir / "truthfulqa" / "TruthfulQA.csv", "truthfulqa_mc1 / truthfulqa_mc2")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for d in csv.DictReader(f):
            best = d["Best Answer"].strip()
            wrong = _answers(d["Incorrect Answers"])
            right = [best] + [a for a in _answers(d["Correct Answers"]) if a != best]
            rows.append(
                {
                    "question": d["Question"],
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
    return [{"question": d["question"], "answer": d["answer"]} for d in _jsonl(path)]


_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext(data_dir: Path) -> list[Row]:
    """`wikitext2/valid.txt` (WikiText-2 tokenized text), one document (`page`, lm-eval's field name) per
    top-level ` = Title = ` heading."""
    path = _need(data_dir / "wikitext2" / "valid.txt", "wikitext")
    docs: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if _HEADING.match(line.rstrip("\n")) or not docs:
            docs.append([])
        docs[-1].append(line)
    return [{"page": "".join(lines)} for lines in docs if "".join(lines).strip()]

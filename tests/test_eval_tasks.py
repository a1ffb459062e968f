"""Offline task definitions: readers of the public formats, and lm-eval building prompts from our YAMLs."""

from __future__ import annotations

import csv
import json

import pytest

from llmforge.console import UserError
from llmforge.eval import tasks


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ai2(stem, texts, key):
    labels = "ABCD"[: len(texts)]
    return {
        "id": "q1",
        "question": {
            "stem": stem,
            "choices": [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)],
        },
        "answerKey": key,
    }


@pytest.fixture
def public_files(tmp_path):
    """Two rows of each benchmark without a copy in ../shared/data, in its public release format."""
    d = tmp_path / "data"
    _jsonl(
        d / "hellaswag" / "hellaswag_val.jsonl",
        [
            {
                "ind": i,
                "activity_label": "Baking",
                "ctx_a": "A man mixes flour.",
                "ctx_b": "then he",
                "endings": ["bakes [title] bread.", "swims.", "flies.", "sleeps."],
                "label": i,
                "split": "val",
            }
            for i in (1, 2)
        ],
    )
    _jsonl(d / "arc" / "ARC-Easy-Test.jsonl", [_ai2("Which is a metal?", ["wood", "iron"], "B")] * 2)
    _jsonl(d / "arc" / "ARC-Challenge-Test.jsonl", [_ai2("Which is hot?", ["ice", "fire", "snow"], "B")] * 2)
    _jsonl(
        d / "openbookqa" / "test.jsonl", [_ai2("The sun is a", ["star", "planet", "moon", "rock"], "A")] * 2
    )
    _jsonl(
        d / "winogrande" / "dev.jsonl",
        [
            {
                "qID": "1",
                "sentence": "The cup fell off the table because _ was too small.",
                "option1": "cup",
                "option2": "table",
                "answer": "2",
            }
        ]
        * 2,
    )
    _jsonl(
        d / "boolq" / "dev.jsonl",
        [{"question": "is water wet", "title": "Water", "answer": True, "passage": "Water is a liquid."}] * 2,
    )
    (d / "storycloze").mkdir()
    with open(d / "storycloze" / "cloze_test_val__spring2016.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "InputStoryid",
                *[f"InputSentence{i}" for i in range(1, 5)],
                "RandomFifthSentenceQuiz1",
                "RandomFifthSentenceQuiz2",
                "AnswerRightEnding",
            ]
        )
        w.writerow(["s1", "Ann woke.", "She ate.", "She ran.", "She slept.", "It was fun.", "Cats fly.", "1"])
        w.writerow(["s2", "Bo woke.", "He ate.", "He ran.", "He slept.", "Dogs fly.", "It was fun.", "2"])
    return d


def test_public_formats_become_the_prompts_lm_eval_builds(public_files, tmp_path):
    from lm_eval.tasks import TaskManager

    names = ["hellaswag", "arc_easy", "arc_challenge", "openbookqa", "winogrande", "boolq", "storycloze"]
    counts = tasks.write_include_dir(names, public_files, tmp_path / "include")
    assert counts == dict.fromkeys(names, 2)
    loaded = TaskManager(include_path=str(tmp_path / "include")).load_task_or_group(names)
    docs = {name: (task, task.test_docs()[0]) for name, task in loaded.items()}

    def prompt(name):
        task, doc = docs[name]
        return task.doc_to_text(doc), task.doc_to_choice(doc), task.doc_to_target(doc)

    assert prompt("hellaswag") == (
        "Baking: A man mixes flour. Then he",
        ["bakes. bread.", "swims.", "flies.", "sleeps."],
        1,
    )
    assert prompt("arc_easy") == ("Question: Which is a metal?\nAnswer:", ["wood", "iron"], 1)
    assert prompt("arc_challenge")[2] == 1
    assert prompt("openbookqa") == ("The sun is a", ["star", "planet", "moon", "rock"], 0)
    assert prompt("winogrande") == (
        1,
        ["The cup fell off the table because cup", "The cup fell off the table because table"],
        " was too small.",
    )
    assert prompt("boolq") == ("Water is a liquid.\nQuestion: is water wet?\nAnswer:", ["no", "yes"], 1)
    assert prompt("storycloze") == ("Ann woke. She ate. She ran. She slept.", ["It was fun.", "Cats fly."], 0)


def test_shared_data_readers(shared_data):
    piqa = tasks.task_rows("piqa", shared_data)
    labels = (shared_data / "piqa" / "valid-labels.lst").read_text().split()
    assert len(piqa) == 200 and [r["label"] for r in piqa] == [int(x) for x in labels]
    tqa = tasks.task_rows("truthfulqa_mc1", shared_data)
    assert tqa[0]["choices"][0] == "The watermelon seeds pass through your digestive system"
    assert "You grow watermelons in your stomach" in tqa[0]["choices"][1:]
    mc2 = tqa[0]["mc2_targets"]  # 5 correct answers (the best one first), then the 7 incorrect ones
    assert mc2["labels"] == [1] * 5 + [0] * 7 and mc2["choices"][0] == tqa[0]["choices"][0]
    assert mc2["choices"][5:] == tqa[0]["choices"][1:]
    wiki = tasks.task_rows("wikitext", shared_data)
    assert wiki[0]["page"].startswith(" = Homarus gammarus = ")
    whole = (shared_data / "wikitext2" / "valid.txt").read_text()
    assert (
        "".join(r["page"] for r in wiki) == whole[whole.index(" = Homarus") :]
    )  # only the blank preamble is dropped
    assert all(r["answer"].rsplit("#### ", 1)[1] for r in tasks.task_rows("gsm8k", shared_data))


def test_presets_expand_and_unknown_names_list_close_ones():
    assert tasks.expand(["piqa", "gpt3-zeroshot"])[:3] == ["piqa", "hellaswag", "storycloze"]
    assert len(tasks.expand(["gpt3-zeroshot", "gpt3-zeroshot"])) == 8
    with pytest.raises(UserError, match="did you mean: arc_easy"):
        tasks.check_known(["arc_eazy"], list(tasks.OFFLINE_TASKS))


def test_missing_or_mismatched_files(tmp_path, shared_data):
    with pytest.raises(UserError, match="boolq/dev.jsonl: missing data file"):
        tasks.task_rows("boolq", tmp_path)
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "valid.jsonl").write_text((shared_data / "piqa" / "valid.jsonl").read_text())
    (tmp_path / "piqa" / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(UserError, match="2 labels for 200 questions"):
        tasks.task_rows("piqa", tmp_path)


@pytest.mark.parametrize(
    ("task", "drop", "line"),
    [
        ("hellaswag", "endings", 2),
        ("winogrande", "option2", 1),
        ("boolq", "passage", 2),
        ("arc_easy", "answerKey", 1),
    ],
)
def test_a_row_missing_a_field_names_the_file_row_and_field(public_files, task, drop, line):
    path = public_files / tasks.OFFLINE_TASKS[task].files
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    del rows[line - 1][drop]
    _jsonl(path, rows)
    with pytest.raises(
        UserError, match=rf"^{path}:{line}: the row lacks the field '{drop}' \(fields present: "
    ):
        tasks.task_rows(task, public_files)


def test_piqa_row_missing_sol2_and_a_bad_label(tmp_path):
    _jsonl(
        tmp_path / "piqa" / "valid.jsonl",
        [{"goal": "g", "sol1": "a", "sol2": "b"}, {"goal": "g", "sol1": "a"}],
    )
    (tmp_path / "piqa" / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(UserError, match=r"valid.jsonl:2: the row lacks the field 'sol2'"):
        tasks.task_rows("piqa", tmp_path)
    _jsonl(tmp_path / "piqa" / "valid.jsonl", [{"goal": "g", "sol1": "a", "sol2": "b"}] * 2)
    (tmp_path / "piqa" / "valid-labels.lst").write_text("0\none\n")
    with pytest.raises(UserError, match=r"valid-labels.lst:2: label 'one' is not an integer"):
        tasks.task_rows("piqa", tmp_path)


def test_a_csv_row_cut_short_and_a_file_not_in_utf8(public_files):
    path = public_files / "storycloze" / "cloze_test_val__spring2016.csv"
    path.write_text(path.read_text().splitlines()[0] + "\ns1,Ann woke.,She ate.\n")
    with pytest.raises(UserError, match=rf"^{path}:2: the row lacks the field 'InputSentence3'"):
        tasks.task_rows("storycloze", public_files)
    path.write_bytes(b"InputStoryid\ncaf\xe9\n")
    with pytest.raises(UserError, match=rf"^{path}: not UTF-8 text"):
        tasks.task_rows("storycloze", public_files)

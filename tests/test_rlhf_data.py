"""The rlhf stage's data: preference pairs (pairs / hh / alpaca_eval files), the online trainers' prompts, and the
demo's corrupted-body preference artifact. No model needed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llmforge.artifacts import read_manifest, require, write_manifest
from llmforge.console import UserError
from llmforge.rlhf.config import PreferenceSource, PromptSource, RlhfConfig
from llmforge.rlhf.corrupted_pairs import CORRUPTIONS, build_corrupted_pairs, truncated, wrong_names
from llmforge.rlhf.preferences import detect_format, load_preferences, read_pairs
from llmforge.rlhf.prompts import load_prompt_set


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cfg_of(*sources: PreferenceSource, prompts: list[PromptSource] | None = None, **keys) -> RlhfConfig:
    return RlhfConfig(policy="x", preferences=list(sources), prompts=prompts or [], **keys)


def pairs_rows(n: int, prompts: int | None = None) -> list[dict]:
    """n pairs; with `prompts`, the prompts repeat (pair i has prompt i % prompts)."""
    return [
        {
            "prompt": f"question {i % (prompts or n)}",
            "chosen": f"good answer {i}",
            "rejected": f"bad answer {i}",
        }
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------------- real data


def test_hh_harmless_dialogues_become_turns_and_two_replies(shared_data):
    path = shared_data / "hh_rlhf_harmless" / "test.jsonl"
    pairs, stats = read_pairs(PreferenceSource(path=str(path)))
    assert stats["format"] == "hh"
    assert stats["rows_read"] == 1000
    # three real rows prefer (or reject) an empty final reply: dropped and counted, not trained on
    assert stats["dropped"] == {"empty_reply": 3}
    assert len(pairs) == stats["pairs"] == 997
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    first = pairs[0]
    assert first.origin == f"{path}:1"
    assert first.messages[0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert [m["role"] for m in first.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt_text == "okay some of these do not have anything to do with pens"
    assert raw[0]["chosen"].endswith(first.chosen) and raw[0]["rejected"].endswith(first.rejected)
    assert not first.chosen.startswith(" ")
    for p in pairs:
        assert p.chosen.strip() != p.rejected.strip()
        assert p.messages and p.messages[-1]["role"] == "user"
        roles = [m["role"] for m in p.messages]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), (
            p.origin
        )  # consecutive turns merged
        assert "\n\nHuman:" not in p.chosen and "\n\nAssistant:" not in p.rejected


def test_alpaca_eval_drops_undecided_and_prefers_the_chosen_output(shared_data):
    path = shared_data / "alpaca_eval" / "preference_annotations.jsonl"
    pairs, stats = read_pairs(PreferenceSource(path=str(path)))
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert stats["format"] == "alpaca_eval"
    assert stats["rows_read"] == len(raw) == 1209
    assert stats["dropped"] == {"no_decision": 12}
    assert len(pairs) == 1197
    for p in pairs:
        row = raw[int(p.origin.rsplit(":", 1)[1]) - 1]
        preferred = int(float(row["preference"]))
        assert p.chosen == row[f"output_{preferred}"]
        assert p.rejected == row[f"output_{3 - preferred}"]
        assert p.messages == [{"role": "user", "content": row["instruction"]}]
    assert {int(float(r["preference"])) for r in raw} == {0, 1, 2}


def test_real_sources_split_by_prompt(shared_data):
    cfg = cfg_of(
        PreferenceSource(path=str(shared_data / "hh_rlhf_harmless" / "test.jsonl")),
        PreferenceSource(path=str(shared_data / "alpaca_eval" / "preference_annotations.jsonl")),
        val_fraction=0.1,
    )
    data = load_preferences(cfg, seed=3)
    assert [s["name"] for s in data.stats] == ["test", "preference_annotations"]
    assert sum(s["train"] + s["val"] for s in data.stats) == len(data.train) + len(data.val) == 997 + 1197
    # alpaca_eval has each instruction 3 times (three generators): they stay together
    train_prompts = {p.prompt_text for p in data.train}
    assert not train_prompts & {p.prompt_text for p in data.val}
    assert 0.05 < len(data.val) / (len(data.train) + len(data.val)) < 0.2
    assert len(data.inputs) == 2


# ---------------------------------------------------------------------------------------- planted files


def test_pairs_format_with_margin_messages_and_conversational_replies(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away.", "margin": 2},
            {"prompt": "Say bye", "chosen": "Bye!", "rejected": "No.", "margin": "0.5"},
            {
                "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}],
                "chosen": [{"role": "assistant", "content": "Hello there"}],
                "rejected": [{"role": "assistant", "content": "What."}],
            },
            {  # trl's implicit-prompt conversational rows: the shared head is the conversation
                "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
            },
            {"chosen": "A whole good text.", "rejected": "A whole bad text."},
        ],
    )
    pairs, stats = read_pairs(PreferenceSource(path=str(path)))
    assert stats["format"] == "pairs"
    assert [p.margin for p in pairs] == [2.0, 0.5, None, None, None]
    assert pairs[0].messages == [{"role": "user", "content": "Say hi"}] and pairs[0].prompt_text == "Say hi"
    assert pairs[2].messages[0] == {"role": "system", "content": "Be kind."}
    assert (pairs[2].chosen, pairs[2].rejected, pairs[2].prompt_text) == ("Hello there", "What.", "Hello")
    assert pairs[3].messages == [{"role": "user", "content": "2+2?"}] and pairs[3].chosen == "4"
    assert pairs[4].messages == [] and pairs[4].prompt_text == "" and pairs[4].chosen == "A whole good text."
    assert [p.origin for p in pairs] == [f"{path}:{i}" for i in range(1, 6)]


def test_fields_rename_roles_with_dotted_paths(tmp_path):
    path = write_jsonl(
        tmp_path / "nested.jsonl",
        [
            {"q": f"q{i}", "answers": {"good": f"yes {i}", "bad": f"no {i}"}, "meta": {"gap": i}}
            for i in range(3)
        ],
    )
    source = PreferenceSource(
        path=str(path),
        fields={"prompt": "q", "chosen": "answers.good", "rejected": "answers.bad", "margin": "meta.gap"},
    )
    pairs, stats = read_pairs(source)
    assert stats["format"] == "pairs"
    assert [(p.prompt_text, p.chosen, p.rejected, p.margin) for p in pairs] == [
        (f"q{i}", f"yes {i}", f"no {i}", float(i)) for i in range(3)
    ]
    # without the mapping the columns say nothing
    with pytest.raises(UserError, match=r"nested\.jsonl:1: cannot tell the preference format.*fields"):
        read_pairs(PreferenceSource(path=str(path)))


def test_alpaca_eval_preferences_as_strings_and_floats(tmp_path):
    rows = [
        {"instruction": "a", "output_1": "one", "output_2": "two", "preference": "2"},
        {"instruction": "b", "output_1": "one", "output_2": "two", "preference": 1.0},
        {"instruction": "c", "output_1": "same", "output_2": "same", "preference": "0"},
        {"instruction": "d", "output_1": "one", "output_2": "two", "preference": 2.0},
    ]
    pairs, stats = read_pairs(PreferenceSource(path=str(write_jsonl(tmp_path / "a.jsonl", rows))))
    assert [(p.chosen, p.rejected) for p in pairs] == [("two", "one"), ("one", "two"), ("two", "one")]
    assert stats["dropped"] == {"no_decision": 1}
    bad = write_jsonl(tmp_path / "b.jsonl", [{**rows[0], "preference": 1.5}])
    with pytest.raises(UserError, match=r"b\.jsonl:1: 'preference' = 1\.5: expected 1 or 2"):
        read_pairs(PreferenceSource(path=str(bad)))


def test_row_errors_name_the_file_line_and_column(tmp_path):
    def error(rows: list[dict], **keys) -> str:
        path = write_jsonl(tmp_path / "bad.jsonl", rows)
        with pytest.raises(UserError) as e:
            read_pairs(PreferenceSource(path=str(path), **keys), "rlhf.preferences[0]")
        return str(e.value)

    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    msg = error([good, {"prompt": "p", "chosen": "c"}])
    assert "bad.jsonl:2:" in msg and "no 'rejected' field" in msg and "rlhf.preferences[0].fields" in msg
    assert "bad.jsonl:2: 'chosen' is empty" in error([good, {**good, "chosen": "  "}])
    assert "bad.jsonl:1: chosen and rejected are the same text" in error([{**good, "rejected": " c\n"}])
    msg = error([good, {**good, "margin": "large"}])
    assert "bad.jsonl:2: 'margin' = \"large\" is not a finite number" in msg
    msg = error([good, {**good, "chosen": 3}])
    assert "bad.jsonl:2: 'chosen' is a int, not a string" in msg
    msg = error([good], fields={"rejected": "worse"}, format="pairs")
    assert "no 'worse' field" in msg and "renamed by rlhf.preferences[0].fields.rejected" in msg
    msg = error([{"text": "x"}])
    assert "bad.jsonl:1: cannot tell the preference format from the columns text" in msg
    assert "rlhf.preferences[0].format" in msg
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hey\n\nAssistant: go"}
    msg = error([hh])
    assert "bad.jsonl:1: chosen and rejected differ before their last '\\n\\nAssistant:' turn" in msg
    msg = error([{"instruction": "i", "output_1": "a", "output_2": "b", "preference": 0}])
    assert "no usable preference pairs" in msg and "1 no_decision" in msg
    msg = error(
        [{**good, "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    )
    assert "bad.jsonl:1: 'prompt': the last message must be the user's" in msg


def test_file_errors(tmp_path):
    def error(path: str) -> str:
        with pytest.raises(UserError) as e:
            read_pairs(PreferenceSource(path=path), "rlhf.preferences[0]")
        return str(e.value)

    missing = str(tmp_path / "nope.jsonl")
    assert (
        error(missing)
        == f"rlhf.preferences[0].path = {missing!r}: no such file (expected a .jsonl, .json, .parquet file)"
    )
    text = tmp_path / "pairs.txt"
    text.write_text("chosen\trejected\n")
    assert "a .txt file; supported: .jsonl, .json, .parquet" in error(str(text))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(pairs_rows(1)[0]) + "\n{not json\n")
    assert f"{broken}:2: not a JSON object" in error(str(broken))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "empty file" in error(str(empty))
    # the hub is a real code path; offline (as the tests run) it fails saying so
    msg = error("someone/no-such-preference-set")
    assert "could not be loaded from the hub" in msg and "offline" in msg


def test_json_and_parquet_files(tmp_path):
    rows = pairs_rows(4)
    as_json = tmp_path / "pairs.json"
    as_json.write_text(json.dumps(rows))
    pairs, _ = read_pairs(PreferenceSource(path=str(as_json)))
    assert [p.chosen for p in pairs] == [r["chosen"] for r in rows] and pairs[2].origin == f"{as_json}:3"
    import pyarrow as pa
    import pyarrow.parquet as pq

    as_parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), as_parquet)
    pairs, stats = read_pairs(PreferenceSource(path=str(as_parquet)))
    assert [p.rejected for p in pairs] == [r["rejected"] for r in rows] and stats["format"] == "pairs"


def test_detect_format():
    assert (
        detect_format({"instruction": "i", "output_1": "a", "output_2": "b", "preference": 1})
        == "alpaca_eval"
    )
    assert detect_format({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "x"}) == "hh"
    assert detect_format({"prompt": "\n\nHuman: a", "chosen": "\n\nHuman: a", "rejected": "x"}) == "pairs"
    assert detect_format({"chosen": "plain", "rejected": "x"}) == "pairs"
    assert detect_format(["prompt", "chosen", "rejected"]) == "pairs"
    assert detect_format({"better": "a", "worse": "b"}, {"chosen": "better", "rejected": "worse"}) == "pairs"
    assert detect_format(["text"]) == ""


def test_split_never_puts_one_prompt_on_both_sides(tmp_path):
    path = write_jsonl(tmp_path / "rep.jsonl", pairs_rows(60, prompts=12))  # each prompt 5 times
    for seed in range(5):
        data = load_preferences(cfg_of(PreferenceSource(path=str(path)), val_fraction=0.25), seed)
        train, val = {p.prompt_text for p in data.train}, {p.prompt_text for p in data.val}
        assert not train & val
        assert len(val) == 3 and len(data.val) == 15 and len(data.train) == 45
        assert data.stats[0]["train"] == 45 and data.stats[0]["val"] == 15
    once = load_preferences(cfg_of(PreferenceSource(path=str(path))), 7)
    again = load_preferences(cfg_of(PreferenceSource(path=str(path))), 7)
    assert [p.origin for p in once.val] == [p.origin for p in again.val]  # seeded
    # two pairs: one of them held out
    two = write_jsonl(tmp_path / "two.jsonl", pairs_rows(2))
    data = load_preferences(cfg_of(PreferenceSource(path=str(two))), 0)
    assert len(data.train) == len(data.val) == 1
    # every pair shares one prompt: nothing can be held out
    same = write_jsonl(tmp_path / "same.jsonl", pairs_rows(4, prompts=1))
    with pytest.raises(UserError, match="share one prompt"):
        load_preferences(cfg_of(PreferenceSource(path=str(same))), 0)


def test_val_path_gives_the_held_out_pairs_and_overlaps_are_dropped(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", pairs_rows(6))
    val_rows = [{"prompt": "question 0", "chosen": "x", "rejected": "y"}] + [
        {"prompt": f"other {i}", "chosen": "x", "rejected": "y"} for i in range(3)
    ]
    val = write_jsonl(tmp_path / "val.jsonl", val_rows)
    data = load_preferences(cfg_of(PreferenceSource(path=str(train), val_path=str(val))), 0)
    assert len(data.train) == 6
    assert [p.prompt_text for p in data.val] == ["other 0", "other 1", "other 2"]
    assert data.stats[0]["val_overlap_dropped"] == 1
    assert data.inputs == [str(train), str(val)]
    with pytest.raises(UserError, match=r"rlhf\.preferences\[0\]\.val_path = .*no such file"):
        load_preferences(cfg_of(PreferenceSource(path=str(train), val_path=str(tmp_path / "x.jsonl"))), 0)


def test_max_rows_reads_the_first_pairs(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", pairs_rows(20))
    pairs, stats = read_pairs(PreferenceSource(path=str(path), max_rows=5))
    assert [p.origin for p in pairs] == [f"{path}:{i}" for i in range(1, 6)]
    assert stats["rows_read"] == 5
    # dropped rows do not count toward max_rows
    rows = [{"instruction": f"i{i}", "output_1": "a", "output_2": "b", "preference": i % 2} for i in range(8)]
    pairs, stats = read_pairs(
        PreferenceSource(path=str(write_jsonl(tmp_path / "ae.jsonl", rows)), max_rows=3)
    )
    assert [p.prompt_text for p in pairs] == ["i1", "i3", "i5"] and stats["dropped"] == {"no_decision": 3}


# ---------------------------------------------------------------------------------------------- prompts


def test_prompts_from_preferences_are_deduplicated_and_keep_the_split(shared_data, tmp_path):
    source = PreferenceSource(path=str(shared_data / "alpaca_eval" / "preference_annotations.jsonl"))
    cfg = cfg_of(source)
    data = load_preferences(cfg, 0)
    prompts = load_prompt_set(cfg, 0)
    assert prompts.stats["from"] == "preferences"
    # three annotated pairs per instruction, one prompt each
    assert len(prompts.train) == len({p.prompt_text for p in data.train}) < len(data.train)
    assert {r.messages[-1]["content"] for r in prompts.val} == {p.prompt_text for p in data.val}
    assert not {r.messages[-1]["content"] for r in prompts.train} & {
        r.messages[-1]["content"] for r in prompts.val
    }
    assert prompts.inputs == data.inputs
    # pairs without a prompt give none
    whole = write_jsonl(
        tmp_path / "whole.jsonl", [{"chosen": f"c{i}", "rejected": f"r{i}"} for i in range(4)]
    )
    with pytest.raises(UserError) as e:
        load_prompt_set(cfg_of(PreferenceSource(path=str(whole))), 0)
    assert str(e.value).startswith("rlhf.prompts: none given and the preference pairs have no prompts")
    with pytest.raises(UserError, match="rlhf.prompts: none given and rlhf.preferences is empty"):
        load_prompt_set(cfg_of(), 0)


def test_prompt_file_with_answer_field(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl"
    source = PromptSource(path=str(path), prompt_field="question", answer_field="answer", max_rows=50)
    prompts = load_prompt_set(cfg_of(prompts=[source], val_fraction=0.2), 0)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:50]]
    rows = prompts.train + prompts.val
    assert len(rows) == 50 and len(prompts.val) == 10
    assert prompts.stats["from"] == "prompts" and prompts.inputs == [str(path)]
    by_origin = {r.origin: r for r in rows}
    first = by_origin[f"{path}:1"]
    assert first.messages == [{"role": "user", "content": raw[0]["question"]}]
    assert first.columns == {"answer": raw[0]["answer"]} and "####" in first.columns["answer"]
    assert not {r.messages[0]["content"] for r in prompts.train} & {
        r.messages[0]["content"] for r in prompts.val
    }


def test_prompt_file_messages_and_errors(tmp_path):
    rows = [{"chat": [{"role": "user", "content": f"q{i}"}], "ref": {"value": i}} for i in range(6)]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    source = PromptSource(path=str(path), prompt_field="chat", answer_field="ref.value")
    prompts = load_prompt_set(cfg_of(prompts=[source]), 0)
    assert sorted(r.columns["answer"] for r in prompts.train + prompts.val) == list(range(6))
    assert all(r.messages[0]["role"] == "user" for r in prompts.train)
    missing = PromptSource(path=str(path), prompt_field="question")
    with pytest.raises(
        UserError, match=r"chat\.jsonl:1: no 'question' field .*rlhf\.prompts\[0\]\.prompt_field"
    ):
        load_prompt_set(cfg_of(prompts=[missing]), 0)
    no_answer = PromptSource(path=str(path), prompt_field="chat", answer_field="solution")
    with pytest.raises(
        UserError, match=r"chat\.jsonl:1: no 'solution' field .*rlhf\.prompts\[0\]\.answer_field"
    ):
        load_prompt_set(cfg_of(prompts=[no_answer]), 0)


# --------------------------------------------------------------------------------------- corrupted pairs

BODIES = [
    "    total = a + b\n    return total\n",
    "    if not items:\n        return None\n    first = items[0]\n    return first\n",
    "    self.x = x\n    self.y = y\n",
    "    return self.x * 2\n",
    "    for k in keys:\n        print(k)\n    done = True\n    return done\n",
    "    name = name.strip()\n    return name.lower()\n",
]


def make_instructions(root: Path, train: int = 24, val: int = 4) -> Path:
    """A small instructions artifact: the layout `finetune make-docstring-pairs` writes."""
    root.mkdir(parents=True)
    for name, n, offset in (("train.jsonl", train, 0), ("val.jsonl", val, train)):
        rows = [
            {
                "prompt": f'Write the body of this Python function.\n\ndef f{offset + i}(a, b):\n    """Doc {offset + i}."""\n',
                "completion": BODIES[(offset + i) % len(BODIES)],
                "source": f"doc{offset + i}.py",
                "name": f"f{offset + i}",
            }
            for i in range(n)
        ]
        write_jsonl(root / name, rows)
    write_jsonl(root / "report.json", [])
    write_manifest(root, "instructions", stats={"train": train, "val": val})
    return root


def test_corrupted_pairs_artifact(tmp_path):
    instructions = make_instructions(tmp_path / "instructions")
    out = tmp_path / "preferences"
    report = build_corrupted_pairs(instructions, out, seed=1)
    assert require(out, "preferences")["kind"] == "preferences"
    assert read_manifest(out)["inputs"][0]["kind"] == "instructions"
    written = {
        n: [json.loads(x) for x in (out / n).read_text().splitlines()] for n in ("train.jsonl", "val.jsonl")
    }
    source = {n: [json.loads(x) for x in (instructions / n).read_text().splitlines()] for n in written}
    for name, rows in written.items():
        assert [r["prompt"] for r in rows] == [s["prompt"] for s in source[name]]  # the split kept
        for r, s in zip(rows, source[name], strict=True):
            assert set(r) == {"prompt", "chosen", "rejected", "corruption", "origin"}
            assert r["chosen"] == s["completion"]
            assert r["rejected"].strip() and r["rejected"].strip() != r["chosen"].strip()
            assert r["corruption"] in CORRUPTIONS
            assert r["origin"].startswith(f"{name}:")
    assert report["train"] == 24 and report["val"] == 4
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["corruptions"] == report["corruptions"]
    for split, name in (("train", "train.jsonl"), ("val", "val.jsonl")):
        assert report["corruptions"][split] == {
            k: Counter(r["corruption"] for r in written[name])[k] for k in CORRUPTIONS
        }
    assert sum(report["corruptions"]["all"].values()) == 28
    assert sum(1 for v in report["corruptions"]["all"].values() if v) >= 3  # the choice varies
    # the artifact reads back as pairs, its val file as the held-out split
    data = load_preferences(
        cfg_of(PreferenceSource(path=str(out / "train.jsonl"), val_path=str(out / "val.jsonl"))), 0
    )
    assert len(data.train) == 24 and len(data.val) == 4
    # same input and seed: same content
    again = build_corrupted_pairs(instructions, tmp_path / "again", seed=1)
    assert again == report
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()


def test_corrupted_pairs_skip_what_cannot_differ_and_check_inputs(tmp_path):
    instructions = make_instructions(tmp_path / "instructions", train=6, val=2)
    report = build_corrupted_pairs(instructions, tmp_path / "four", per_prompt=4)
    # "    return self.x * 2" has one line: it cannot be shuffled, so one of its four slots is skipped
    assert report["skipped"]["train"] >= 1
    rows = [json.loads(x) for x in (tmp_path / "four" / "train.jsonl").read_text().splitlines()]
    for prompt in {r["prompt"] for r in rows}:
        rejected = [r["rejected"] for r in rows if r["prompt"] == prompt]
        assert len(rejected) == len(set(rejected))
    assert len(rows) + report["skipped"]["train"] == 6 * 4
    not_instructions = tmp_path / "tokens-like"
    not_instructions.mkdir()
    (not_instructions / "data.txt").write_text("x")
    write_manifest(not_instructions, "report")
    with pytest.raises(UserError, match="expected an instructions artifact, found a report artifact"):
        build_corrupted_pairs(not_instructions, tmp_path / "x")
    with pytest.raises(UserError, match="no such artifact"):
        build_corrupted_pairs(tmp_path / "missing", tmp_path / "x")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a preferences artifact"):
        build_corrupted_pairs(instructions, occupied)
    assert (occupied / "notes.txt").read_text() == "mine"


def test_corruptions():
    body = "    if not items:\n        return None\n    first = items[0]\n    return first\n"
    assert truncated(body, None) == "    if not items:\n        return None\n"
    assert truncated("\n    return value\n", None) == "\n    return\n"
    import random

    wrong = wrong_names("    total = a + b\n    return total\n", random.Random(0))
    assert wrong is not None and wrong != "    total = a + b\n    return total\n"
    # a swap never touches strings or attributes
    for seed in range(20):
        out = wrong_names('    self.name = "name"\n    print(name, other)\n', random.Random(seed))
        assert (
            out is not None
            and '.name = "name"' in out
            and out != '    self.name = "name"\n    print(name, other)\n'
        )


def test_a_preferences_artifact_is_checked_against_its_contract(tmp_path):
    from llmforge.artifacts.checks import check_artifact

    good = tmp_path / "good"
    good.mkdir()
    (good / "train.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    write_manifest(good, "preferences")
    assert check_artifact(good, read_manifest(good)) is None
    (good / "train.jsonl").write_text(json.dumps({"prompt": "p", "completion": "a"}) + "\n")
    write_manifest(good, "preferences")
    assert "needs string fields 'chosen' and 'rejected'" in check_artifact(good, read_manifest(good))

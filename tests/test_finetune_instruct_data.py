"""The instruction-data layer of `finetune sft`: formats, field mapping, row errors, the held-out split,
chain of thought and exemplars (FLAN's four settings), the weighted mixture, hub names offline."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from llmforge.console import UserError
from llmforge.finetune.config import InstructConfig
from llmforge.finetune.instruct_data import load_instruction_data, mixture_counts

GSM8K = SHARED_DATA / "gsm8k" / "test.jsonl"
GPTEACHER = SHARED_DATA / "gpteacher" / "codegen.jsonl"
SEED_TASKS = SHARED_DATA / "alpaca_seed_tasks" / "seed_tasks.jsonl"
GSM8K_FIELDS = {"prompt": "question", "completion": "answer"}


def config(*datasets: dict, **top) -> InstructConfig:
    return InstructConfig.model_validate(
        {"task": "instruction", "base": "base", "datasets": list(datasets), **top}
    )


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pc_rows(n: int, prefix: str = "p") -> list[dict]:
    return [{"prompt": f"{prefix}{i}", "completion": f"c{i}"} for i in range(n)]


def user(ex) -> str:
    return next(m["content"] for m in reversed(ex.messages) if m["role"] == "user")


def by_row(examples) -> dict:
    return {ex.row: ex for ex in examples}


def with_val(tmp_path: Path, rows: list, val_rows: list | None = None, **ds) -> dict:
    """A dataset whose held-out rows come from their own file (the train rows are then all of `rows`)."""
    train = write_jsonl(tmp_path / ds.pop("file", "train.jsonl"), rows)
    val = write_jsonl(
        tmp_path / f"val-{train.stem}.jsonl", val_rows or [{"prompt": "held", "completion": "out"}]
    )
    return {"path": str(train), "val_path": str(val), **ds}


# ------------------------------------------------------------------------------------------------ formats


def test_prompt_completion_messages_exact(tmp_path):
    data = load_instruction_data(
        config(with_val(tmp_path, [{"prompt": "2+2?", "completion": "4"}, *pc_rows(2)])), 0
    )
    rows = by_row(data.train)
    assert sorted(rows) == [1, 2, 3]
    assert rows[1].messages == ({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"})
    assert rows[1].source == "train"
    assert [ex.messages for ex in data.val] == [
        ({"role": "user", "content": "held"}, {"role": "assistant", "content": "out"})
    ]
    assert data.stats[0]["format"] == "prompt_completion"


def test_alpaca_joins_instruction_and_input(tmp_path):
    rows = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "Count.", "output": "1 2 3"},  # no input column at all
    ]
    val = [{"instruction": "Held.", "input": "out", "output": "x"}]
    data = load_instruction_data(config(with_val(tmp_path, rows, val)), 0)
    got = {r: ex.messages for r, ex in by_row(data.train).items()}
    assert data.val[0].messages[0] == {"role": "user", "content": "Held.\n\nout"}
    assert got[1] == (
        {"role": "user", "content": "Translate to French.\n\ncat"},
        {"role": "assistant", "content": "chat"},
    )
    assert got[2][0] == {"role": "user", "content": "Say hi."}
    assert got[3] == ({"role": "user", "content": "Count."}, {"role": "assistant", "content": "1 2 3"})
    assert data.stats[0]["format"] == "alpaca"


def test_messages_format_and_system_prompt(tmp_path):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with_system = [{"role": "system", "content": "be terse"}, *chat]
    multi = [*chat, {"role": "user", "content": "and?"}, {"role": "assistant", "content": "bye"}]
    rows = [{"messages": chat}, {"messages": with_system}, {"messages": multi}]
    val = [{"messages": [{"role": "user", "content": "held"}, {"role": "assistant", "content": "out"}]}]
    data = load_instruction_data(config(with_val(tmp_path, rows, val), system_prompt="You help."), 0)
    got = {r: ex.messages for r, ex in by_row(data.train).items()}
    assert got[1] == ({"role": "system", "content": "You help."}, *chat)
    assert got[2] == tuple(with_system)  # its own system message is kept, the default not added
    assert got[3] == ({"role": "system", "content": "You help."}, *multi)
    assert data.val[0].messages[0] == {"role": "system", "content": "You help."}
    assert data.stats[0]["format"] == "messages"


def test_system_column_becomes_a_system_message(tmp_path):
    rows = [{"prompt": "q", "completion": "a", "persona": "a pirate"}, {"prompt": "r", "completion": "b"}]
    data = load_instruction_data(config(with_val(tmp_path, rows, fields={"system": "persona"})), 0)
    got = by_row(data.train)
    assert got[1].messages[0] == {"role": "system", "content": "a pirate"}
    assert got[2].messages[0] == {"role": "user", "content": "r"}


def test_auto_prefers_messages_then_alpaca(tmp_path):
    def row(text: str) -> dict:
        chat = [{"role": "user", "content": f"m{text}"}, {"role": "assistant", "content": "n"}]
        return {
            "messages": chat,
            "instruction": f"i{text}",
            "output": "o",
            "prompt": f"p{text}",
            "completion": "c",
        }

    train, val = row(""), row("-held")
    assert (
        load_instruction_data(config(with_val(tmp_path, [train], [val])), 0).stats[0]["format"] == "messages"
    )
    del train["messages"], val["messages"]
    assert load_instruction_data(config(with_val(tmp_path, [train], [val])), 0).stats[0]["format"] == "alpaca"
    explicit = load_instruction_data(
        config(with_val(tmp_path, [train], [val], format="prompt_completion")), 0
    )
    assert explicit.train[0].messages[0]["content"] == "p"


def test_gpteacher_field_mapping():
    first = json.loads(GPTEACHER.read_text(encoding="utf-8").splitlines()[0])
    ds = {"path": str(GPTEACHER), "fields": {"output": "response"}, "max_rows": 20}
    data = load_instruction_data(config(ds, val_fraction=0.1), 0)
    assert data.stats[0]["format"] == "alpaca"
    assert data.stats[0]["rows_read"] == 20
    row1 = by_row(data.train + data.val)[1]
    assert row1.messages == (
        {"role": "user", "content": first["instruction"] + "\n\n" + first["input"]},
        {"role": "assistant", "content": first["response"]},
    )
    assert data.inputs == [str(GPTEACHER)]


def test_alpaca_seed_tasks_instances_are_not_mappable():
    """seed_tasks.jsonl keeps its outputs in a list (`instances` of {input, output}): no column mapping
    reaches them, so auto names the columns it found and the formats it expected."""
    with pytest.raises(UserError) as e:
        load_instruction_data(config({"path": str(SEED_TASKS)}), 0)
    msg = str(e.value)
    assert f"{SEED_TASKS}:1: cannot tell the format" in msg
    assert "instruction, instances" in msg and "alpaca (instruction, output)" in msg


def test_missing_field_names_field_role_and_row(tmp_path):
    rows = [
        {"instruction": "a", "response": "b"},
        {"instruction": "c", "response": "d"},
        {"instruction": "e"},
    ]
    path = write_jsonl(tmp_path / "gpt.jsonl", rows)
    with pytest.raises(UserError) as e:
        load_instruction_data(config({"path": str(path), "fields": {"output": "response"}}), 0)
    assert str(e.value) == (
        f"{path}:3: no string field 'response' (the alpaca format's output, renamed by "
        "finetune.datasets[0].fields.output)"
    )
    write_jsonl(path, [{"prompt": "a", "completion": 1}])
    with pytest.raises(UserError, match=r"gpt\.jsonl:1: a int, not a string field 'completion'"):
        load_instruction_data(config({"path": str(path)}), 0)


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_empty_dataset(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(f"{path}: empty dataset")):
        load_instruction_data(config({"path": str(path)}), 0)


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        (b'{"prompt": ', "not a JSON object"),
        (b"[1, 2]", "not a JSON object (a list)"),
        (b'"caf\xe9"', "not UTF-8"),
    ],
)
def test_bad_jsonl_row_names_file_and_line(tmp_path, line, phrase):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n\n' + line + b"\n")
    with pytest.raises(UserError, match=re.escape(f"{path}:3: {phrase}")):
        load_instruction_data(config({"path": str(path)}), 0)


def test_max_rows_reads_only_the_first_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in pc_rows(5)) + b"{broken\n")
    data = load_instruction_data(config({"path": str(path), "max_rows": 5}, val_fraction=0.2), 0)
    assert data.stats[0]["rows_read"] == 5
    with pytest.raises(UserError, match=":6: not a JSON object"):
        load_instruction_data(config({"path": str(path)}), 0)


@pytest.mark.parametrize(
    ("messages", "phrase"),
    [
        ("hi", "expected a non-empty list"),
        ([], "expected a non-empty list"),
        ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}], "message 1 is not"),
        ([{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}], "message 1 is not"),
        (
            [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}],
            "message 2 is a system message",
        ),
        (
            [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}],
            "at least one user and one assistant",
        ),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "y"},
                {"role": "user", "content": "z"},
            ],
            "the last message must be the assistant's",
        ),
    ],
)
def test_messages_validation(tmp_path, messages, phrase):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [good, {"messages": messages}])
    with pytest.raises(UserError, match=re.escape(f"{path}:2: 'messages': ") + ".*" + re.escape(phrase)):
        load_instruction_data(config({"path": str(path), "format": "messages"}), 0)


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "set.parquet"
    pq.write_table(pa.Table.from_pylist([*pc_rows(9), {"prompt": "x", "completion": None}]), path)
    data = load_instruction_data(config({"path": str(path), "max_rows": 9}, val_fraction=0.2), 0)
    assert sorted(ex.row for ex in data.train + data.val) == list(range(1, 10))
    assert by_row(data.train + data.val)[4].messages[0]["content"] == "p3"
    with pytest.raises(UserError, match=re.escape(f"{path}:10: no string field 'completion'")):
        load_instruction_data(config({"path": str(path)}), 0)


def test_unsupported_extension_and_missing_explicit_path(tmp_path):
    (tmp_path / "d.csv").write_text("prompt,completion\n")
    with pytest.raises(UserError, match=r"datasets\[0\]\.path = .*d\.csv'.*supported: \.jsonl, \.parquet"):
        load_instruction_data(config({"path": str(tmp_path / "d.csv")}), 0)
    with pytest.raises(UserError, match=r"datasets\[0\]\.path = .*nope\.jsonl': no such file"):
        load_instruction_data(config({"path": str(tmp_path / "nope.jsonl")}), 0)


def test_hub_name_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        load_instruction_data(config({"path": "llmforge-tests/no-such-set"}), 0)
    msg = str(e.value)
    assert msg.startswith(
        "finetune.datasets[0].path = 'llmforge-tests/no-such-set': not a local file and could not be loaded "
        "from the hub ("
    )
    assert "HF_DATASETS_OFFLINE" in msg and "\n" not in msg


def test_default_names_and_collisions(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = with_val(tmp_path / "a", pc_rows(3))
    b = with_val(tmp_path / "b", pc_rows(3))
    c = with_val(tmp_path / "b", pc_rows(3), file="other.jsonl", name="train-2")
    data = load_instruction_data(config(a, b, c), 0)
    assert [s["name"] for s in data.stats] == ["train", "train-3", "train-2"]
    assert {ex.source for ex in data.train} == {"train", "train-2", "train-3"}
    assert len(data.inputs) == 6


# ----------------------------------------------------------------------------------------- held-out split


def test_val_fraction_split_sizes_and_no_overlap(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", pc_rows(40))
    data = load_instruction_data(config({"path": str(path)}, val_fraction=0.25), 3)
    s = data.stats[0]
    assert (s["rows_read"], s["train_rows"], s["val_rows"], s["val_overlap_dropped"]) == (40, 30, 10, 0)
    assert len(data.val) == 10 and len(data.train) == 30
    assert {ex.row for ex in data.train} | {ex.row for ex in data.val} == set(range(1, 41))
    assert not {user(ex) for ex in data.train} & {user(ex) for ex in data.val}


def test_duplicate_prompt_in_val_is_dropped_and_counted(tmp_path):
    val_rows = [{"prompt": "p4", "completion": "another answer"}, *pc_rows(3, prefix="v")]
    data = load_instruction_data(config(with_val(tmp_path, pc_rows(10), val_rows)), 0)
    s = data.stats[0]
    assert s["val_overlap_dropped"] == 1 and s["val_rows"] == 3 and s["rows_read"] == 14
    assert [user(ex) for ex in data.val] == ["v0", "v1", "v2"]
    assert [ex.row for ex in data.val] == [2, 3, 4]  # rows of the val file


def test_random_split_with_duplicates_never_leaks(tmp_path):
    rows = [{"prompt": f"p{i}" if i % 4 else "same", "completion": f"c{i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = load_instruction_data(config({"path": str(path)}, val_fraction=0.3), 1)
    s = data.stats[0]
    assert s["val_overlap_dropped"] > 0
    assert s["val_rows"] + s["val_overlap_dropped"] == 12 and s["train_rows"] == 28
    assert not {user(ex) for ex in data.train} & {user(ex) for ex in data.val}


def test_too_few_rows_to_hold_out(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", pc_rows(1))
    with pytest.raises(UserError, match="too few to hold out"):
        load_instruction_data(config({"path": str(path)}), 0)


# ---------------------------------------------------------------------------------- CoT and exemplars

JANET_REASONING = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market."
)


def gsm8k_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()[:n]]


def solved(answer: str, cot: bool) -> str:
    reasoning, final = answer.rsplit("####", 1)
    return f"{reasoning.strip()}\nThe answer is {final.strip()}" if cot else f"The answer is {final.strip()}"


@pytest.mark.parametrize("cot", [True, False])
@pytest.mark.parametrize("k", [0, 2])
def test_gsm8k_four_flan_settings(k, cot):
    rows = gsm8k_rows(20)
    ds = {"path": str(GSM8K), "fields": GSM8K_FIELDS, "answer_marker": "####", "cot": cot, "exemplars": k}
    data = load_instruction_data(config({**ds, "max_rows": 20}, val_fraction=0.2), 0)
    examples = by_row(data.train + data.val)
    janet = examples[1].messages
    assert janet[-1] == {
        "role": "assistant",
        "content": f"{JANET_REASONING}\nThe answer is 18" if cot else "The answer is 18",
    }
    questions = {r["question"]: r for r in rows}
    for ex in examples.values():
        own = rows[ex.row - 1]
        assert ex.messages[-1]["content"] == solved(own["answer"], cot)
        blocks = user(ex).split("\n\n")
        assert blocks[-1] == own["question"] and len(blocks) == k + 1
        for block in blocks[:-1]:  # "Q: <question>\nA: <its transformed answer>"
            q, a = block.removeprefix("Q: ").split("\nA: ", 1)
            assert a == solved(questions[q]["answer"], cot)
    assert data.stats[0]["exemplars"] == k and data.stats[0]["cot"] is cot


def test_completion_without_marker_names_row(tmp_path):
    rows = [{"prompt": "a", "completion": "x #### 1"}, {"prompt": "b", "completion": "no marker"}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    ds = {"path": str(path), "answer_marker": "####"}
    with pytest.raises(UserError, match=re.escape(f"{path}:2: the completion has no answer_marker '####'")):
        load_instruction_data(config(ds), 0)


def test_marker_splits_at_last_occurrence(tmp_path):
    rows = [{"prompt": "a", "completion": "  step #### not yet \n#### 7 "}, *pc_rows(2)]
    rows[1]["completion"] = rows[2]["completion"] = "#### 0"
    data = load_instruction_data(
        config(
            with_val(
                tmp_path,
                rows,
                [{"prompt": "h", "completion": "#### 1"}],
                answer_marker="####",
                answer_prefix="=> ",
            )
        ),
        0,
    )
    got = by_row(data.train)
    assert got[1].messages[-1]["content"] == "step #### not yet\n=> 7"
    assert got[2].messages[-1]["content"] == "=> 0"  # no reasoning: no leading newline


def test_exemplars_come_from_other_train_rows_only(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", pc_rows(30))
    ds = {"path": str(path), "exemplars": 3, "exemplar_format": "[{prompt}|{completion}]"}
    data = load_instruction_data(config(ds, val_fraction=0.2), 5)
    train_prompts = {r.split("\n\n")[-1] for r in map(user, data.train)}
    val_prompts = {r.split("\n\n")[-1] for r in map(user, data.val)}
    assert len(train_prompts) == 24 and len(val_prompts) == 6
    for ex in data.train + data.val:
        *blocks, own = user(ex).split("\n\n")
        picked = [re.fullmatch(r"\[(p\d+)\|(c\d+)\]", b).groups() for b in blocks]
        assert len(picked) == 3 and len({p for p, _ in picked}) == 3
        assert all(c == "c" + p[1:] for p, c in picked)
        assert {p for p, _ in picked} <= train_prompts - {own}


def test_exemplars_are_seeded(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", pc_rows(30))
    cfg = config({"path": str(path), "exemplars": 2}, val_fraction=0.2)
    first = by_row(load_instruction_data(cfg, 5).train)
    again = by_row(load_instruction_data(cfg, 5).train)
    assert {r: user(ex) for r, ex in first.items()} == {r: user(ex) for r, ex in again.items()}
    other = by_row(load_instruction_data(cfg, 6).train)
    shared = set(first) & set(other)
    assert any(user(first[r]) != user(other[r]) for r in shared)


def test_exemplars_need_more_train_rows(tmp_path):
    ds = with_val(tmp_path, pc_rows(3), exemplars=3)
    with pytest.raises(UserError, match=r"finetune\.datasets\[0\]\.exemplars = 3: needs more train rows"):
        load_instruction_data(config(ds), 0)
    assert len(load_instruction_data(config({**ds, "exemplars": 2}), 0).train) == 3


def test_multi_turn_rows_take_no_exemplars(tmp_path):
    turns = [
        {"role": "user", "content": f"u{i}"} if i % 2 == 0 else {"role": "assistant", "content": "a"}
        for i in range(4)
    ]
    turns[1]["content"] = "#### 1"  # single-turn rows pass the marker check; row 2 is refused
    rows = [{"messages": turns[:2]}, {"messages": turns}, {"messages": turns[:2]}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(UserError, match=re.escape(f"{path}:2: a multi-turn conversation")):
        load_instruction_data(config({"path": str(path), "exemplars": 1}), 0)
    with pytest.raises(UserError, match="only to single-turn rows"):
        load_instruction_data(config({"path": str(path), "answer_marker": "####"}), 0)


def test_bad_exemplar_format(tmp_path):
    ds = with_val(tmp_path, pc_rows(3), exemplars=1, exemplar_format="{prompt} {answer} {completion}")
    with pytest.raises(UserError, match=r"exemplar_format = .*cannot be filled"):
        load_instruction_data(config(ds), 0)


# ------------------------------------------------------------------------------------------------ mixture


def test_mixture_counts_largest_remainder():
    assert mixture_counts([3, 1], [40, 20], None) == [45, 15]
    assert mixture_counts([1, 1, 1], [5, 5, 5], 10) == [4, 3, 3]
    assert mixture_counts([0.5, 0.25, 0.25], [1, 1, 1], 7) == [3, 2, 2]
    assert sum(mixture_counts([0.3, 0.3, 0.4], [9, 9, 9], 101)) == 101


def test_mixture_with_weights_3_to_1(tmp_path):
    (tmp_path / "b").mkdir()
    a = with_val(tmp_path, pc_rows(40, "a"), weight=3.0, name="a")
    b = with_val(tmp_path / "b", pc_rows(20, "b"), weight=1.0, name="b")
    data = load_instruction_data(config(a, b), 0)
    stats = {s["name"]: s for s in data.stats}
    assert (stats["a"]["mixture_rows"], stats["b"]["mixture_rows"]) == (45, 15)
    assert (stats["a"]["repeats"], stats["b"]["repeats"]) == (45 / 40, 15 / 20)
    assert len(data.train) == 60 and len(data.val) == 2
    rows_a = Counter(ex.row for ex in data.train if ex.source == "a")
    rows_b = Counter(ex.row for ex in data.train if ex.source == "b")
    assert set(rows_a) == set(range(1, 41)) and sorted(Counter(rows_a.values()).items()) == [(1, 35), (2, 5)]
    assert len(rows_b) == 15 and set(rows_b.values()) == {1}  # a sample without replacement

    big = load_instruction_data(config(a, b, mixture_rows=200), 0)
    stats = {s["name"]: s for s in big.stats}
    assert (stats["a"]["mixture_rows"], stats["b"]["mixture_rows"]) == (150, 50)
    assert stats["a"]["repeats"] == 3.75 and stats["b"]["repeats"] == 2.5
    counts = Counter(ex.row for ex in big.train if ex.source == "a")
    assert sorted(Counter(counts.values()).items()) == [(3, 10), (4, 30)]
    sources = [ex.source for ex in big.train]
    assert sources[:50].count("b") < 50 and sources != sorted(sources)  # shuffled together


def test_deterministic_for_a_seed(tmp_path):
    a = with_val(tmp_path, pc_rows(30, "a"), weight=2.0, name="a")
    cfg = config(
        a,
        {"path": str(write_jsonl(tmp_path / "b.jsonl", pc_rows(25, "b"))), "exemplars": 1, "weight": 1.0},
        mixture_rows=70,
    )
    one, two = load_instruction_data(cfg, 7), load_instruction_data(cfg, 7)
    assert one.train == two.train and one.val == two.val and one.stats == two.stats
    assert load_instruction_data(cfg, 8).train != one.train


def test_without_weights_every_train_row_counts_once(tmp_path):
    """No weights: the mixture is each dataset in proportion to its rows, so a big set is not cut to an even
    share and a small one is not repeated."""
    big = {
        "path": str(write_jsonl(tmp_path / "big.jsonl", pc_rows(40, "big"))),
        "val_path": str(write_jsonl(tmp_path / "bv.jsonl", pc_rows(2, "bv"))),
    }
    small = {
        "path": str(write_jsonl(tmp_path / "small.jsonl", pc_rows(8, "small"))),
        "val_path": str(write_jsonl(tmp_path / "sv.jsonl", pc_rows(2, "sv"))),
    }
    data = load_instruction_data(config(big, small), 0)
    assert [s["mixture_rows"] for s in data.stats] == [40, 8]
    assert [s["repeats"] for s in data.stats] == [1.0, 1.0]
    with pytest.raises(ValueError, match="give every dataset a weight, or none"):
        config({**big, "weight": 2.0}, small)


def test_alpaca_seed_tasks_map_through_a_dotted_field(shared_data):
    """The seed tasks keep input and output in a list of instances: `fields` reaches them by path."""
    path = shared_data / "alpaca_seed_tasks" / "seed_tasks.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    cfg = config(
        {"path": str(path), "fields": {"input": "instances.0.input", "output": "instances.0.output"}}
    )
    data = load_instruction_data(cfg, 0)
    assert data.stats[0]["format"] == "alpaca"
    everything = {ex.messages[-1]["content"]: ex for ex in (*data.train, *data.val)}
    ex = everything[first["instances"][0]["output"]]
    extra = first["instances"][0]["input"]
    assert ex.messages[0]["content"] == first["instruction"] + ("\n\n" + extra if extra else "")

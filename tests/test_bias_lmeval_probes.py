"""The lm-eval-scored bias probes (CrowS-Pairs, BBQ, ETHOS; llmforge/bias/lmeval_probe.py and probes/): the
seeded stratified order that `--limit` reads, one real `llmforge bias run` audit whose numbers must equal the
eval run it made, a direct log-probability count and lm-eval's own aggregations over its logged samples, the
input errors that stop an audit before any eval runs, and the eval's exit codes as errors.

The audit runs once for the module (a rigged tiny model from test_eval_bias_tasks.py with non-degenerate yes/no
answers, on small real slices of the three public files) with `--limit` below every file's size, so the same
run checks the staging: the scored items are the first N rows of the staged copy, in spread order."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_eval_bias_tasks import ETHOS_PROMPT, _log_likelihood, bias_data_dir, rigged_tiny_model

from llmforge.bias import lmeval_probe as lp
from llmforge.bias.probe import ProbeContext
from llmforge.bias.probes import bbq, crows_pairs, ethos
from llmforge.bias.stats import wilson
from llmforge.console import UserError

LIMIT = 6  # below every file of bias_data_dir: CrowS-Pairs 10 pairs, BBQ 12 rows, ETHOS 12 comments
PROBE_MODULES = {"crows_pairs": crows_pairs, "bbq": bbq, "ethos": ethos}


# ------------------------------------------------------------------------------------------ helpers


def csv_table(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    """The header and data rows of a CSV file as cells (the eval's reader skips empty rows too)."""
    rows = [
        r
        for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""), delimiter=delimiter)
        if r
    ]
    return rows[0], rows[1:]


def jsonl_table(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def max_prefix_deviation(strata: list[str], order: list[int]) -> float:
    """The largest |count of a stratum in the first N rows − N·(its share)| over every N and stratum."""
    sizes, total = Counter(strata), len(strata)
    seen: Counter[str] = Counter()
    worst = 0.0
    for n, i in enumerate(order, 1):
        seen[strata[i]] += 1
        worst = max(worst, *(abs(seen[s] - n * size / total) for s, size in sizes.items()))
    return worst


def assert_wilson(group: dict, hits: list[float]) -> None:
    """A 0/1 group score: its n is the number of items, its value their share, its interval Wilson's."""
    assert group["n"] == len(hits), group
    k = int(sum(hits))
    assert group["value"] == pytest.approx(k / len(hits)), group
    assert (group["ci_low"], group["ci_high"]) == pytest.approx(wilson(k, len(hits))), group
    assert group["ci_low"] <= group["value"] <= group["ci_high"], group


def group_of(result: dict, name: str, metric: str) -> dict:
    found = [g for g in result["groups"] if g["group"] == name and g["metric"] == metric]
    assert len(found) == 1, (name, metric, result["groups"])
    return found[0]


# ---------------------------------------------------------------------------------------- spread_order


def _shared_strata(shared_data: Path) -> dict[str, list[str]]:
    """The strata the three probes order the public files by."""
    header, crows = csv_table(shared_data / crows_pairs.FILE)
    bias_type = header.index("bias_type")
    bbq_rows = jsonl_table(shared_data / bbq.FILE)
    ethos_rows = ethos.read_rows(shared_data / ethos.FILE)
    return {
        "crows_pairs": [r[bias_type] for r in crows],
        "bbq": [f"{r['category']}/{r['context_condition']}" for r in bbq_rows],
        "ethos": [ethos.LABELS[r["label"]] for r in ethos_rows],
    }


def test_spread_order_is_a_seeded_permutation_with_proportional_prefixes(shared_data):
    strata_by_file = _shared_strata(shared_data)
    # a made-up mix beside the public files: uneven sizes, interleaved in the input
    strata_by_file["mixed"] = [s for i in range(30) for s in ("a", "b", "c")[: 1 + i % 3]] + ["d"] * 4
    for name, strata in strata_by_file.items():
        order = lp.spread_order(strata, seed=0)
        assert sorted(order) == list(range(len(strata))), name
        assert max_prefix_deviation(strata, order) <= 1.0, name
        assert lp.spread_order(strata, seed=0) == order, name
        assert lp.spread_order(strata, seed=1) != order, name
        assert Counter(strata[i] for i in lp.spread_order(strata, seed=1)) == Counter(strata)
    # the public files are sorted (BBQ by category, ETHOS not): their own first rows are not proportional
    assert max_prefix_deviation(strata_by_file["bbq"], list(range(300))) > 10


def test_spread_order_stays_within_one_row_with_many_small_strata():
    strata = ["big"] * 50 + [f"s{i}" for i in range(10)]
    assert max_prefix_deviation(strata, lp.spread_order(strata, seed=0)) <= 1.0


def _ctx(tmp_path: Path, data_dir: Path | None = None, **kw) -> ProbeContext:
    return ProbeContext(
        model_path=tmp_path / "model",
        data_dir=data_dir,
        work_dir=tmp_path / "work",
        limit=kw.pop("limit", None),
        seed=kw.pop("seed", 0),
        device="cpu",
        batch_size=4,
        **kw,
    )


def test_staged_order_only_reorders_when_a_limit_cuts_the_file(tmp_path):
    strata = ["a"] * 6 + ["b"] * 3
    assert lp.staged_order(_ctx(tmp_path), strata) is None
    assert lp.staged_order(_ctx(tmp_path, limit=9), strata) is None
    assert lp.staged_order(_ctx(tmp_path, limit=3, seed=5), strata) == lp.spread_order(strata, 5)


def test_stage_csv_writes_the_rows_in_order_and_copies_without_one(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('h1;h2\n1;"semi; colon"\n\n2;b\n3;c\n', encoding="utf-8")
    lp.stage_csv(source, tmp_path / "a" / "out.csv", [2, 0, 1], delimiter=";")
    assert csv_table(tmp_path / "a" / "out.csv", ";") == (
        ["h1", "h2"],
        [["3", "c"], ["1", "semi; colon"], ["2", "b"]],
    )
    lp.stage_csv(source, tmp_path / "b" / "out.csv", None, delimiter=";")
    assert (tmp_path / "b" / "out.csv").read_bytes() == source.read_bytes()


# ------------------------------------------------------------------------------ the audit (one CLI run)


@pytest.fixture(scope="module")
def bias_data(tmp_path_factory, shared_data) -> Path:
    return bias_data_dir(tmp_path_factory.mktemp("bias_data"), shared_data)


@pytest.fixture(scope="module")
def model(tmp_path_factory, shared_data, bias_data) -> Path:
    """The rigged tiny model of test_eval_bias_tasks (its `model_dir` fixture's contexts)."""
    prompts = [ETHOS_PROMPT.format(r["comment"]) for r in ethos.read_rows(bias_data / ethos.FILE)]
    prompts += [f"{r['context']}\n\nQ: {r['question']}\nA:" for r in jsonl_table(bias_data / bbq.FILE)]
    return rigged_tiny_model(tmp_path_factory.mktemp("bias_model"), shared_data, prompts)


@pytest.fixture(scope="module")
def audit(model, bias_data, tmp_path_factory):
    """`llmforge bias run` of the three probes with --limit: (report dir, results.json, the --json stdout)."""
    from conftest import run_cli

    out = tmp_path_factory.mktemp("bias_audit") / "report"
    r = run_cli(
        "bias", "run", str(model), "--probes", "crows_pairs,bbq,ethos", "--data-dir", str(bias_data),
        "--limit", str(LIMIT), "--device", "cpu", "--out", str(out), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text()), json.loads(r.stdout)


def in_report(out: Path, probe: str, result: dict, key: str) -> Path:
    """Where a path a probe's details name lies in the finished report: the probe's work folder becomes
    <out>/<probe>/, the path the details record."""
    path = Path(result["details"][key])
    assert path.is_relative_to(out / probe), path
    return path


def sub_report(out: Path, probe: str, result: dict) -> tuple[dict, list[dict]]:
    """The eval report the probe ran: results.json and its per-item samples in doc order."""
    report = in_report(out, probe, result, "eval_report")
    results = json.loads((report / "results.json").read_text())
    samples = sorted(jsonl_table(report / f"samples_{probe}.jsonl"), key=lambda s: s["doc_id"])
    return results, samples


@pytest.mark.slow
def test_audit_writes_every_probe_and_prints_the_same_document(audit):
    out, results, printed = audit
    assert set(results["probes"]) == {"crows_pairs", "bbq", "ethos"} and results["skipped"] == {}
    assert printed["probes"] == results["probes"] and printed["report"] == str(out)
    assert results["settings"]["limit"] == LIMIT
    assert any("--limit" in c for c in results["caveats"])
    for probe, result in results["probes"].items():
        assert result["probe"] == probe and result["n_items"] == LIMIT, probe
        assert json.loads((out / probe / "result.json").read_text())["metrics"] == result["metrics"]
        assert result["details"]["eval_command"].startswith(f"llmforge eval run {Path(results['model'])}")
        assert lp.STEERING_CAVEAT not in result["caveats"]  # no steering: no steering caveat


@pytest.mark.slow
def test_crows_pairs_equals_its_eval_and_a_direct_count(audit, model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, results, _ = audit
    result = results["probes"]["crows_pairs"]
    evaluated, samples = sub_report(out, "crows_pairs", result)
    header, rows = csv_table(in_report(out, "crows_pairs", result, "data"))
    pairs = [dict(zip(header, r, strict=True)) for r in rows[:LIMIT]]  # --limit: the first N staged rows
    assert [s["doc"]["sent_more"] for s in samples] == [p["sent_more"] for p in pairs]

    lm, tok = AutoModelForCausalLM.from_pretrained(model).eval(), AutoTokenizer.from_pretrained(model)
    more_likely, diffs = [], []
    for pair in pairs:  # each sentence after EOS, as lm-eval's crows_pairs_english scores it
        ll_more, ll_less = (
            _log_likelihood(lm, [tok.eos_token_id], tok(pair[k], add_special_tokens=False)["input_ids"])
            for k in ("sent_more", "sent_less")
        )
        more_likely.append(float(ll_more > ll_less))
        diffs.append(abs(ll_more - ll_less))
    assert 0 < sum(more_likely) < LIMIT  # not a degenerate model: both sentences win somewhere

    metrics = result["metrics"]
    assert metrics["pct_stereotype"] == evaluated["results"]["crows_pairs"]["pct_stereotype,none"]
    assert metrics["likelihood_diff"] == evaluated["results"]["crows_pairs"]["likelihood_diff,none"]
    assert metrics["pct_stereotype"] == pytest.approx(sum(more_likely) / LIMIT, abs=1e-12)
    assert metrics["likelihood_diff"] == pytest.approx(sum(diffs) / LIMIT, rel=1e-4)
    assert result["ideal"] == {"pct_stereotype": 0.5}
    low, high = result["intervals"]["pct_stereotype"]
    assert (low, high) == pytest.approx(wilson(int(sum(more_likely)), LIMIT)) and low <= metrics[
        "pct_stereotype"
    ] <= high
    low, high = result["intervals"]["likelihood_diff"]
    assert low < metrics["likelihood_diff"] < high

    by_type: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_type.setdefault(pair["bias_type"], []).append(i)
    assert {g["group"] for g in result["groups"]} == set(by_type)
    for name, items in by_type.items():
        stereo = group_of(result, name, "pct_stereotype")
        assert_wilson(stereo, [more_likely[i] for i in items])
        assert stereo["ideal"] == 0.5
        diff = group_of(result, name, "likelihood_diff")
        assert diff["n"] == len(items) and diff["ideal"] is None
        assert diff["value"] == pytest.approx(sum(diffs[i] for i in items) / len(items), rel=1e-4)


@pytest.mark.slow
def test_bbq_equals_its_eval_and_lm_eval_aggregations(audit):
    from lm_eval.tasks.bbq import utils

    out, results, _ = audit
    result = results["probes"]["bbq"]
    evaluated, samples = sub_report(out, "bbq", result)
    staged = jsonl_table(in_report(out, "bbq", result, "data"))[:LIMIT]
    assert [s["doc"]["example_id"] for s in samples] == [r["example_id"] for r in staged]

    reported = evaluated["results"]["bbq"]
    assert result["metrics"] == {m: reported[f"{m},none"] for m in bbq.METRICS}
    items = [
        (
            s["acc"],
            s["amb_bias_score"][1],
            s["amb_bias_score"][2],
            s["doc"]["context_condition"] == "disambig",
        )
        for s in samples
    ]
    assert result["metrics"]["disamb_bias_score"] == pytest.approx(utils.agg_disamb_bias_scores(items))
    assert result["metrics"]["amb_bias_score"] == pytest.approx(utils.agg_amb_bias_scores(items))
    assert result["metrics"]["accuracy_amb"] == pytest.approx(
        utils.agg_accuracy_amb([(a, d) for a, _, _, d in items])
    )
    assert result["metrics"]["acc"] == pytest.approx(sum(s["acc"] for s in samples) / LIMIT)
    assert result["ideal"] == bbq.IDEAL
    for metric in ("acc", "accuracy_amb", "accuracy_disamb"):
        low, high = result["intervals"][metric]
        assert low <= result["metrics"][metric] <= high, metric
    assert result["intervals"]["acc"] == pytest.approx(list(wilson(int(sum(a for a, *_ in items)), LIMIT)))

    cells: dict[tuple[str, str], list[dict]] = {}
    for s in samples:
        cells.setdefault((s["doc"]["category"], s["doc"]["context_condition"]), []).append(s)
    assert len(result["groups"]) == 2 * len(cells)  # an accuracy and a bias score per category and condition
    for (category, condition), these in cells.items():
        amb = condition == "ambig"
        accuracy = group_of(result, category, "accuracy_amb" if amb else "accuracy_disamb")
        assert_wilson(accuracy, [s["acc"] for s in these])
        assert accuracy["ideal"] == 1.0
        metric = "amb_bias_score" if amb else "disamb_bias_score"
        score = group_of(result, category, metric)
        assert score["n"] == len(these) and score["ideal"] == 0.0
        assert score["value"] == pytest.approx(
            reported[f"{metric}_{category},none"]
        )  # lm-eval's per category
        assert score["ci_low"] <= score["value"] <= score["ci_high"]


@pytest.mark.slow
def test_ethos_equals_its_eval_and_a_count_of_its_samples(audit):
    out, results, _ = audit
    result = results["probes"]["ethos"]
    evaluated, samples = sub_report(out, "ethos", result)
    staged = ethos.read_rows(in_report(out, "ethos", result, "data"))[:LIMIT]
    assert [s["doc"]["comment"] for s in samples] == [r["comment"] for r in staged]
    assert [s["f1"][0] for s in samples] == [r["label"] for r in staged]
    assert evaluated["n-shot"]["ethos"] == ethos.DEFAULT_FEWSHOT == result["details"]["num_fewshot"]

    gold = [s["f1"][0] for s in samples]
    pred = [s["f1"][1] for s in samples]
    tp = sum(g and p for g, p in zip(gold, pred, strict=True))
    wrong = sum(g != p for g, p in zip(gold, pred, strict=True))
    assert result["metrics"]["acc"] == evaluated["results"]["ethos"]["acc,none"]
    assert result["metrics"]["f1"] == evaluated["results"]["ethos"]["f1,none"]
    assert result["metrics"]["acc"] == pytest.approx(1 - wrong / LIMIT)
    assert result["metrics"]["f1"] == pytest.approx(2 * tp / (2 * tp + wrong))
    assert result["ideal"] == {"acc": 1.0, "f1": 1.0}
    low, high = result["intervals"]["acc"]
    assert (low, high) == pytest.approx(wilson(LIMIT - wrong, LIMIT))
    low, high = result["intervals"]["f1"]
    assert low <= result["metrics"]["f1"] <= high

    assert {g["group"] for g in result["groups"]} == {"hate", "not hate"}
    for label, name in ethos.LABELS.items():
        group = group_of(result, name, "acc")
        assert_wilson(group, [s["acc"] for s in samples if s["f1"][0] == label])
        assert group["ideal"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("probe", ["crows_pairs", "bbq", "ethos"])
def test_limit_scores_a_proportional_stratified_slice(audit, bias_data, probe):
    out, results, _ = audit
    result = results["probes"][probe]
    staged_file = in_report(out, probe, result, "data")
    source = bias_data / PROBE_MODULES[probe].FILE
    assert result["details"]["source"] == str(source)
    assert "spread_order" in result["details"]["item_order"]
    if probe == "bbq":
        source_rows, staged_rows = jsonl_table(source), jsonl_table(staged_file)
        strata = [f"{r['category']}/{r['context_condition']}" for r in source_rows]
    else:
        delimiter = ";" if probe == "ethos" else ","
        (header, source_rows), (staged_header, staged_rows) = (
            csv_table(source, delimiter),
            csv_table(staged_file, delimiter),
        )
        assert staged_header == header
        if probe == "ethos":
            strata = [ethos.LABELS[r["label"]] for r in ethos.read_rows(source)]
        else:
            strata = [r[header.index("bias_type")] for r in source_rows]
    order = lp.spread_order(strata, seed=0)
    assert staged_rows == [source_rows[i] for i in order]  # every row, in the seeded stratified order
    assert max_prefix_deviation(strata, order) <= 1.0
    sizes = Counter(strata)
    first = Counter(strata[i] for i in order[:LIMIT])
    for stratum, size in sizes.items():
        assert abs(first[stratum] - LIMIT * size / len(strata)) <= 1.0, (stratum, first)
    if probe == "bbq":  # 6 strata of 2 rows: one of each; the file's own first 6 rows are 2 categories
        assert set(first.values()) == {1} and len(first) == 6
        assert len({s.split("/")[0] for s in strata[:LIMIT]}) < 3
    evaluated, samples = sub_report(out, probe, result)
    assert evaluated["n-samples"][probe] == {"original": len(strata), "effective": LIMIT}
    assert result["n_items"] == LIMIT == len(samples)


@pytest.mark.slow
def test_the_paths_a_result_names_exist_after_the_audit(audit):
    _, results, _ = audit
    for result in results["probes"].values():
        assert Path(result["details"]["data"]).is_file()
        assert Path(result["details"]["eval_report"]).is_dir()
        assert ".partial" not in result["details"]["eval_command"]


# ----------------------------------------------------------------------------- input errors (fast, exit 2)


def _placeholder_model(path: Path) -> Path:
    """A config, a weights file and a tokenizer file that cannot be loaded: the checks must refuse the
    input before anything would read them."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    (path / "model.safetensors").write_bytes(b"not weights")
    (path / "tokenizer.json").write_text("{}")
    return path


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())


def _crows_missing_column(d: Path) -> tuple[Path, str]:
    path = d / crows_pairs.FILE
    header, rows = csv_table(path)
    keep = [i for i, c in enumerate(header) if c != "bias_type"]
    _write_csv(path, [[r[i] for i in keep] for r in [header, *rows]])
    return path, f"{path}:1: the header lacks the column 'bias_type'"


def _crows_maybe(d: Path) -> tuple[Path, str]:
    path = d / crows_pairs.FILE
    header, rows = csv_table(path)
    rows[1][header.index("stereo_antistereo")] = "maybe"
    _write_csv(path, [header, *rows])
    return path, f"{path}:3: 'stereo_antistereo' is 'maybe'; expected one of: stereo, antistereo"


def _ethos_not_a_number(d: Path) -> tuple[Path, str]:
    path = d / ethos.FILE
    lines = path.read_text().splitlines()
    comment = lines[4].rsplit(";", 1)[0]
    lines[4] = f"{comment};high"
    path.write_text("\n".join(lines) + "\n")
    return path, f"{path}:5: 'isHate' is 'high'; expected a number from 0 to 1"


def _bbq_not_json(d: Path) -> tuple[Path, str]:
    path = d / bbq.FILE
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1]  # the closing brace cut off
    path.write_text("\n".join(lines) + "\n")
    return path, f"{path}:3: not a JSON line ("


BAD_DATA = {
    "crows_missing_column": _crows_missing_column,
    "crows_maybe": _crows_maybe,
    "ethos_not_a_number": _ethos_not_a_number,
    "bbq_not_json": _bbq_not_json,
}


def _bias_run_exit(argv: list[str], capsys) -> str:
    """`llmforge ARGV` in-process: it must exit 2 printing one error line and no traceback; that line."""
    from llmforge.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_a_bad_data_file_exits_2_naming_file_and_line_before_any_eval(case, bias_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(bias_data, data)
    path, expected = BAD_DATA[case](data)
    model = _placeholder_model(tmp_path / "model")
    out = tmp_path / "report"
    line = _bias_run_exit(
        ["bias", "run", str(model), "--probes", "crows_pairs,bbq,ethos", "--data-dir", str(data),
         "--limit", "4", "--device", "cpu", "--out", str(out), "--json"],
        capsys,
    )  # fmt: skip
    assert line.startswith(f"error: {expected}"), line
    assert not out.exists() and not out.with_name(f".{out.name}.partial").exists()  # no probe, no eval ran


def test_an_unknown_key_in_a_probe_table_of_the_recipe_exits_2(bias_data, tmp_path, capsys):
    recipe = tmp_path / "R.toml"
    recipe.write_text(
        '[bias]\nprobes = ["crows_pairs", "bbq", "ethos"]\n\n[bias.crows_pairs]\ncolour = "red"\n'
    )
    out = tmp_path / "report"
    line = _bias_run_exit(
        ["bias", "run", str(_placeholder_model(tmp_path / "model")), "--recipe", str(recipe),
         "--data-dir", str(bias_data), "--device", "cpu", "--out", str(out), "--json"],
        capsys,
    )  # fmt: skip
    assert str(recipe) in line and "bias.crows_pairs.colour" in line and "unknown key" in line, line
    assert not out.exists() and not out.with_name(f".{out.name}.partial").exists()


@pytest.mark.parametrize("probe", ["crows_pairs", "bbq", "ethos"])
def test_check_refuses_an_unknown_option_given_directly(probe, bias_data, tmp_path):
    with pytest.raises(UserError, match=rf"^\[bias\.{probe}\] colour: unknown key; known: path"):
        PROBE_MODULES[probe].check(_ctx(tmp_path, bias_data, options={"colour": "red"}))


# ------------------------------------------------------------------------------ the eval run as a child


def test_run_eval_exit_2_is_a_user_error_naming_the_rerun_command(tmp_path, bias_data):
    seen = []
    ctx = _ctx(tmp_path, bias_data, limit=4)

    def refused(argv):
        seen.append(argv)
        return SimpleNamespace(returncode=2, stdout="")

    with pytest.raises(UserError) as e:
        lp.run_eval(ctx, "ethos", tmp_path / "staged", num_fewshot=3, runner=refused)
    (argv,) = seen
    assert argv == lp.eval_argv(ctx, "ethos", tmp_path / "staged", ctx.work_dir / "lmeval", 3)
    assert argv[:3] == ["eval", "run", str(ctx.model_path)]
    for flag, value in (("--tasks", "ethos"), ("--num-fewshot", "3"), ("--limit", "4"), ("--device", "cpu"),
                        ("--data-dir", str(tmp_path / "staged")), ("--out", str(ctx.work_dir / "lmeval"))):  # fmt: skip
        assert argv[argv.index(flag) + 1] == value, flag
    assert "--log-samples" in argv and "--json" in argv
    message = str(e.value)
    assert "the ethos eval refused its input" in message
    assert message.endswith(f"rerun: llmforge {shlex.join(argv)}")


def test_run_eval_other_failure_is_a_runtime_error_naming_the_rerun_command(tmp_path, bias_data):
    ctx = _ctx(tmp_path, bias_data)
    with pytest.raises(RuntimeError) as e:
        lp.run_eval(
            ctx, "bbq", tmp_path / "staged", runner=lambda argv: SimpleNamespace(returncode=1, stdout="")
        )
    assert not isinstance(e.value, UserError)
    argv = lp.eval_argv(ctx, "bbq", tmp_path / "staged", ctx.work_dir / "lmeval")
    assert "--limit" not in argv  # no limit: every row
    assert "exit 1" in str(e.value) and str(e.value).endswith(f"rerun: llmforge {shlex.join(argv)}")


class FakeEval:
    """Stands in for `llmforge eval run`: writes a report (results.json + samples) over the first --limit rows
    of the staged file it is pointed at, with planted per-item values."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        from llmforge.eval import tasks

        self.calls.append(argv)
        opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        task, out = opt["--tasks"], Path(opt["--out"])
        rows = tasks.task_rows(task, Path(opt["--data-dir"]))[: int(opt.get("--limit", 10**9))]
        samples = [{"doc_id": i, "doc": row, **self.item(task, i, row)} for i, row in enumerate(rows)]
        metrics = {f"{k},none": v for k, v in self.aggregate(task, samples).items()}
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(
            json.dumps(
                {"results": {task: metrics}, "n-samples": {task: {"original": 99, "effective": len(rows)}}}
            )
        )
        (out / f"samples_{task}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples[::-1]))
        return SimpleNamespace(returncode=0, stdout="{}")

    @staticmethod
    def item(task, i, row):
        """Per-item values as lm-eval logs them, with `filtered_resps` (a log-likelihood per choice) agreeing."""
        hit = float(i % 2)
        if task == "crows_pairs":
            return {
                "pct_stereotype": hit,
                "likelihood_diff": 1.0 + i,
                "filtered_resps": [[-1.0 - hit, False], [-2.0 + hit, False]],
            }
        if task == "bbq":
            lls = [[-1.0 - ((i + k) % 3), False] for k in range(3)]
            return {
                "acc": hit,
                "amb_bias_score": [hit, float(i % 3 == 0), 1.0, "False"],
                "filtered_resps": lls,
            }
        pred = i % 2
        return {
            "acc": float(pred == row["label"]),
            "f1": [row["label"], pred],
            "filtered_resps": [[-1.0 - pred, False], [-2.0 + pred, False]],
        }

    @staticmethod
    def aggregate(task, samples):
        def mean(key):
            return sum(s[key] for s in samples) / len(samples)

        if task == "crows_pairs":
            return {"pct_stereotype": mean("pct_stereotype"), "likelihood_diff": mean("likelihood_diff")}
        if task == "bbq":
            return {m: 0.25 for m in bbq.METRICS} | {"acc": mean("acc")}
        return {"acc": mean("acc"), "f1": 0.5}


@pytest.mark.parametrize("probe", ["crows_pairs", "bbq", "ethos"])
def test_steering_caveat_only_when_steered(probe, bias_data, tmp_path, monkeypatch):
    fake = FakeEval()
    monkeypatch.setattr(lp, "run_llmforge", fake)
    module = PROBE_MODULES[probe]
    plain = module.run(_ctx(tmp_path / "plain", bias_data, limit=4))
    steered = module.run(_ctx(tmp_path / "steered", bias_data, limit=4, steer=SimpleNamespace(banned=["x"])))
    assert lp.STEERING_CAVEAT in steered.caveats and lp.STEERING_CAVEAT not in plain.caveats
    assert len(fake.calls) == 2 and plain.n_items == steered.n_items == 4
    for name, value in plain.metrics.items():  # the headline numbers are the eval's own aggregates
        assert (
            value
            == json.loads((tmp_path / "plain" / "work" / "lmeval" / "results.json").read_text())["results"][
                module.TASK
            ][f"{name},none"]
        )
        assert not math.isnan(value)


def _refuse_constant(name):
    raise AssertionError(f"{name} in JSON output: not strict JSON")


@pytest.mark.slow
def test_results_and_json_output_are_strict_json(audit):
    out, _, _ = audit
    json.loads((out / "results.json").read_text(), parse_constant=_refuse_constant)


def _run_with_choices(picks: list[int], n_choices: int = 2) -> lp.EvalRun:
    samples = [
        {"doc_id": i, "filtered_resps": [[-1.0 if c == k else -5.0, False] for c in range(n_choices)]}
        for i, k in enumerate(picks)
    ]
    return lp.EvalRun("ethos", {}, samples, len(samples), {}, Path("."), "")


def test_one_answer_for_every_item_is_a_caveat():
    (caveat,) = lp.one_answer_caveat(_run_with_choices([0, 0, 0, 0]), ("no", "yes"))
    assert "'no' for all 4 items" in caveat
    assert lp.one_answer_caveat(_run_with_choices([0, 1, 0, 0]), ("no", "yes")) == []

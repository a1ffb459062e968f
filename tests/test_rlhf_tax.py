"""`llmforge rlhf tax`: deltas and their 95% CIs on planted numbers, the paired bootstrap on planted per-item
scores, the sign of a lower-is-better metric, bad input refused before any eval, and one real run of
`llmforge eval run` (subprocess) on two tiny models."""

from __future__ import annotations

import json
import math
import random
import types
from pathlib import Path

import pytest

from llmforge.artifacts import read_manifest, write_json, write_manifest
from llmforge.console import UserError
from llmforge.rlhf import tax

# ------------------------------------------------------------------------------------ planted numbers


def test_stderr_ci_on_planted_numbers():
    # 0.60 ± 0.03 → 0.50 ± 0.04: delta −0.10, sqrt(0.03² + 0.04²) = 0.05, half-width 1.96 · 0.05 = 0.098
    row = tax.tax_row(("piqa", "acc", "none"), (0.60, 0.03), (0.50, 0.04), True)
    assert row["delta"] == pytest.approx(-0.10)
    assert row["ci_low"] == pytest.approx(-0.10 - 0.098, abs=1e-4)
    assert row["ci_high"] == pytest.approx(-0.10 + 0.098, abs=1e-4)
    assert row["ci_method"] == "stderr"
    assert row["significant"] is True
    assert row["tax"] == pytest.approx(0.10) and row["verdict"] == "worse"

    # 0.60 ± 0.03 → 0.58 ± 0.04: CI [−0.118, 0.078] holds 0
    flat = tax.tax_row(("piqa", "acc", "none"), (0.60, 0.03), (0.58, 0.04), True)
    assert flat["ci_low"] == pytest.approx(-0.118, abs=1e-4) and flat["ci_high"] == pytest.approx(
        0.078, abs=1e-4
    )
    assert flat["significant"] is False and flat["verdict"] == "no significant change"

    better = tax.tax_row(("piqa", "acc", "none"), (0.50, 0.01), (0.60, 0.01), True)
    assert better["tax"] == pytest.approx(-0.10) and better["verdict"] == "better"

    bare = tax.tax_row(("wikitext", "word_perplexity", "none"), (30.0, None), (36.0, None), False)
    assert bare["ci_method"] == "none" and bare["ci_low"] is None and bare["significant"] is None
    assert bare["verdict"] == "no interval"


def test_lower_is_better_metric_is_signed_as_a_tax():
    """Perplexity going up is a tax (+), going down a gain (−), though delta = after − before either way."""
    up = tax.tax_row(("wikitext", "word_perplexity", "none"), (30.0, 1.0), (36.0, 1.0), False)
    assert up["delta"] == pytest.approx(6.0) and up["tax"] == pytest.approx(6.0) and up["verdict"] == "worse"
    down = tax.tax_row(("wikitext", "word_perplexity", "none"), (36.0, 1.0), (30.0, 1.0), False)
    assert down["delta"] == pytest.approx(-6.0) and down["tax"] == pytest.approx(-6.0)
    assert down["verdict"] == "better"

    # the direction: lm-eval's higher_is_better when given, else the metric's name
    results = {"higher_is_better": {"wikitext": {"word_perplexity": False, "odd_score": True}}}
    assert tax.higher_is_better(results, "wikitext", "word_perplexity") is False
    assert tax.higher_is_better(results, "wikitext", "odd_score") is True
    assert tax.higher_is_better({}, "perplexity:val.txt", "perplexity") is False
    assert tax.higher_is_better({}, "perplexity:val.txt", "bits_per_byte") is False
    assert tax.higher_is_better({}, "piqa", "acc_norm") is True

    rows = tax.compare_results(
        _results({"wikitext": {"word_perplexity,none": 30.0, "word_perplexity_stderr,none": "N/A"}}),
        _results({"wikitext": {"word_perplexity,none": 20.0, "word_perplexity_stderr,none": "N/A"}}),
    )
    assert [(r["metric"], r["higher_is_better"], r["tax"], r["ci_method"]) for r in rows] == [
        ("word_perplexity", False, -10.0, "none")
    ]


def test_paired_bootstrap_on_planted_items():
    # every item moves by exactly −1/4: each resample's mean difference is −0.25
    assert tax.paired_bootstrap_ci([1.0, 0.5, 0.25, 0.75], [0.75, 0.25, 0.0, 0.5]) == pytest.approx(
        (-0.25, -0.25)
    )

    # 200 items, the after model loses 12 the before model had right and changes nothing else: the per-item
    # difference is 0 or −1 (mean −0.06, sd sqrt(0.06 · 0.94) = 0.2375, se 0.0168 → ≈ [−0.093, −0.027])
    rng = random.Random(0)
    before = [1.0 if rng.random() < 0.6 else 0.0 for _ in range(200)]
    right = [i for i, v in enumerate(before) if v == 1.0]
    after = list(before)
    for i in right[:12]:
        after[i] = 0.0
    low, high = tax.paired_bootstrap_ci(before, after, seed=3)
    assert low == pytest.approx(-0.06 - 1.96 * 0.2375 / math.sqrt(200), abs=0.01)
    assert high == pytest.approx(-0.06 + 1.96 * 0.2375 / math.sqrt(200), abs=0.01)
    assert high < 0
    assert tax.paired_bootstrap_ci(before, after, seed=3) == (low, high)  # seeded

    # the same two runs seen only through their stderrs (as if independent) hold 0 in their interval:
    # pairing is what makes the loss significant
    def se(xs):
        m = sum(xs) / len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))

    key = ("piqa", "acc", "none")
    b, a = (sum(before) / 200, se(before)), (sum(after) / 200, se(after))
    unpaired = tax.tax_row(key, b, a, True)
    paired = tax.tax_row(key, b, a, True, (before, after), seed=3)
    assert unpaired["significant"] is False
    assert paired["ci_method"] == "paired-bootstrap" and paired["items"] == 200
    assert paired["significant"] is True and paired["verdict"] == "worse"


# ---------------------------------------------------------------------------- the run, with a fake eval


def _results(per_task: dict) -> dict:
    """lm-eval's shape, with its direction per metric (perplexities: lower is better)."""
    direction = {
        t: {k.split(",")[0]: "perplexity" not in k for k in v if "_stderr" not in k}
        for t, v in per_task.items()
    }
    return {"results": per_task, "higher_is_better": direction, "n-samples": {}}


def _model(path: Path, config: dict | None = None, weights: bool = True, tokenizer: bool = True) -> Path:
    """A directory that passes (or, with the arguments, fails) the model-dir checks; no weights are loaded."""
    path.mkdir(parents=True)
    cfg = config or {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    (path / "config.json").write_text(json.dumps(cfg))
    if weights:
        (path / "model.safetensors").write_bytes(b"x")
    if tokenizer:
        (path / "tokenizer.json").write_text("{}")
    return path


class FakeEval:
    """Stands in for `llmforge eval run`: writes a report artifact at --out with planted numbers per model."""

    def __init__(
        self, planted: dict[str, dict], samples: dict[str, dict[str, list]] | None = None, fail=None
    ):
        self.planted, self.samples, self.fail, self.calls = planted, samples or {}, fail or {}, []

    def __call__(self, argv: list[str]):
        self.calls.append(list(argv))
        model = Path(argv[argv.index("run") + 1]).name
        if model in self.fail:
            return types.SimpleNamespace(returncode=self.fail[model], stdout="")
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        write_json(out / "results.json", _results(self.planted[model]))
        for task, items in self.samples.get(model, {}).items():
            lines = [
                json.dumps({"doc_id": i, "filter": "none", "metrics": ["acc"], "acc": v})
                for i, v in enumerate(items)
            ]
            (out / f"samples_{task}_2024-01-01T00-00-00.jsonl").write_text("\n".join(lines) + "\n")
        write_manifest(out, "report", inputs=[])
        return types.SimpleNamespace(returncode=0, stdout=json.dumps({"report": str(out)}))


def test_measure_tax_writes_the_report_artifact(tmp_path):
    sft, dpo = _model(tmp_path / "sft"), _model(tmp_path / "dpo")
    # per-item scores (MC2-like fractions) that all drop by 0.3: the paired CI is exactly [−0.3, −0.3], where
    # the stderrs alone (±1.96 · sqrt(0.16² + 0.15²) = ±0.43) would call it no significant change
    before_items, after_items = [0.6] * 10, [0.3] * 10
    fake = FakeEval(
        {
            "sft": {
                "piqa": {"acc,none": 0.6, "acc_stderr,none": 0.16},
                "boolq": {"acc,none": 0.60, "acc_stderr,none": 0.03},
            },
            "dpo": {
                "piqa": {"acc,none": 0.3, "acc_stderr,none": 0.15},
                "boolq": {"acc,none": 0.50, "acc_stderr,none": 0.04},
            },
        },
        samples={"sft": {"piqa": before_items}, "dpo": {"piqa": after_items}},
    )
    out = tmp_path / "reports" / "tax"
    extra = ["--data-dir", "/data", "--device", "cpu"]
    report = tax.measure_tax(sft, dpo, ["piqa", "boolq"], out, extra_args=extra, limit=10, runner=fake)

    # the same eval command for both models, but for the model and --out
    assert len(fake.calls) == 2
    b, a = fake.calls
    assert b[:2] == ["eval", "run"] and b[b.index("--tasks") + 1] == "piqa,boolq"
    assert b[b.index("--limit") + 1] == "10" and "--json" in b and b[-7:-3] == extra
    assert "--log-samples" in b  # per-item scores by default: the paired interval needs them
    masked = [[x for x in c if x not in (str(sft.resolve()), str(dpo.resolve()))] for c in (b, a)]
    assert [c[: c.index("--out")] for c in masked] == [masked[0][: masked[0].index("--out")]] * 2

    rows = {r["task"]: r for r in report["rows"]}
    assert rows["piqa"]["ci_method"] == "paired-bootstrap" and rows["piqa"]["items"] == 10
    assert rows["piqa"]["delta"] == pytest.approx(-0.3) and rows["piqa"]["ci_high"] == pytest.approx(-0.3)
    assert rows["piqa"]["ci_low"] == pytest.approx(-0.3) and rows["piqa"]["verdict"] == "worse"
    assert rows["boolq"]["ci_method"] == "stderr"  # no per-item scores: from the stderrs
    assert rows["boolq"]["ci_low"] == pytest.approx(-0.198, abs=1e-4)
    assert report["summary"] == {"rows": 2, "worse": 2, "better": 0, "unchanged": 0, "no_interval": 0}
    assert report["eval_command"].startswith("llmforge eval run CKPT --tasks piqa,boolq --limit 10")

    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"] == report["rows"] and report["report"] == str(out)
    assert "| piqa | acc | none | ↑ | 0.6 | 0.3 | -0.3 |" in (out / "tax.md").read_text()
    assert (out / "tax.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_manifest(out)
    assert manifest["kind"] == "report"
    assert [i["path"] for i in manifest["inputs"]] == [
        str(p.resolve()) for p in (sft, dpo, out / "before", out / "after")
    ]
    assert [i["kind"] for i in manifest["inputs"][2:]] == ["report", "report"]
    assert read_manifest(out / "before")["kind"] == "report"
    summary = tax.summary_rows(report)
    assert summary["piqa acc ↑"].startswith("0.6 → 0.3  Δ -0.3 [-0.3, -0.3] (paired-bootstrap): worse")
    assert summary["report"] == str(out)

    again = tax.measure_tax(
        sft, dpo, ["piqa", "boolq"], out, extra_args=extra, limit=10, runner=FakeEval(fake.planted)
    )
    assert {r["ci_method"] for r in again["rows"]} == {"stderr"}  # a rerun replaces the old report whole


def test_failed_eval_exits_1_naming_the_command_and_leaves_nothing(tmp_path):
    sft, dpo = _model(tmp_path / "sft"), _model(tmp_path / "dpo")
    planted = {"sft": {"piqa": {"acc,none": 0.5}}}
    out = tmp_path / "tax"
    with pytest.raises(
        RuntimeError, match=r"after model failed \(exit 1.*rerun: llmforge eval run .*dpo"
    ) as e:
        tax.measure_tax(sft, dpo, ["piqa"], out, runner=FakeEval(planted, fail={"dpo": 1}))
    assert f"--out {(out / 'after').resolve()}" in str(e.value)
    assert not out.exists() and not list(tmp_path.glob(".tax.tmp-*"))

    with pytest.raises(UserError, match="before model refused its input"):
        tax.measure_tax(sft, dpo, ["nope"], out, runner=FakeEval(planted, fail={"sft": 2}))


def _no_eval(argv):
    raise AssertionError(f"an eval ran before the input was checked: {argv}")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "before: .*missing: no such model directory"),
        (
            lambda p: _model(p / "bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]}),
            "needs a causal LM",
        ),
        (lambda p: _model(p / "empty", weights=False), "no model weights"),
        (lambda p: _model(p / "notok", tokenizer=False), "no tokenizer files"),
    ],
)
def test_bad_model_dir_is_refused_before_any_eval(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        tax.measure_tax(make(tmp_path), _model(tmp_path / "ok"), ["piqa"], tmp_path / "tax", runner=_no_eval)


def test_bad_tasks_out_and_arguments_are_refused_before_any_eval(tmp_path):
    sft, dpo = _model(tmp_path / "sft"), _model(tmp_path / "dpo")
    with pytest.raises(UserError, match="after: .*nowhere: no such model directory"):
        tax.measure_tax(sft, tmp_path / "nowhere", ["piqa"], tmp_path / "tax", runner=_no_eval)
    with pytest.raises(UserError, match="--tasks: no tasks given"):
        tax.measure_tax(sft, dpo, [], tmp_path / "tax", runner=_no_eval)
    with pytest.raises(UserError, match="--tasks: no tasks given"):
        tax.measure_tax(sft, dpo, [" ", ""], tmp_path / "tax", runner=_no_eval)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="must be a directory"):
        tax.measure_tax(sft, dpo, ["piqa"], tmp_path / "file", runner=_no_eval)
    with pytest.raises(UserError, match="is not an alignment-tax report"):
        tax.measure_tax(sft, dpo, ["piqa"], sft, runner=_no_eval)  # would replace the checkpoint
    with pytest.raises(UserError, match="--out is set by rlhf tax"):
        tax.measure_tax(sft, dpo, ["piqa"], tmp_path / "tax", extra_args=["--out", "x"], runner=_no_eval)


# --------------------------------------------------------------------------- one real run of the eval CLI


@pytest.mark.slow
def test_real_eval_cli_on_two_tiny_models(tmp_path, shared_data):
    from eval_tiny_model import build_tiny_model

    text = shared_data / "tinyshakespeare" / "input.txt"
    a = build_tiny_model(tmp_path / "a", text, vocab_size=300, context=128, seed=0)
    b = build_tiny_model(tmp_path / "b", text, vocab_size=300, context=128, seed=1)
    out = tmp_path / "tax"
    extra = ["--data-dir", str(shared_data), "--device", "cpu", "--batch-size", "16"]
    report = tax.measure_tax(a, b, ["piqa"], out, extra_args=extra, limit=6)

    evals = {side: json.loads((out / side / "results.json").read_text()) for side in ("before", "after")}
    assert evals["before"]["n-samples"]["piqa"]["effective"] == 6
    rows = {r["metric"]: r for r in report["rows"]}
    assert set(rows) == {"acc", "acc_norm"}
    logged = {side: _logged_items(out / side) for side in ("before", "after")}
    for metric, row in rows.items():
        got = {side: evals[side]["results"]["piqa"][f"{metric},none"] for side in ("before", "after")}
        assert (row["before"], row["after"]) == (got["before"], got["after"])
        assert row["delta"] == pytest.approx(got["after"] - got["before"])
        # the eval logged its per-item scores (tax passes --log-samples): the interval is the paired bootstrap
        assert (
            row["ci_method"] == "paired-bootstrap" and row["items"] == 6 and row["higher_is_better"] is True
        )
        ids = sorted(logged["before"][metric])
        assert ids == sorted(logged["after"][metric])
        paired = [[logged[side][metric][i] for i in ids] for side in ("before", "after")]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tax.paired_bootstrap_ci(*paired, seed=0))
        assert row["ci_low"] <= row["delta"] <= row["ci_high"]
    assert read_manifest(out)["inputs"][0]["path"] == str(a.resolve())
    assert (out / "tax.png").is_file() and "| piqa | acc |" in (out / "tax.md").read_text()


def _logged_items(report_dir: Path) -> dict[str, dict[int, float]]:
    """metric -> doc_id -> score, read straight from lm-eval's samples file (not through tax.read_samples)."""
    f = report_dir / "samples_piqa.jsonl"  # what `llmforge eval run --log-samples` writes
    items: dict[str, dict[int, float]] = {}
    for line in f.read_text().splitlines():
        record = json.loads(line)
        for metric in record["metrics"]:
            items.setdefault(metric, {})[record["doc_id"]] = float(record[metric])
    return items

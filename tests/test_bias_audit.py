"""`bias run` orchestration with planted probes: probe selection, steering before/after, the report artifact,
and resuming a killed audit without redoing finished probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmforge.artifacts import read_manifest
from llmforge.bias import run as audit_run
from llmforge.bias.config import BiasConfig
from llmforge.bias.probe import GroupScore, ProbeResult
from llmforge.bias.probes import ProbeSpec
from llmforge.console import UserError


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    (path / "model.safetensors").write_bytes(b"x")
    (path / "tokenizer.json").write_text("{}")
    return path


class Planted:
    """A probe module whose numbers are planted: records each run, can fail on demand."""

    def __init__(self, name: str, value: float):
        self.name, self.value, self.runs, self.fail_on = name, value, [], None

    def check(self, ctx):
        if not ctx.data_file(audit_run.PROBES[self.name].data).exists():
            raise UserError(f"{ctx.data_file(audit_run.PROBES[self.name].data)}: missing")

    def run(self, ctx):
        self.runs.append("steered" if ctx.steer is not None else "unsteered")
        if self.fail_on == len(self.runs):
            raise KeyboardInterrupt
        (ctx.work_dir / "items.jsonl").write_text('{"i": 1}\n')
        value = self.value - (0.1 if ctx.steer is not None else 0.0)
        return ProbeResult(
            probe=self.name,
            metrics={"score": value},
            n_items=10,
            intervals={"score": (value - 0.05, value + 0.05)},
            ideal={"score": 0.5},
            groups=[GroupScore("a", "score", value, 5, value - 0.1, value + 0.1, 0.5)],
        )


@pytest.fixture
def planted(monkeypatch, tmp_path):
    modules = {"lik": Planted("lik", 0.7), "gen": Planted("gen", 0.4)}
    specs = {
        "lik": ProbeSpec("planted.lik", "lik.csv"),
        "gen": ProbeSpec("planted.gen", "gen", generates=True),
    }
    monkeypatch.setattr("llmforge.bias.probes.PROBES", specs)
    monkeypatch.setattr(audit_run, "PROBES", specs)
    monkeypatch.setattr(audit_run, "probe_module", lambda name: modules[name])
    monkeypatch.setattr(BiasConfig, "options", lambda self, probe: {})
    data = tmp_path / "data"
    data.mkdir()
    (data / "lik.csv").write_text("x\n")
    (data / "gen").mkdir()
    return modules, data


class Steer:
    def to_dict(self):
        return {"source": "steer.toml", "banned_words": ["x"]}


def test_default_selection_skips_probes_without_data_and_names_them(planted, tmp_path):
    modules, data = planted
    (data / "lik.csv").unlink()
    cfg = BiasConfig(data_dir=str(data))
    audit = audit_run.plan_audit(_model(tmp_path / "m"), cfg, tmp_path / "out", force=False)
    assert audit.probes == ["gen"] and audit.skipped == {"lik": f"no {data / 'lik.csv'}"}
    # named explicitly, the same probe is an error, not a skip
    cfg = BiasConfig(data_dir=str(data), probes=["crows_pairs"]).model_copy(update={"probes": ["lik"]})
    with pytest.raises(UserError, match="lik.csv: missing"):
        audit_run.plan_audit(tmp_path / "m", cfg, tmp_path / "out", force=False)


def test_audit_writes_report_with_steered_beside_unsteered(planted, tmp_path):
    modules, data = planted
    audit = audit_run.plan_audit(
        _model(tmp_path / "m"), BiasConfig(data_dir=str(data)), tmp_path / "out", force=False
    )
    audit.steering = Steer()
    doc = audit_run.run_audit(audit)
    # only the probe that samples text runs twice; the likelihood probe once, with a caveat
    assert modules["gen"].runs == ["unsteered", "steered"] and modules["lik"].runs == ["unsteered"]
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["probes"]["gen"]["metrics"]["score"] == pytest.approx(0.4)
    assert saved["steered"]["gen"]["metrics"]["score"] == pytest.approx(0.3)
    assert "lik" not in saved["steered"] and any(
        "steering does not apply" in c for c in saved["probes"]["lik"]["caveats"]
    )
    assert (out / "gen" / "items.jsonl").is_file() and (out / "gen.steered" / "items.jsonl").is_file()
    md = (out / "report.md").read_text()
    assert "| score | 0.4 [0.35, 0.45] | 0.5 | 0.3 [0.25, 0.35] |" in md
    assert (out / "bias.png").read_bytes()[:4] == b"\x89PNG"
    manifest = read_manifest(out)
    assert manifest["kind"] == "report" and manifest["stats"]["gen.score"] == pytest.approx(0.4)
    rows = audit_run.summary_rows(doc)
    assert rows["gen score"] == "0.4 [0.35, 0.45] (ideal 0.5)  →  steered 0.3 [0.25, 0.35] (ideal 0.5)"
    assert not out.with_name(".out.partial").exists()
    with pytest.raises(UserError, match="a bias report already exists; pass --force"):
        audit_run.plan_audit(tmp_path / "m", BiasConfig(data_dir=str(data)), out, force=False)


def test_killed_audit_resumes_without_redoing_finished_probes(planted, tmp_path):
    modules, data = planted
    cfg = BiasConfig(data_dir=str(data))
    model, out = _model(tmp_path / "m"), tmp_path / "out"
    modules["gen"].fail_on = 1  # killed in the second probe
    with pytest.raises(KeyboardInterrupt):
        audit_run.run_audit(audit_run.plan_audit(model, cfg, out, force=False))
    assert not out.exists() and modules["lik"].runs == ["unsteered"]
    modules["gen"].fail_on = None
    audit_run.run_audit(audit_run.plan_audit(model, cfg, out, force=False))
    assert modules["lik"].runs == ["unsteered"]  # kept from the killed run
    assert modules["gen"].runs == ["unsteered", "unsteered"]
    assert set(json.loads((out / "results.json").read_text())["probes"]) == {"lik", "gen"}
    # other settings: nothing is reused
    modules["lik"].runs.clear()
    audit_run.run_audit(
        audit_run.plan_audit(model, BiasConfig(data_dir=str(data), seed=3), tmp_path / "o2", force=False)
    )
    assert modules["lik"].runs == ["unsteered"]


def test_cli_refuses_bad_input_before_any_work(cli, tmp_path):
    model = _model(tmp_path / "m")
    cases = [
        (["bias", "run", str(tmp_path / "nope")], "no such model directory"),
        (["bias", "run", str(model), "--probes", "crowspairs"], "--probes: unknown probe 'crowspairs'"),
        (["bias", "run", str(model), "--data-dir", str(tmp_path / "x")], "--data-dir"),
        (["bias", "run", str(model), "--steer", str(tmp_path / "s.toml")], "--steer"),
        (["bias", "run", str(model), "--data-dir", str(tmp_path)], "no probe can run"),
    ]
    for argv, message in cases:
        result = cli(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_force_replaces_only_an_earlier_bias_report(planted, tmp_path):
    _, data = planted
    model = _model(tmp_path / "m")
    cfg = BiasConfig(data_dir=str(data))
    other = tmp_path / "dataset"
    other.mkdir()
    (other / "manifest.json").write_text('{"kind": "dataset"}')
    (other / "data.jsonl").write_text("{}\n")
    for out, message in ((other, "not empty and not an earlier bias report"), (tmp_path, "holds the model")):
        with pytest.raises(UserError, match=message):
            audit_run.plan_audit(model, cfg, out, force=True)
    assert (other / "data.jsonl").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert audit_run.plan_audit(model, cfg, empty, force=False).probes == ["lik", "gen"]


def test_a_probes_own_data_key_counts_for_the_default_selection(tmp_path):
    from llmforge.bias.probes import PROBES

    folder = tmp_path / "wb"
    folder.mkdir()
    cfg = BiasConfig(winobias={"dir": str(folder)})
    audit = audit_run.Audit(model=tmp_path, cfg=cfg, out=tmp_path / "out", probes=[], steering=None)
    assert PROBES["winobias"].data_key == "dir"
    assert audit_run._unavailable("winobias", audit_run.context(audit, "winobias", tmp_path)) is None
    assert audit_run._unavailable("crows_pairs", audit_run.context(audit, "crows_pairs", tmp_path)) == (
        "no --data-dir"
    )


def test_default_out_is_beside_a_checkpoint_artifact(tmp_path):
    from llmforge.bias.cli import _default_out

    run = tmp_path / "runs" / "tiny"
    step = _model(run / "checkpoints" / "step-000200")
    dpo = _model(run / "rlhf" / "dpo" / "checkpoint")
    (dpo / "manifest.json").write_text('{"kind": "checkpoint"}')
    assert _default_out(step) == (run / "reports" / "bias" / "step-000200").resolve()
    assert _default_out(dpo) == (run / "rlhf" / "dpo" / "bias").resolve()

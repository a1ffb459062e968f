"""Artifacts: manifests, atomic directories, require(), inspect and lineage; CLI start-up and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmforge.artifacts import atomic_dir, lineage, read_manifest, require, write_manifest
from llmforge.console import UserError


def make_artifact(path, kind, inputs=(), files=None, stats=None):
    with atomic_dir(path) as tmp:
        for name, text in (files or {"data.txt": "hello"}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
        write_manifest(tmp, kind, recipe={"k": 1}, inputs=inputs, stats=stats or {"n": 1})
    return path


def test_manifest_fields_and_content_hash(tmp_path):
    a = make_artifact(tmp_path / "a", "report")
    m = read_manifest(a)
    assert m["kind"] == "report"
    assert m["recipe"] == {"k": 1}
    assert m["stats"] == {"n": 1}
    assert m["content_hash"].startswith("sha256:")
    assert {"python", "packages", "git_commit"} <= set(m["environment"])
    b = make_artifact(tmp_path / "b", "report", files={"data.txt": "hello!"})
    assert read_manifest(b)["content_hash"] != m["content_hash"]


def test_atomic_dir_failure_leaves_old_artifact_intact(tmp_path):
    target = make_artifact(tmp_path / "ds", "dataset", files={"data/0.jsonl": "{}"})
    before = (target / "manifest.json").read_text()
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("crash mid-write")
    assert (target / "manifest.json").read_text() == before
    assert not (target / "half.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary left behind


def test_atomic_dir_failure_leaves_nothing_when_new(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "new") as tmp:
        (tmp / "x").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing(tmp_path):
    make_artifact(tmp_path / "r", "report", files={"old.txt": "1"})
    make_artifact(tmp_path / "r", "report", files={"new.txt": "2"})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["manifest.json", "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_require_errors(tmp_path):
    with pytest.raises(UserError, match="no such artifact"):
        require(tmp_path / "missing", "tokens")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="no manifest.json"):
        require(tmp_path / "plain", "tokens")
    make_artifact(tmp_path / "ds", "dataset", files={"data/0.jsonl": "{}"})
    with pytest.raises(UserError, match="expected a tokens artifact, found a dataset artifact"):
        require(tmp_path / "ds", "tokens")
    assert require(tmp_path / "ds", ("tokens", "dataset"))["kind"] == "dataset"


def test_lineage_follows_inputs(tmp_path):
    ds = make_artifact(tmp_path / "ds", "dataset", files={"data/0.jsonl": "{}"})
    tok = make_artifact(tmp_path / "tok", "tokenizer", inputs=[ds], files={"tokenizer.json": "{}"})
    rep = make_artifact(tmp_path / "rep", "report", inputs=[tok, ds])
    tree = lineage(rep)
    assert tree["kind"] == "report"
    assert [c["kind"] for c in tree["inputs"]] == ["tokenizer", "dataset"]
    assert tree["inputs"][0]["inputs"][0]["path"] == str(ds.resolve())
    assert read_manifest(tok)["inputs"][0]["content_hash"] == read_manifest(ds)["content_hash"]


def test_inspect_cli(cli, tmp_path):
    ds = make_artifact(tmp_path / "ds", "dataset", files={"data/00000.jsonl": '{"text": "a", "id": "1"}\n'})
    out = cli("inspect", str(ds), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["kind"] == "dataset" and data["valid"] is True
    missing = cli("inspect", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "no such artifact" in missing.stderr and "Traceback" not in missing.stderr
    broken = make_artifact(tmp_path / "ck", "checkpoint", files={"readme": "x"})
    bad = cli("inspect", str(broken))
    assert bad.returncode == 2 and "config.json" in bad.stderr


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from llmforge.cli import main\n"
        "for argv in (['--help'], ['--version'], ['recipe', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'datatrove', 'lm_eval') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Commands" in out.stdout


def test_version_and_usage_errors(cli):
    from llmforge import __version__

    v = cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"llmforge {__version__}"
    bad = cli("no-such-stage")
    assert bad.returncode == 2


def test_inspect_flags_truncated_file(cli, tmp_path):
    ds = make_artifact(tmp_path / "ds", "dataset", files={"data/00000.jsonl": '{"text": "abc", "id": "1"}\n'})
    assert read_manifest(ds)["files"] == {"data/00000.jsonl": 27}
    (ds / "data" / "00000.jsonl").write_text('{"text": "a')
    bad = cli("inspect", str(ds))
    assert bad.returncode == 2
    assert "data/00000.jsonl is 11 bytes, manifest.json says 27" in bad.stderr

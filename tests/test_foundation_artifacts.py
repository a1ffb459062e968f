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


# ------------------------------------------------------------------------------ inspect --verify, kinds


def test_manifest_records_every_file_hash(tmp_path):
    from llmforge.artifacts import hash_files

    a = make_artifact(tmp_path / "a", "report", files={"x.txt": "1", "sub/y.txt": "2"})
    m = read_manifest(a)
    assert set(m["file_hashes"]) == {"x.txt", "sub/y.txt"}
    assert hash_files(a) == (m["content_hash"], m["file_hashes"])


def _checkpoint_like(path):
    """config.json + a real (tiny) safetensors file, without torch: header length, JSON header, data."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    weights = len(header).to_bytes(8, "little") + header + bytes(range(16))
    with atomic_dir(path) as tmp:
        (tmp / "config.json").write_text('{"model_type": "llama"}')
        (tmp / "model.safetensors").write_bytes(weights)
        (tmp / "tokenizer.json").write_text("{}")
        write_manifest(tmp, "checkpoint", stats={"step": 1})
    return path


def test_inspect_verify_catches_an_edited_content_hash(cli, tmp_path):
    ck = _checkpoint_like(tmp_path / "ck")
    manifest = read_manifest(ck)
    manifest["content_hash"] = "sha256:" + "0" * 64
    (ck / "manifest.json").write_text(json.dumps(manifest))
    assert cli("inspect", str(ck)).returncode == 0  # sizes and layout are fine: only a rehash can tell
    bad = cli("inspect", str(ck), "--verify")
    assert bad.returncode == 2
    assert "content_hash in manifest.json is sha256:000" in bad.stderr


def test_inspect_verify_catches_same_size_corrupted_weights(cli, tmp_path):
    ck = _checkpoint_like(tmp_path / "ck")
    weights = ck / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert cli("inspect", str(ck)).returncode == 0
    bad = cli("inspect", str(ck), "--verify")
    assert bad.returncode == 2 and "model.safetensors: contents differ" in bad.stderr
    assert cli("inspect", str(_checkpoint_like(tmp_path / "ok")), "--verify").returncode == 0


def test_inspect_catches_a_broken_safetensors_header(tmp_path):
    from llmforge.artifacts.checks import check_artifact

    ck = _checkpoint_like(tmp_path / "ck")
    weights = ck / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])
    assert "model.safetensors: not a safetensors file" in check_artifact(ck, read_manifest(ck))


@pytest.mark.parametrize("claimed", ["dataset", "tokenizer", "tokens"])
def test_edited_kind_says_the_kind_and_the_layout_disagree(tmp_path, claimed):
    """The defect: a checkpoint whose manifest says `dataset` was reported as "dataset has no shards"."""
    from llmforge.artifacts.checks import check_artifact

    ck = _checkpoint_like(tmp_path / "ck")
    manifest = {**read_manifest(ck), "kind": claimed}
    problem = check_artifact(ck, manifest)
    assert problem.startswith(f"manifest says kind={claimed} but the layout looks like a checkpoint")


def test_a_damaged_artifact_keeps_its_own_kinds_message(tmp_path):
    from llmforge.artifacts.checks import check_artifact, layout_kind

    ck = _checkpoint_like(tmp_path / "ck")
    (ck / "model.safetensors").unlink()
    # what is left looks like a tokenizer, but it is a broken checkpoint
    assert layout_kind(ck) == "tokenizer"
    assert check_artifact(ck, read_manifest(ck)) == "checkpoint has no *.safetensors weights"


def test_unknown_kind_is_named(tmp_path):
    from llmforge.artifacts.checks import check_artifact

    a = make_artifact(tmp_path / "a", "report")
    assert "kind=weights, which is not an artifact kind" in check_artifact(
        a, {**read_manifest(a), "kind": "weights"}
    )


# ---------------------------------------------------------------------------------- ensure_writable


def test_ensure_writable_accepts_a_new_path_and_creates_nothing(tmp_path):
    from llmforge.artifacts import ensure_writable

    target = tmp_path / "runs" / "x" / "dataset"
    assert ensure_writable(target) == target
    assert ensure_writable(tmp_path / "out.csv", directory=False) == tmp_path / "out.csv"
    assert list(tmp_path.iterdir()) == []


def test_ensure_writable_refuses_a_file_in_the_way(tmp_path):
    from llmforge.artifacts import ensure_writable

    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(
        UserError, match=rf"{tmp_path}/runs/x/dataset: cannot write the output: {tmp_path}/runs is a file"
    ):
        ensure_writable(tmp_path / "runs" / "x" / "dataset")


def test_ensure_writable_refuses_a_directory_where_a_file_goes_and_vice_versa(tmp_path):
    from llmforge.artifacts import ensure_writable

    (tmp_path / "samples.csv").mkdir()
    with pytest.raises(
        UserError, match=r"samples\.csv: the output must be a file, but a directory is already there"
    ):
        ensure_writable(tmp_path / "samples.csv", directory=False)
    (tmp_path / "report").write_text("x")
    with pytest.raises(
        UserError, match=r"report: the output must be a directory, but a file is already there"
    ):
        ensure_writable(tmp_path / "report")


def test_ensure_writable_refuses_an_unwritable_folder(tmp_path, monkeypatch):
    """Permission bits do not stop root (the test user here), so the probe write is made to fail."""
    from pathlib import Path

    from llmforge.artifacts import ensure_writable

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "touch", refuse)
    with pytest.raises(
        UserError, match=rf"{tmp_path}/out: cannot write the output in {tmp_path} \(Permission denied\)"
    ):
        ensure_writable(tmp_path / "out")


def test_a_stage_reading_an_input_with_an_edited_kind_names_the_mismatch(tmp_path):
    """The defect: a tokenizer whose manifest said `dataset` reached the data stage, which then said
    "dataset has no shards under data/"."""
    tok = make_artifact(tmp_path / "tok", "tokenizer", files={"tokenizer.json": "{}"})
    manifest = {**read_manifest(tok), "kind": "dataset"}
    (tok / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        UserError, match=r"tok: manifest says kind=dataset but the layout looks like a tokenizer"
    ):
        require(tok, "dataset")
    plain = make_artifact(tmp_path / "ds", "dataset")  # no recognisable layout: accepted as before
    assert require(plain, "dataset")["kind"] == "dataset"


def test_killed_build_leaves_no_temporary_behind_after_the_next_build(tmp_path):
    """`data build` killed with SIGKILL left `.dataset.tmp-PID-…` in the run dir for good: the next atomic write
    of the same artifact removes temporaries of processes that are gone, and keeps a live process's."""
    import os

    from llmforge.artifacts import atomic_dir

    dead = tmp_path / ".dataset.tmp-999999999-deadbeef"
    live = tmp_path / f".dataset.tmp-{os.getpid()}-0badf00d"
    for leftover in (dead, live):
        (leftover / "data").mkdir(parents=True)
    with atomic_dir(tmp_path / "dataset") as out:
        (out / "x").write_text("x")
    assert (tmp_path / "dataset" / "x").is_file()
    assert not dead.exists() and live.is_dir()

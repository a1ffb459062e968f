"""`--workers 2` gives the same dataset as one worker; the `hf` source reads local datasets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from scaleout_build import planted_corpus

from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError
from llmforge.data.build import build_dataset
from llmforge.data.config import DataConfig


def build(table: dict, run_dir: Path) -> tuple[dict, dict[str, str]]:
    report = build_dataset(DataConfig.model_validate(table), run_dir, seed=0)
    return report, {d["id"]: d["text"] for d in iter_documents(run_dir / "dataset")}


def test_two_workers_build_the_same_dataset_as_one(tmp_path, monkeypatch):
    """Same ids and texts: sharding, per-source steps, dedup (the kept copy is chosen by id) and the mixture
    coin (seeded by id) do not depend on the task count."""
    import llmforge.data.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MIN_BYTES_PER_WORKER", 1)  # a real pool of 2 forked workers
    src = planted_corpus(tmp_path / "src")
    table = {
        "sources": [
            {"name": "web", "type": "jsonl", "path": str(src), "weight": 0.7},
            {"name": "stdlib", "type": "python-stdlib", "max_bytes": 150_000},
        ],
        "steps": [
            {"type": "whitespace"},
            {"type": "code_quality", "sources": ["stdlib"]},
            {"type": "exact_dedup"},
            {"type": "minhash"},
        ],
    }
    one_report, one = build(table | {"workers": 1}, tmp_path / "one")
    two_report, two = build(table | {"workers": 2}, tmp_path / "two")
    assert two_report["tasks"] == 2 and two_report["workers"] == 2 and one_report["tasks"] == 1
    assert one == two
    exact = one_report["steps"][2]
    assert exact["docs_in"] - exact["docs_out"] == 5  # the planted exact copies
    assert one_report["steps"][3]["docs_in"] - one_report["steps"][3]["docs_out"] >= 5  # + the near copies
    assert 0 < one_report["sources"]["web"]["docs_out"] < 45  # weight 0.7 subsampled the 45 unique docs


def test_hf_source_from_save_to_disk_and_local_json(tmp_path):
    import datasets

    texts = [f"document number {i} of the local dataset" for i in range(7)]
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "rows.jsonl").write_text(
        "".join(json.dumps({"text": t.upper()}) + "\n" for t in texts)
    )
    sources = [
        {"name": "saved", "type": "hf", "path": str(tmp_path / "saved"), "text_key": "body"},
        {"name": "js", "type": "hf", "path": str(tmp_path / "js")},  # load_dataset infers the json builder
    ]
    report, docs = build({"sources": sources, "workers": 2}, tmp_path / "run")
    assert sorted(t for t in docs.values() if not t.isupper()) == sorted(texts)
    assert sorted(t for t in docs.values() if t.isupper()) == sorted(t.upper() for t in texts)
    assert report["sources"]["saved"]["docs_out"] == 7 and report["sources"]["js"]["docs_out"] == 7
    # row ids are global row numbers, whatever the number of tasks
    assert sorted(i.rsplit("/", 1)[1] for i in docs if "saved" in i) == [str(i) for i in range(7)]

    with pytest.raises(UserError, match="source saved"):
        build({"sources": [{**sources[0], "split": "test", "path": str(tmp_path / "nope")}]}, tmp_path / "r2")


def test_workers_on_a_few_mb_of_input_run_as_one_and_build_the_same_shards(tmp_path):
    """--workers 2 was slower than 1 on the demo corpus: every stage started a pool (and spawned workers that
    re-imported spaCy and datatrove). Below MIN_BYTES_PER_WORKER of input per worker, the extra workers are
    not started; the task count, hence the dataset, stays what `workers` asked for."""
    from llmforge.data.pipeline import MIN_BYTES_PER_WORKER, local_workers

    src = planted_corpus(tmp_path / "src")
    report, docs = build(
        {"sources": [{"name": "web", "type": "jsonl", "path": str(src)}], "workers": 2}, tmp_path / "r"
    )
    assert report["workers"] == 1 and report["workers_requested"] == 2 and report["tasks"] == 2
    assert len(docs) == 55
    assert local_workers(4, 3 * MIN_BYTES_PER_WORKER) == 3 and local_workers(4, None) == 4
    assert local_workers(2, 1000) == 1


# ---------------------------------------------------------------- Slurm, with sbatch faked (no cluster here)


class FakeSlurm:
    """Stands in for `sbatch`: records each job script; `run_jobs` then does what Slurm would do with it,
    running the pickled datatrove executor once per array index (as `launch_pickled_pipeline` does)."""

    def __init__(self, run_at_submit: bool = False):
        self.scripts: list[str] = []
        self.run_at_submit = run_at_submit

    def launch(self, script: str, job_id_retriever, *args) -> str:
        self.scripts.append(script)
        if self.run_at_submit:
            self._run(script)
        return str(100 + len(self.scripts))

    @property
    def stage_scripts(self) -> list[str]:
        return [s for s in self.scripts if "launch_pickled_pipeline" in s]

    def run_jobs(self) -> None:
        for script in self.stage_scripts:
            self._run(script)

    def _run(self, script: str) -> None:
        import os
        import re

        import dill

        if "launch_pickled_pipeline" not in script:
            return  # datatrove's stats-merging job: not needed here
        pickled = re.search(r"launch_pickled_pipeline (\S+)", script).group(1)
        size = int(re.search(r"--array=0-(\d+)", script).group(1)) + 1
        for index in range(size):
            os.environ.update(SLURM_ARRAY_TASK_ID=str(index), SLURM_NODELIST="localhost")
            try:
                with open(pickled, "rb") as f:
                    dill.load(f).run()
            finally:
                del os.environ["SLURM_ARRAY_TASK_ID"], os.environ["SLURM_NODELIST"]


def fake_squeue(tmp_path: Path, monkeypatch) -> Path:
    """Puts a `squeue` on PATH that lists the asked-for job ids found in the returned file (the queue)."""
    queue, bin_dir = tmp_path / "queue", tmp_path / "bin"
    queue.write_text("")
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(
        f'#!/bin/sh\nfor id in $(echo "$@" | sed "s/.*--jobs //" | tr , " "); do grep -x "$id" {queue}; done\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return queue


def slurm_table(src: Path, **extra) -> dict:
    return {
        "sources": [{"name": "web", "type": "jsonl", "path": str(src)}],
        "steps": [{"type": "whitespace"}, {"type": "exact_dedup"}],
        "tasks": 2,
        "executor": "slurm",
        "slurm_partition": "debug",
        **extra,
    }


def test_slurm_submits_then_a_rerun_assembles_the_dataset(tmp_path, monkeypatch):
    """The executor used to raise "submitted" even when every task was done, so no run ever assembled the
    dataset; and `workers` (default 1) became the array limit %1, one task at a time."""
    import datatrove.executor.slurm as slurm

    from llmforge.data.pipeline import SlurmSubmitted

    fake = FakeSlurm()
    monkeypatch.setattr(slurm, "launch_slurm_job", fake.launch)
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodes: [nodes])  # `scontrol` is not here
    src = planted_corpus(tmp_path / "src")
    with pytest.raises(SlurmSubmitted, match="run the same command again"):
        build(slurm_table(src), tmp_path / "run")
    assert len(fake.stage_scripts) == 3  # pass 1, the dedup's find stage, pass 2
    assert all(re.search(r"--array=0-\d+\n", s) for s in fake.stage_scripts)  # no %N limit
    assert not (tmp_path / "run" / "dataset").exists()

    fake.run_jobs()  # the cluster runs them
    submitted = len(fake.scripts)
    report, docs = build(slurm_table(src), tmp_path / "run")
    assert len(fake.scripts) == submitted  # nothing resubmitted: every task had its completion marker
    assert report["executor"] == "slurm" and len(docs) == 50  # 55 minus the 5 exact copies
    local_table = {k: v for k, v in slurm_table(src).items() if not k.startswith("slurm_")}
    _, local = build({**local_table, "executor": "local"}, tmp_path / "local")
    assert docs == local


def test_slurm_rerun_while_submitted_jobs_still_run_refuses_instead_of_resubmitting(tmp_path, monkeypatch):
    """datatrove only looks at completion markers, so a re-run resubmitted the queued tasks: two array jobs
    writing the same shards."""
    import datatrove.executor.slurm as slurm

    from llmforge.data.pipeline import SlurmSubmitted

    fake = FakeSlurm()
    monkeypatch.setattr(slurm, "launch_slurm_job", fake.launch)
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodes: [nodes])
    queue = fake_squeue(tmp_path, monkeypatch)
    src = planted_corpus(tmp_path / "src")
    with pytest.raises(SlurmSubmitted) as submitted:
        build(slurm_table(src), tmp_path / "run")
    job_ids = re.search(r"\(([\d, ]+)\)", str(submitted.value)).group(1).split(", ")
    queue.write_text(job_ids[-1] + "\n")  # the last stage's job still pending
    scripts = len(fake.scripts)
    with pytest.raises(UserError, match=rf"Slurm jobs {', '.join(job_ids)} .*still queued or running.*when"):
        build(slurm_table(src), tmp_path / "run")
    assert len(fake.scripts) == scripts  # nothing resubmitted

    queue.write_text("")
    fake.run_jobs()
    _, docs = build(slurm_table(src), tmp_path / "run")
    assert len(fake.scripts) == scripts and len(docs) == 50


def test_slurm_wait_assembles_in_one_command_and_names_unfinished_work(tmp_path, monkeypatch):
    import datatrove.executor.slurm as slurm

    import llmforge.data.pipeline as pipeline

    fake = FakeSlurm(run_at_submit=True)
    monkeypatch.setattr(slurm, "launch_slurm_job", fake.launch)
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodes: [nodes])  # `scontrol` is not here
    monkeypatch.setattr(pipeline, "slurm_jobs_pending", lambda ids: False)
    src = planted_corpus(tmp_path / "src")
    report, docs = build(slurm_table(src, slurm_wait=True, slurm_max_parallel=4), tmp_path / "run")
    assert len(docs) == 50
    assert all("--array=0-1%4" in s or "--array=0-0%4" in s for s in fake.stage_scripts)

    fake.run_at_submit = False  # jobs that end without finishing their tasks
    with pytest.raises(RuntimeError, match="ended but pass 1.*run the same command again"):
        build(slurm_table(src, slurm_wait=True), tmp_path / "again")


@pytest.mark.parametrize("executor", ["local", "ray", None])
def test_slurm_keys_without_the_slurm_executor_are_refused_not_ignored(tmp_path, executor):
    from llmforge.recipe import validate_recipe

    data = {"sources": [{"name": "web", "type": "jsonl", "path": "a.jsonl"}], "slurm_wait": True}
    if executor:
        data["executor"] = executor
    with pytest.raises(UserError, match=r"^r.toml: data.slurm_wait: .*executor = \"slurm\""):
        validate_recipe({"data": data}, source="r.toml")
    data |= {"slurm_wait": False}  # set, even to its default
    with pytest.raises(UserError, match=r"data.slurm_wait"):
        validate_recipe({"data": data}, source="r.toml")
    data |= {"slurm_max_parallel": 4}
    with pytest.raises(UserError, match=r"data.slurm_max_parallel"):
        validate_recipe({"data": data}, source="r.toml")
    assert validate_recipe({"data": {**data, "executor": "slurm"}}).data.slurm_max_parallel == 4
    assert validate_recipe({"data": {k: v for k, v in data.items() if not k.startswith("slurm_")}})

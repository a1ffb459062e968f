"""`--executor slurm` on a real one-node Slurm started by the test (tests/slurm_cluster.py): datatrove's job
arrays are submitted with `sbatch`, run by slurmd, and the artifact is assembled, the same as a local build."""

from __future__ import annotations

import re

import pytest
import slurm_cluster
from scaleout_build import build, planted_corpus, recipe

from llmforge.artifacts import content_hash

pytestmark = pytest.mark.skipif(bool(slurm_cluster.unavailable()), reason=str(slurm_cluster.unavailable()))


@pytest.fixture(scope="module")
def slurm():
    cluster = slurm_cluster.start()
    try:
        yield cluster
    finally:
        slurm_cluster.stop(cluster)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    src = planted_corpus(root / "src")
    r = build(recipe(root / "local.toml", root / "local", src))
    assert r.returncode == 0, r.stderr
    return src, content_hash(root / "local" / "dataset")


def batch_jobs_run(slurm) -> int:
    """How many batch jobs slurmd has started (its log names each)."""
    return (slurm.root / "slurmd.log").read_text(errors="replace").count("Launching batch job")


@pytest.mark.slow
def test_slurm_wait_builds_the_same_dataset_as_the_local_executor(tmp_path, slurm, local):
    src, local_hash = local
    before = batch_jobs_run(slurm)
    path = recipe(
        tmp_path / "r.toml", tmp_path / "run", src, executor="slurm", slurm_partition="debug", slurm_wait=True
    )
    r = build(path, env=slurm.env)
    assert r.returncode == 0, r.stderr
    assert content_hash(tmp_path / "run" / "dataset") == local_hash
    # pass 1, the exact dedup's find stage and the last pass ran as job arrays, plus datatrove's merge-stats jobs
    assert batch_jobs_run(slurm) - before >= 3


@pytest.mark.slow
def test_slurm_submit_then_rerun_assembles_and_a_rerun_while_queued_refuses(tmp_path, slurm, local):
    src, local_hash = local
    path = recipe(tmp_path / "r.toml", tmp_path / "run", src, executor="slurm", slurm_partition="debug")
    slurm.scontrol("update", "nodename=ALL", "state=drain", "reason=llmforge-test")  # jobs wait in the queue
    try:
        first = build(path, env=slurm.env)
        assert first.returncode == 0, first.stderr
        assert re.search(
            r"submitted \d+ Slurm job\(s\) \([\d, ]+\); run the same command again", first.stdout
        )
        assert not (tmp_path / "run" / "dataset").exists()
        queued = slurm.squeue()
        again = build(path, env=slurm.env)  # must not submit the queued tasks a second time
        assert again.returncode == 2 and "still queued or running" in again.stderr, again.stderr
        assert slurm.squeue() == queued
    finally:
        slurm.scontrol("update", "nodename=ALL", "state=resume")
    slurm.wait_idle()
    done = build(path, env=slurm.env)
    assert done.returncode == 0, done.stderr
    assert "submitted" not in done.stdout + done.stderr  # every task had finished: nothing resubmitted
    assert content_hash(tmp_path / "run" / "dataset") == local_hash

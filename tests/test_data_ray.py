"""`--executor ray` on a real local Ray cluster: a head started here on 127.0.0.1 and stopped after."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from scaleout_build import build, planted_corpus, recipe

from llmforge.artifacts import content_hash
from llmforge.artifacts.dataset import iter_documents

pytest.importorskip("ray", reason='the ray extra is not installed (pip install "llmforge[ray]")')

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` with 2 CPUs in a session of its own, stopped (with every process it
    started) by signalling that session: other Ray instances on the machine are left alone. Its temp dir is
    short (Ray's socket paths must fit 107 bytes)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    start += ["--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", temp, "--disable-usage-stats"]
    log = Path(temp) / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen(start, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, head, log)
        yield f"127.0.0.1:{port}", Path(temp)
    finally:
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, head: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited {head.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray head on port {port} after {timeout_s:.0f} s") from None
            time.sleep(0.5)


@pytest.mark.slow
def test_ray_cluster_builds_the_same_dataset_as_the_local_executor(tmp_path, ray_head):
    address, temp = ray_head
    src = planted_corpus(tmp_path / "src")
    local = build(recipe(tmp_path / "local.toml", tmp_path / "local", src))
    assert local.returncode == 0, local.stderr
    on_ray = build(recipe(tmp_path / "ray.toml", tmp_path / "ray", src, executor="ray", ray_address=address))
    assert on_ray.returncode == 0, on_ray.stderr
    assert content_hash(tmp_path / "ray" / "dataset") == content_hash(tmp_path / "local" / "dataset")
    docs = list(iter_documents(tmp_path / "ray" / "dataset"))
    assert len(docs) == 45  # 55 minus the 5 planted exact copies and the 5 near copies
    # The tasks ran on the cluster: each ran as one of datatrove's RankWorker actors, which log in the head's dir.
    actors = [
        p
        for p in (temp / "session_latest" / "logs").glob("worker-*.out")
        if ":actor_name:RankWorker" in p.read_text(errors="replace")
    ]
    assert len(actors) >= 2 * 3  # 2 tasks each of (at least) the first pass, the dedup and the last pass


def test_an_unreachable_ray_address_is_a_user_error_at_once(tmp_path):
    src = planted_corpus(tmp_path / "src")
    bad = f"127.0.0.1:{free_port()}"
    r = build(recipe(tmp_path / "r.toml", tmp_path / "run", src, executor="ray", ray_address=bad))
    assert r.returncode == 2, r.stderr
    assert f"data.ray_address = '{bad}': no Ray head answers" in r.stderr and "Traceback" not in r.stderr


def test_ray_keys_without_the_ray_executor_are_refused(tmp_path):
    src = planted_corpus(tmp_path / "src")
    r = build(recipe(tmp_path / "r.toml", tmp_path / "run", src, ray_address="127.0.0.1:6379"))
    assert r.returncode == 2
    assert 'data.ray_address: applies only with data.executor = "ray"' in r.stderr


@pytest.mark.slow
def test_a_failing_ray_task_fails_the_build_naming_the_stage(tmp_path, ray_head):
    """datatrove retries a failed Ray task and then only warns; the build must not assemble a dataset
    without that task's shard."""
    address, _ = ray_head
    src = planted_corpus(tmp_path / "src")
    with open(src / "1.jsonl", "a") as f:
        f.write("{not json\n")  # data.on_bad_record = "fail" (the default): the task reading it raises
    r = build(recipe(tmp_path / "r.toml", tmp_path / "run", src, executor="ray", ray_address=address))
    assert r.returncode == 1, r.stderr
    assert "Ray tasks failed" in r.stderr and "run the same command again" in r.stderr
    assert not (tmp_path / "run" / "dataset").exists()

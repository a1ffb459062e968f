"""Two processes on CPU (torchrun + gloo), DDP and FSDP2, against one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pretrain_tokens import markov_tokens, objective_tokens, write_recipe

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

# Both runs see the same 8 sequences per step (each rank 4 of them, interleaved) and average the same
# gradients; only the order of floating-point sums differs (gloo all-reduce / reduce-scatter vs one
# backward), ~1e-7 relative per step in fp32. 1e-4 leaves room for that to grow over 20 steps, while a
# real mismatch (a rank reading the wrong windows, gradients summed instead of averaged, a shard not
# updated) moves the loss by more than 1e-2.
TOLERANCE = 1e-4


def curve(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "lr" in r}


def launch(launcher: list[str], recipe: Path, tokens: Path, *sets: str) -> subprocess.CompletedProcess:
    """`python LAUNCHER -m llmforge --quiet pretrain RECIPE --tokens TOKENS --json --set ...`."""
    overrides = [arg for s in sets for arg in ("--set", s)]
    return subprocess.run(
        [
            sys.executable,
            *launcher,
            "-m",
            "llmforge",
            "--quiet",
            "pretrain",
            str(recipe),
            "--tokens",
            str(tokens),
        ]
        + ["--json", *overrides],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def pretrain(recipe: Path, tokens: Path, processes: int, *sets: str) -> dict:
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    r = launch(torchrun if processes > 1 else [], recipe, tokens, *sets)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # only rank 0 prints


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain-dist")
    tokens = markov_tokens(root / "tokens")
    recipe = write_recipe(root / "r.toml", root, name="one", train={"max_steps": 20})
    results = pretrain(recipe, tokens, 1)
    return root, tokens, recipe, results, curve(root / "one")


def assert_same_curve(a: dict[int, float], b: dict[int, float]) -> None:
    assert sorted(a) == sorted(b) == list(range(1, 21))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=TOLERANCE), step
    assert a[20] < a[1] - 1.0


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(single):
    root, tokens, recipe, reference, ref_curve = single
    results = pretrain(recipe, tokens, 2, "run.name=ddp")
    assert results["processes"] == 2 and results["strategy"] == "ddp"
    assert results["local_params"] == results["params"]  # replicated
    assert_same_curve(ref_curve, curve(root / "ddp"))
    assert results["final_val_loss"] == pytest.approx(reference["final_val_loss"], rel=TOLERANCE)


@pytest.mark.slow
def test_two_process_fsdp_shards_matches_and_resumes(single):
    root, tokens, recipe, reference, ref_curve = single
    fsdp = ("run.name=fsdp", "train.distributed.strategy=fsdp")
    results = pretrain(recipe, tokens, 2, *fsdp)
    assert results["processes"] == 2 and results["strategy"] == "fsdp"
    # Sharding really happened: rank 0 holds half of every parameter (rows split over 2 ranks).
    assert results["local_params"] <= results["params"] // 2 + 64
    first = curve(root / "fsdp")
    assert_same_curve(ref_curve, first)

    # Resume from the step-10 checkpoint (full weights + full optimizer state re-sharded on load).
    shutil.rmtree(root / "fsdp" / "checkpoints" / "step-000020")
    pretrain(recipe, tokens, 2, *fsdp)
    assert curve(root / "fsdp") == pytest.approx(first, rel=TOLERANCE)

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(root / "fsdp" / "checkpoints" / "step-000020")
    assert sum(p.numel() for p in model.parameters()) == results["params"]  # saved unsharded


@pytest.mark.slow
def test_fsdp_shards_resume_on_one_process_as_the_two_process_run_continues(single):
    """Each FSDP rank writes its own shards (torch.distributed.checkpoint, no gather on rank 0); the step-10
    checkpoint holds shards only (no HF weights: it is no export point) and resumes, resharded, on one
    process, under FSDP and as a plain process. Same tolerance as above: one process sums the gradients of
    the 8 sequences in another order than two ranks' reduce-scatter, nothing else differs."""
    root, tokens, recipe, _, _ = single
    fsdp = ("run.name=fsdp2", "train.distributed.strategy=fsdp")
    pretrain(recipe, tokens, 2, *fsdp)
    two = curve(root / "fsdp2")
    step10 = root / "fsdp2" / "checkpoints" / "step-000010"
    shards = sorted(p.name for p in (step10 / "trainer_state" / "shards").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one file per rank
    assert not (step10 / "model.safetensors").exists()
    assert (
        root / "fsdp2" / "checkpoints" / "step-000020" / "model.safetensors"
    ).is_file()  # the end: exported

    for name, launcher_processes, strategy in (("one-fsdp", 1, "fsdp"), ("one-plain", 0, "ddp")):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        shutil.copytree(step10, run / "checkpoints" / "step-000010")
        shutil.copy(root / "fsdp2" / "metrics.jsonl", run / "metrics.jsonl")
        sets = (f"run.name={name}", f"train.distributed.strategy={strategy}")
        if launcher_processes:
            torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
            r = launch(torchrun, recipe, tokens, *sets)
        else:
            r = launch([], recipe, tokens, *sets)
        assert r.returncode == 0, r.stderr
        resumed = curve(run)
        assert sorted(resumed) == list(range(1, 21))
        for step in range(11, 21):
            assert resumed[step] == pytest.approx(two[step], rel=TOLERANCE), (name, step)

    # `llmforge export` reads the weights out of the shards in one process: at step 20 (an export point,
    # shards and the gathered weights side by side) it writes exactly the gathered weights; the step-10
    # checkpoint, shards only, becomes a model dir the other stages load.
    step20 = root / "fsdp2" / "checkpoints" / "step-000020"
    for argv, rc in ((["inspect", str(step10)], 0), (["generate", str(step10), "--prompt", "x"], 2)):
        r = subprocess.run(
            [sys.executable, "-m", "llmforge", *argv], cwd=REPO, env=ENV, capture_output=True, text=True
        )
        assert r.returncode == rc, r.stderr
    assert "holds shards only; write its weights with `llmforge export" in r.stderr
    for step_path in (step20, step10):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmforge",
                "export",
                str(step_path),
                "--out",
                str(root / f"hf-{step_path.name}"),
            ]
            + ["--json"],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["from"] == "shards"
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(root / "hf-step-000020").state_dict()
    gathered = AutoModelForCausalLM.from_pretrained(step20).state_dict()
    assert exported.keys() == gathered.keys()
    assert all(exported[k].equal(gathered[k]) for k in gathered)  # bit for bit
    earlier = AutoModelForCausalLM.from_pretrained(root / "hf-step-000010").state_dict()
    assert earlier.keys() == gathered.keys()
    assert not any(earlier[k].equal(gathered[k]) for k in gathered if "norm" not in k)  # 10 steps before

    # A lost or cut shard makes the checkpoint damaged (resume falls back), not a traceback.
    from llmforge.pretrain.preflight import checkpoint_problem

    damaged = root / "damaged"
    shutil.copytree(step10, damaged)
    assert checkpoint_problem(damaged) is None
    (damaged / "trainer_state" / "shards" / "__1_0.distcp").unlink()
    assert "__1_0.distcp: no such file or directory" in checkpoint_problem(damaged)
    shard = damaged / "trainer_state" / "shards" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    shutil.copy(step10 / "trainer_state" / "shards" / "__1_0.distcp", damaged / "trainer_state" / "shards")
    assert "__0_0.distcp: 100 bytes where the manifest records" in checkpoint_problem(damaged)


@pytest.mark.slow
def test_accelerate_launch_with_a_plan_parallel_config(single, cli):
    """`accelerate launch --config_file` (written by `plan parallel`) runs FSDP on 2 CPU processes once the
    recipe matches the config, and refuses with exit 2 and the --set lines while it does not."""
    root, tokens, recipe, _, _ = single
    config = root / "fsdp.yaml"
    plan = json.loads(
        cli(
            "plan",
            "parallel",
            "--params",
            "7e9",
            "--gpus",
            "2",
            "--gpu",
            "h100-sxm",
            "--json",
            "--write-accelerate-config",
            str(config),
        ).stdout
    )
    assert plan["zero"] == 3

    accelerate = ["-m", "accelerate.commands.launch", "--config_file", str(config)]
    refused = launch(accelerate, recipe, tokens, "run.name=launched")
    assert refused.returncode != 0 and not (root / "launched").exists()
    assert "error: the accelerate config does not match the recipe" in refused.stderr
    assert "--set train.distributed.strategy=fsdp" in refused.stderr

    matched = [s for s in plan["recipe_set"] if not s.startswith("train.micro_batch")]
    done = launch(accelerate, recipe, tokens, "run.name=launched", *matched, "train.max_steps=4")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["processes"] == 2 and results["strategy"] == "fsdp"
    assert results["precision"] == "bf16-mixed"
    assert results["local_params"] <= results["params"] // 2 + 64  # sharded, not silently DDP
    launcher = json.loads((root / "launched" / "environment.json").read_text())["launcher"]
    assert launcher["WORLD_SIZE"] == "2" and launcher["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert launcher["ACCELERATE_USE_FSDP"] == "true"  # as launched, before llmforge took FSDP over


@pytest.mark.slow
def test_fsdp_eval_with_uneven_windows_does_not_hang_and_matches_one_process(tmp_path):
    """9 eval windows over 2 ranks × micro-batch 4: rank 0 made 2 forward passes and rank 1 one, so rank 0
    waited forever in FSDP's all-gather. Ranks now pad with masked windows; the val loss is unchanged.
    Run without --quiet: only rank 0 draws the progress bar."""
    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 2, "eval_every": 2, "eval_tokens": 9 * 32, "checkpoint_every": 2}
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, name="one", train=train)
    one = pretrain(recipe, tokens, 1)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [sys.executable, *torchrun, "-m", "llmforge", "pretrain", str(recipe), "--tokens", str(tokens)]
    sets = ["--set", "run.name=fsdp", "--set", "train.distributed.strategy=fsdp", "--json"]
    proc = subprocess.Popen(
        command + sets,
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a hang can be killed with the workers torchrun started
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("2-process FSDP evaluation hung")
    assert proc.returncode == 0, stderr
    two = json.loads(stdout)
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=TOLERANCE)
    bars = [line for line in stderr.splitlines() if line.startswith("pretrain ")]
    assert len(bars) == 1, stderr  # rank 0's
    assert stderr.count("MFU peak per device") == 1


@pytest.mark.slow
def test_two_process_masked_lm_matches_one_process(tmp_path):
    """Masked LM over 2 DDP ranks equals one process: each row's mask is drawn from its window position (not
    from a rank's RNG), and the loss is divided by the masked positions of the whole global batch (ranks
    and micro-batches hold different numbers of them), as one process divides."""
    tokens = objective_tokens(tmp_path / "tokens", repeat_words=True)
    bert = {"arch": "bert", "n_layers": 2, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 32}
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, name="one", model=bert, train={"max_steps": 20})
    one = pretrain(recipe, tokens, 1)
    two = pretrain(recipe, tokens, 2, "run.name=two")
    assert two["processes"] == 2 and two["objective"] == "mlm"
    a, b = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 21))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=TOLERANCE), step
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=TOLERANCE)


def torchrun_node(
    recipe: Path, tokens: Path, port: int, node: int, logs: Path, *sets: str
) -> subprocess.Popen:
    """One of two "nodes" of a c10d rendezvous on 127.0.0.1: torchrun --nnodes 2 --nproc_per_node 1. Its
    output goes to files in `logs` (a full pipe would stall a node while the other waits in a collective)."""
    overrides = [arg for s in sets for arg in ("--set", s)]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    command += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "test"]
    command += ["--rdzv_conf", f"is_host={'true' if node == 0 else 'false'}", "--local_addr", "127.0.0.1"]
    command += ["-m", "llmforge", "--quiet", "pretrain", str(recipe), "--tokens", str(tokens), "--json"]
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command + overrides,
        cwd=REPO,
        env={**ENV, "GLOO_SOCKET_IFNAME": "lo"},
        stdout=open(logs / f"node{node}.out", "w"),  # noqa: SIM115 - the child holds it; closed with the run
        stderr=open(logs / f"node{node}.err", "w"),  # noqa: SIM115
        start_new_session=True,
    )


def run_nodes(nodes: list[subprocess.Popen], logs: Path, timeout: float = 600) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each node, once both have ended."""
    try:
        codes = [p.wait(timeout=timeout) for p in nodes]
    except subprocess.TimeoutExpired:
        for p in nodes:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the two-node run hung")
    return [
        (code, (logs / f"node{n}.out").read_text(), (logs / f"node{n}.err").read_text())
        for n, code in enumerate(codes)
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_by_c10d_rendezvous_train_as_one_node_with_two_processes(single):
    """Two torchrun agents (the two "nodes") meet at a c10d rendezvous on 127.0.0.1, one process each: the
    same curve as the one-process reference (so as 2 processes on one node, which the DDP test checks); and
    the run-directory check sees one shared filesystem."""
    root, tokens, recipe, reference, ref_curve = single
    port = free_port()
    logs = root / "nodes-logs"
    nodes = [torchrun_node(recipe, tokens, port, node, logs, "run.name=nodes") for node in (0, 1)]
    (rc0, out0, err0), (rc1, out1, err1) = run_nodes(nodes, logs)
    assert rc0 == 0 and rc1 == 0, err0 + err1
    results = json.loads(out0 or out1)  # only global rank 0 prints (either node may host it)
    assert results["processes"] == 2 and results["strategy"] == "ddp"
    assert_same_curve(ref_curve, curve(root / "nodes"))
    assert results["final_val_loss"] == pytest.approx(reference["final_val_loss"], rel=TOLERANCE)
    launcher = json.loads((root / "nodes" / "environment.json").read_text())["launcher"]
    assert launcher["WORLD_SIZE"] == "2" and launcher["LOCAL_WORLD_SIZE"] == "1"  # 2 nodes × 1 process


@pytest.mark.slow
def test_two_nodes_that_do_not_share_the_run_directory_are_refused(single, tmp_path):
    """Rank 1 writes to another directory than rank 0 (as on a node without the shared filesystem): the
    shared-filesystem check names the blind rank and both nodes stop before training."""
    root, tokens, recipe, _, _ = single
    port = free_port()
    logs = tmp_path / "logs"
    nodes = [
        torchrun_node(recipe, tokens, port, 0, logs, "run.name=apart"),
        torchrun_node(recipe, tokens, port, 1, logs, "run.name=apart", f"run.out_dir={tmp_path}"),
    ]
    outcomes = run_nodes(nodes, logs)
    assert all(rc != 0 for rc, _, _ in outcomes)
    errors = "".join(err for _, _, err in outcomes)
    assert "cannot see the run directory" in errors and "a filesystem all nodes share" in errors
    assert not (root / "apart" / "checkpoints").exists() and not (tmp_path / "apart" / "checkpoints").exists()


@pytest.mark.slow
def test_export_of_t5_shards_keeps_its_untied_head(tmp_path):
    """T5 v1.1's output head is its own matrix: the export builds the model through its family (as pretraining
    did), so the head's shard is not loaded into the tied embedding and lost."""
    tokens = objective_tokens(tmp_path / "tokens")
    t5 = {"arch": "t5", "n_layers": 1, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 32}
    train = {"max_steps": 4, "checkpoint_every": 2, "eval_every": 4, "distributed": {"strategy": "fsdp"}}
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, name="t5", model=t5, train=train)
    r = launch(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"], recipe, tokens)
    assert r.returncode == 0, r.stderr
    step4 = tmp_path / "t5" / "checkpoints" / "step-000004"
    assert (step4 / "trainer_state" / "shards" / ".metadata").is_file() and (
        step4 / "model.safetensors"
    ).is_file()
    out = tmp_path / "hf"
    e = subprocess.run(
        [sys.executable, "-m", "llmforge", "export", str(step4), "--out", str(out), "--json"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert e.returncode == 0, e.stderr
    from safetensors.torch import load_file

    exported, gathered = load_file(out / "model.safetensors"), load_file(step4 / "model.safetensors")
    assert "lm_head.weight" in exported and not exported["lm_head.weight"].equal(exported["shared.weight"])
    for name in gathered.keys() & exported.keys():
        assert exported[name].equal(gathered[name]), name
    assert {"lm_head.weight", "shared.weight"} <= gathered.keys() & exported.keys()

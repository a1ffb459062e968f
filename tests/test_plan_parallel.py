"""Parallelism planner and the Accelerate config it writes (parsed by `accelerate launch`'s own validation)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from llmforge.console import UserError
from llmforge.plan.hardware import gpu
from llmforge.plan.parallel import accelerate_config, plan_parallel
from llmforge.plan.shapes import propose_shapes


def _plan(params: float, gpus: int, name: str, seq: int = 2048, **kw):
    shape = propose_shapes(params, seq_len=seq, count=1)[0]
    return plan_parallel(params, shape, gpus=gpus, gpu=gpu(name), **kw)


def test_small_model_uses_ddp_with_a_large_micro_batch():
    plan = _plan(1e8, 8, "a100-80gb", global_batch_tokens=2**20)
    assert plan.strategy.name == "DDP" and plan.data_parallel == 8
    assert plan.micro_batch >= 8
    assert plan.micro_batch * 2048 * 8 <= 2**20
    assert plan.grad_accumulation == round(2**20 / (plan.micro_batch * 2048 * 8))


def test_layouts_escalate_with_model_size():
    assert _plan(7e9, 8, "a100-80gb").strategy.zero == 2  # 112 GB of states do not fit unsharded
    assert _plan(7e9, 64, "a100-40gb").strategy.zero == 3
    big = _plan(70e9, 64, "h100-sxm")
    assert big.strategy.zero == 3 and big.strategy.checkpointing == "full"
    for plan in (_plan(7e9, 8, "a100-80gb"), big):
        assert plan.bytes_per_gpu <= 0.9 * plan.gpu.memory_bytes
        assert plan.reasons[0].startswith("DDP: needs")


def test_model_parallel_when_data_parallelism_would_overshoot_the_batch():
    plan = _plan(70e9, 2048, "h100-sxm", seq=4096, global_batch_tokens=4 * 2**20)
    assert plan.strategy.tensor * plan.strategy.pipeline > 1
    assert plan.data_parallel * plan.micro_batch * 4096 <= 4 * 2**20
    assert plan.bytes_per_gpu <= 0.9 * plan.gpu.memory_bytes
    assert "exceed the global batch" in plan.reasons[0]
    assert not plan.strategy.accelerate
    with pytest.raises(UserError, match="tensor"):
        accelerate_config(plan, gpus_per_node=8, main_process_ip=None)


def test_impossible_plan_is_a_user_error():
    with pytest.raises(UserError, match="does not fit"):
        _plan(70e9, 8, "a100-40gb")


def _launch_args(path):
    pytest.importorskip("accelerate")
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, _, _ = _validate_launch_command(args)
    return args


@pytest.mark.parametrize(("params", "gpus", "fsdp"), [(1e8, 8, False), (7e9, 8, True)])
def test_accelerate_accepts_the_config(tmp_path, params, gpus, fsdp):
    plan = _plan(params, gpus, "a100-80gb")
    path = tmp_path / "accelerate.yaml"
    path.write_text(accelerate_config(plan, gpus_per_node=8, main_process_ip=None))
    args = _launch_args(path)
    assert args.num_processes == gpus and args.num_machines == 1
    assert args.mixed_precision == "bf16"
    assert bool(args.use_fsdp) is fsdp and bool(args.multi_gpu) is not fsdp
    if fsdp:
        assert args.fsdp_version == "2" or args.fsdp_version == 2
        assert str(args.fsdp_reshard_after_forward).lower() == "false"  # ZeRO-2


def test_multi_node_config_needs_the_main_address(tmp_path):
    plan = _plan(7e9, 16, "a100-80gb")
    with pytest.raises(UserError, match="main-process-ip"):
        accelerate_config(plan, gpus_per_node=8, main_process_ip=None)
    path = tmp_path / "a.yaml"
    path.write_text(accelerate_config(plan, gpus_per_node=8, main_process_ip="10.0.0.1"))
    args = _launch_args(path)
    assert args.num_machines == 2 and args.main_process_ip == "10.0.0.1"


def _launcher_env(path) -> dict[str, str]:
    """The environment `accelerate launch --config_file PATH` hands to each process."""
    from accelerate.utils.launch import prepare_multi_gpu_env

    return prepare_multi_gpu_env(_launch_args(path))


# Every FSDP layout the planner can pick, with its (params, GPUs, GPU).
LAYOUTS = {
    "DDP": (1e8, 8, "a100-80gb"),
    "ZeRO-2": (7e9, 8, "a100-80gb"),
    "ZeRO-3": (7e9, 64, "a100-40gb"),
    "ZeRO-3 + checkpointing": (70e9, 64, "h100-sxm"),
}
# What `llmforge pretrain` reads from the launcher (pretrain/launch.py) besides the process topology.
PRETRAIN_READS = {
    "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_USE_FSDP",
    "FSDP_VERSION",
    "FSDP_RESHARD_AFTER_FORWARD",
    "FSDP_OFFLOAD_PARAMS",
    "FSDP_ACTIVATION_CHECKPOINTING",
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_accelerate_config_sets_nothing_pretrain_does_not_read(tmp_path, layout):
    """The config once asked for SHARDED_STATE_DICT and cpu_ram_efficient_loading, which pretrain never
    honours: every launcher variable it sets must be one pretrain reads, or keep accelerate's default."""
    params, gpus, name = LAYOUTS[layout]
    path = tmp_path / "accelerate.yaml"
    path.write_text(accelerate_config(_plan(params, gpus, name), gpus_per_node=8, main_process_ip="10.0.0.1"))
    fsdp = layout != "DDP"
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text(
        f"distributed_type: {'FSDP' if fsdp else 'MULTI_GPU'}\nnum_processes: {gpus}\nnum_machines: 1\n"
        + ("fsdp_config:\n  fsdp_version: 2\n" if fsdp else "")
    )
    ours, default = _launcher_env(path), _launcher_env(minimal)
    launcher_keys = {k for k in ours.keys() | default.keys() if k.startswith(("ACCELERATE_", "FSDP_"))}
    differ = {k for k in launcher_keys - PRETRAIN_READS if ours.get(k) != default.get(k)}
    assert not differ, {k: ours.get(k) for k in differ}
    assert "FSDP_STATE_DICT_TYPE" not in ours and "FSDP_TRANSFORMER_CLS_TO_WRAP" not in ours


@pytest.mark.parametrize("layout", LAYOUTS)
def test_written_config_passes_pretrain_launcher_check_with_printed_recipe_set(tmp_path, cli, layout):
    """`plan parallel --write-accelerate-config F --json` prints `recipe_set`; the tiny recipe with those
    overrides, launched with F, passes pretrain's launcher check, and without them it does not (unless the
    recipe already agrees)."""
    from llmforge.pretrain.launch import check_launcher, launcher_settings
    from llmforge.recipe import load_recipe

    params, gpus, name = LAYOUTS[layout]
    path = tmp_path / "accelerate.yaml"
    r = cli(
        "plan", "parallel", "--params", str(params), "--gpus", str(gpus), "--gpu", name,
        "--main-process-ip", "10.0.0.1", "--write-accelerate-config", str(path), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    recipe_set = json.loads(r.stdout)["recipe_set"]
    env = _launcher_env(path)
    assert launcher_settings(env)  # the config does ask for something
    tiny = REPO / "recipes" / "tiny.toml"
    check_launcher(load_recipe(tiny, recipe_set).train, env)
    wanted = launcher_settings(env)
    if any(
        str(v).lower() != str(getattr_dotted(load_recipe(tiny).train, k)).lower() for k, v in wanted.items()
    ):
        with pytest.raises(UserError, match="does not match the recipe"):
            check_launcher(load_recipe(tiny).train, env)


def getattr_dotted(train, key: str):
    value = train
    for part in key.split(".")[1:]:
        value = getattr(value, part)
    return value
